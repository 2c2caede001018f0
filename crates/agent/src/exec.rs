//! Turning an execute request into a command to spawn.
//!
//! [`ExecRequest`] is the validated form of the wire request; [`ExecContext`]
//! holds what the sandbox supplies (working directory, base environment,
//! account files) and resolves a request into a [`SpawnSpec`]:
//!
//! - shell: the request's (SDK default `/bin/bash`); the default falls back to
//!   `/bin/sh` when the image has no bash;
//! - environment: the agent's own, then `run_config.env_vars`, then `env`;
//!   a resolved user also gets `HOME`, `USER` and `LOGNAME` unless set, and a
//!   PTY gets `TERM=xterm-256color` unless set;
//! - working directory: `cwd` or `run_config.work_dir`, relative to the
//!   agent's working directory; it must exist;
//! - user: `run_config.user`, resolved from `/etc/passwd` and `/etc/group`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::{self, PathError};
use crate::process::SpawnSpec;
use crate::pty::WindowSize;
use crate::simple;
use crate::user::{Accounts, UserError};
use crate::wire::{BlockingExecuteRequest, ExecuteRequest, RunConfig};

/// The SDK's default shell, which falls back to `/bin/sh` when missing.
pub const DEFAULT_SHELL: &str = "/bin/bash";
const FALLBACK_SHELL: &str = "/bin/sh";
const DEFAULT_TERM: &str = "xterm-256color";
/// Where a bare shell name is looked up when the environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// When a session is killed or forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Kill the process group after this long; `None` never.
    pub timeout: Option<Duration>,
    /// Kill a running command with no attached client after this long.
    pub idle_timeout: Option<Duration>,
    /// Kill when the last client detaches.
    pub kill_on_disconnect: bool,
    /// Keep a finished session this long for reconnects; `None` forever.
    pub ttl: Option<Duration>,
}

/// A validated request to run a command.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: String,
    pub shell: String,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub lifecycle: Lifecycle,
    pub close_stdin: bool,
    pub terminal: Option<WindowSize>,
}

/// Why a request cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("command is empty")]
    EmptyCommand,
    #[error("cannot combine {0} with run_config.{1}; use run_config only")]
    Conflict(&'static str, &'static str),
    #[error("invalid working directory")]
    Cwd(#[source] PathError),
    #[error("working directory {0} does not exist or is not a directory")]
    CwdMissing(PathBuf),
    #[error("shell {0} not found")]
    ShellMissing(String),
    #[error("invalid user")]
    User(#[source] UserError),
    #[error("run_config.work_dir must be an absolute path")]
    RelativeWorkdir,
}

impl ExecRequest {
    /// `true` with the defaults: the agent's warm-up
    /// ([`crate::sessions::Sessions::warm_up`]).
    pub fn warm_up() -> Self {
        Self {
            command: "true".into(),
            shell: DEFAULT_SHELL.into(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            lifecycle: Lifecycle {
                timeout: None,
                idle_timeout: None,
                kill_on_disconnect: false,
                ttl: None,
            },
            close_stdin: true,
            terminal: None,
        }
    }

    /// Validates a WebSocket `execute` message or SSE start body.
    pub fn from_wire(req: ExecuteRequest) -> Result<Self, ExecError> {
        let run_config = req.run_config.unwrap_or_default();
        if req.env.is_some() && run_config.env_vars.is_some() {
            return Err(ExecError::Conflict("env", "env_vars"));
        }
        if req.cwd.is_some() && run_config.work_dir.is_some() {
            return Err(ExecError::Conflict("cwd", "work_dir"));
        }
        let terminal = req.pty.then(|| terminal_size(req.cols, req.rows));
        Self::checked(Self {
            command: req.command,
            shell: req.shell.unwrap_or_else(|| DEFAULT_SHELL.to_string()),
            env: req.env.or(run_config.env_vars).unwrap_or_default(),
            cwd: req.cwd.or(run_config.work_dir),
            user: run_config.user,
            lifecycle: Lifecycle {
                timeout: positive_seconds(req.timeout_seconds),
                idle_timeout: non_negative_seconds(req.idle_timeout_seconds),
                kill_on_disconnect: req.kill_on_disconnect,
                ttl: non_negative_seconds(req.ttl_seconds),
            },
            close_stdin: req.close_stdin,
            terminal,
        })
    }

    /// Validates the blocking `POST /execute` body. Its result cannot be
    /// fetched again, so the session dies with the request.
    pub fn from_blocking(req: BlockingExecuteRequest) -> Result<Self, ExecError> {
        let run_config = req.run_config.unwrap_or_default();
        if req.env.is_some() && run_config.env_vars.is_some() {
            return Err(ExecError::Conflict("env", "env_vars"));
        }
        if req.cwd.is_some() && run_config.work_dir.is_some() {
            return Err(ExecError::Conflict("cwd", "work_dir"));
        }
        Self::checked(Self {
            command: req.command,
            shell: req.shell.unwrap_or_else(|| DEFAULT_SHELL.to_string()),
            env: req.env.or(run_config.env_vars).unwrap_or_default(),
            cwd: req.cwd.or(run_config.work_dir),
            user: run_config.user,
            lifecycle: Lifecycle {
                timeout: positive_seconds(req.timeout),
                idle_timeout: None,
                kill_on_disconnect: true,
                ttl: Some(Duration::ZERO),
            },
            close_stdin: true,
            terminal: None,
        })
    }

    fn checked(self) -> Result<Self, ExecError> {
        if self.command.trim().is_empty() {
            return Err(ExecError::EmptyCommand);
        }
        Ok(self)
    }
}

fn terminal_size(cols: Option<u16>, rows: Option<u16>) -> WindowSize {
    let default = WindowSize::default();
    WindowSize {
        cols: cols.filter(|c| *c > 0).unwrap_or(default.cols),
        rows: rows.filter(|r| *r > 0).unwrap_or(default.rows),
    }
}

/// `0` and negative mean "no timeout".
fn positive_seconds(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// Negative means "never"; `0` means "at once".
fn non_negative_seconds(seconds: f64) -> Option<Duration> {
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// What the sandbox contributes to every command.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub workdir: PathBuf,
    pub base_env: Vec<(OsString, OsString)>,
    /// Directory holding `passwd` and `group`.
    pub etc: PathBuf,
    /// The user of commands that name none (the image's `User`).
    pub default_user: Option<String>,
}

impl ExecContext {
    /// The agent's own environment as the base for commands.
    pub fn from_process(workdir: PathBuf, default_user: Option<String>) -> Self {
        Self {
            workdir,
            base_env: std::env::vars_os().collect(),
            etc: PathBuf::from("/etc"),
            default_user: default_user.filter(|u| !u.is_empty()),
        }
    }

    /// Applies new sandbox defaults (`PUT /_sandpit/run-config`): its
    /// variables override the base environment, and a working directory or
    /// user, when given, replaces the current one. Relative working
    /// directories are refused (the server validated them already).
    pub fn apply(&mut self, defaults: RunConfig) -> Result<(), ExecError> {
        if let Some(dir) = defaults.work_dir.filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(ExecError::RelativeWorkdir);
            }
            if let Err(error) = std::fs::create_dir_all(&dir) {
                tracing::warn!(workdir = %dir.display(), %error, "cannot create the working directory");
            }
            self.workdir = dir;
        }
        if let Some(user) = defaults.user {
            self.default_user = Some(user).filter(|u| !u.is_empty());
        }
        let mut env = Env::new(&self.base_env);
        env.set_all(&defaults.env_vars.unwrap_or_default());
        self.base_env = env.into_vec();
        Ok(())
    }

    /// Resolves `req` into a command line, environment, directory and user.
    pub fn spawn_spec(&self, req: &ExecRequest) -> Result<SpawnSpec, ExecError> {
        let cwd = self.cwd(req.cwd.as_deref())?;
        let credentials = match req.user.as_ref().or(self.default_user.as_ref()) {
            Some(user) => Some(
                Accounts::load(&self.etc)
                    .resolve(user)
                    .map_err(ExecError::User)?,
            ),
            None => None,
        };
        let mut env = Env::new(&self.base_env);
        env.set_all(&req.env);
        if let Some(creds) = &credentials {
            env.set_account(creds.name.as_deref(), creds.home.as_deref(), &req.env);
        }
        if req.terminal.is_some() {
            env.set_default("TERM", DEFAULT_TERM);
        }
        let shell = choose_shell(&req.shell, env.get("PATH"))?;
        let env = env.into_vec();
        Ok(SpawnSpec {
            direct: simple::direct(&shell, &req.command, &env, &cwd),
            shell,
            command: req.command.clone(),
            env,
            cwd,
            credentials,
            terminal: req.terminal,
        })
    }

    fn cwd(&self, requested: Option<&str>) -> Result<PathBuf, ExecError> {
        let Some(raw) = requested.filter(|c| !c.is_empty()) else {
            return Ok(self.workdir.clone());
        };
        let cwd = paths::resolve(&self.workdir, raw).map_err(ExecError::Cwd)?;
        if !cwd.is_dir() {
            return Err(ExecError::CwdMissing(cwd));
        }
        Ok(cwd)
    }
}

/// The shell to execute: an absolute path, or a bare name looked up in the
/// command's `PATH`.
fn choose_shell(shell: &str, path: Option<&OsStr>) -> Result<PathBuf, ExecError> {
    if shell.is_empty() {
        return Err(ExecError::ShellMissing(shell.to_string()));
    }
    if !shell.contains('/') {
        let search = path.unwrap_or(OsStr::new(DEFAULT_PATH));
        return std::env::split_paths(search)
            .map(|dir| dir.join(shell))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| ExecError::ShellMissing(shell.to_string()));
    }
    let path = Path::new(shell);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if shell == DEFAULT_SHELL && Path::new(FALLBACK_SHELL).exists() {
        return Ok(PathBuf::from(FALLBACK_SHELL));
    }
    Err(ExecError::ShellMissing(shell.to_string()))
}

/// An environment under construction; later settings win.
struct Env(Vec<(OsString, OsString)>);

impl Env {
    fn new(base: &[(OsString, OsString)]) -> Self {
        Self(base.to_vec())
    }

    fn get(&self, key: &str) -> Option<&OsStr> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    fn set(&mut self, key: &str, value: &str) {
        let value = OsString::from(value);
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key.into(), value)),
        }
    }

    fn set_default(&mut self, key: &str, value: &str) {
        if !self.0.iter().any(|(k, _)| k == key) {
            self.set(key, value);
        }
    }

    fn set_all(&mut self, vars: &BTreeMap<String, String>) {
        for (key, value) in vars {
            self.set(key, value);
        }
    }

    /// Account variables for a resolved user, unless the request set them.
    fn set_account(
        &mut self,
        name: Option<&str>,
        home: Option<&Path>,
        explicit: &BTreeMap<String, String>,
    ) {
        let home = home.map(|h| h.to_string_lossy().into_owned());
        let vars = [("HOME", home.as_deref()), ("USER", name), ("LOGNAME", name)];
        for (key, value) in vars {
            if let (Some(value), false) = (value, explicit.contains_key(key)) {
                self.set(key, value);
            }
        }
    }

    fn into_vec(self) -> Vec<(OsString, OsString)> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> Result<ExecRequest, ExecError> {
        ExecRequest::from_wire(serde_json::from_value(value).expect("wire parses"))
    }

    fn context() -> ExecContext {
        ExecContext {
            workdir: PathBuf::from("/tmp"),
            base_env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("A".into(), "base".into()),
            ],
            etc: PathBuf::from("/nonexistent"),
            default_user: None,
        }
    }

    fn env_of(spec: &SpawnSpec, key: &str) -> Option<String> {
        spec.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    #[test]
    fn lifecycle_values() {
        let req = request(json!({"command": "x", "timeout_seconds": 0,
            "idle_timeout_seconds": -1, "ttl_seconds": 0}))
        .expect("valid");
        assert_eq!(req.lifecycle.timeout, None);
        assert_eq!(req.lifecycle.idle_timeout, None);
        assert_eq!(req.lifecycle.ttl, Some(Duration::ZERO));
    }

    #[test]
    fn env_layers_over_the_base() {
        let req = request(
            json!({"command": "x", "run_config": {"env_vars": {"A": "mine", "B": "b"}},
            "pty": true}),
        )
        .expect("valid");
        let spec = context().spawn_spec(&req).expect("resolves");
        assert_eq!(env_of(&spec, "A").as_deref(), Some("mine"));
        assert_eq!(env_of(&spec, "B").as_deref(), Some("b"));
        assert_eq!(env_of(&spec, "TERM").as_deref(), Some(DEFAULT_TERM));
        assert_eq!(spec.terminal, Some(WindowSize::default()));
    }

    /// Issue 17: a `run_config` update reaches the next command of a
    /// running sandbox (pushed to the agent), not only after a restart.
    #[test]
    fn pushed_defaults_apply_to_the_next_command() {
        let mut ctx = context();
        let defaults = serde_json::from_value(json!({"work_dir": "/",
            "env_vars": {"A": "pushed", "FOO": "bar"}}))
        .expect("parses");
        ctx.apply(defaults).expect("applies");
        let spec = ctx
            .spawn_spec(&request(json!({"command": "x"})).expect("valid"))
            .expect("resolves");
        assert_eq!(env_of(&spec, "A").as_deref(), Some("pushed"));
        assert_eq!(env_of(&spec, "FOO").as_deref(), Some("bar"));
        assert_eq!(env_of(&spec, "PATH").as_deref(), Some("/usr/bin:/bin"));
        assert_eq!(spec.cwd, PathBuf::from("/"));
        let relative = serde_json::from_value(json!({"work_dir": "rel"})).expect("parses");
        assert!(matches!(
            ctx.apply(relative),
            Err(ExecError::RelativeWorkdir)
        ));
    }

    /// Issue 17: the JS SDK without `ws` posts `run_config` to the
    /// blocking `/execute`; it was ignored there.
    #[test]
    fn blocking_requests_honour_run_config() {
        let body = json!({"command": "x",
            "run_config": {"user": "65534", "work_dir": "/tmp", "env_vars": {"A": "a"}}});
        let req = ExecRequest::from_blocking(serde_json::from_value(body).expect("parses"))
            .expect("valid");
        assert_eq!(req.user.as_deref(), Some("65534"));
        assert_eq!(req.cwd.as_deref(), Some("/tmp"));
        assert_eq!(req.env.get("A").map(String::as_str), Some("a"));
        let both = json!({"command": "x", "env": {}, "run_config": {"env_vars": {}}});
        assert!(matches!(
            ExecRequest::from_blocking(serde_json::from_value(both).expect("parses")),
            Err(ExecError::Conflict("env", "env_vars"))
        ));
    }

    #[test]
    fn conflicting_spellings_are_rejected() {
        let err = request(json!({"command": "x", "cwd": "/", "run_config": {"work_dir": "/tmp"}}));
        assert!(matches!(err, Err(ExecError::Conflict("cwd", "work_dir"))));
    }

    #[test]
    fn missing_cwd_and_shell_are_errors() {
        let ctx = context();
        let req = request(json!({"command": "x", "cwd": "/definitely/not/here"})).expect("valid");
        assert!(matches!(
            ctx.spawn_spec(&req),
            Err(ExecError::CwdMissing(_))
        ));
        let req = request(json!({"command": "x", "shell": "/bin/no-such-shell"})).expect("valid");
        assert!(matches!(
            ctx.spawn_spec(&req),
            Err(ExecError::ShellMissing(_))
        ));
        assert!(matches!(
            request(json!({"command": "  "})),
            Err(ExecError::EmptyCommand)
        ));
    }
}
