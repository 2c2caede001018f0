//! Driving `runsc`, gVisor's OCI runtime.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

/// The runsc binary, looked up on `PATH`.
pub const RUNSC: &str = "runsc";
/// gVisor's platform: how the Sentry intercepts syscalls. `ptrace` works
/// everywhere; `kvm` needs `/dev/kvm` and hung at boot on this (nested)
/// host with runsc 2022-12; `systrap` came later than Debian's runsc.
pub const PLATFORM: &str = "ptrace";

#[derive(Debug, Error)]
pub enum RunscError {
    #[error(
        "runsc is not installed (no `runsc` on PATH); install it (Debian: apt-get install runsc)"
    )]
    Missing,
    #[error("failed to run `runsc {command}`")]
    Spawn {
        command: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("`runsc {command}` failed: {message}")]
    Failed {
        command: &'static str,
        message: String,
    },
}

/// runsc with Sandpit's flags and its state under `root`.
#[derive(Debug, Clone)]
pub struct Runsc {
    root: PathBuf,
}

impl Runsc {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Flags every runsc command of a sandbox must be given alike (runsc
    /// keeps no configuration between commands).
    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(RUNSC);
        cmd.arg(format!("--root={}", self.root.display()))
            .arg(format!("--platform={PLATFORM}"))
            // gVisor's syscalls over the kernel stack of the sandbox's own
            // network namespace (see the module docs and ARCHITECTURE.md).
            .arg("--network=host")
            // The agent's socket becomes a host socket the relay reaches;
            // no connecting out to host sockets (`open`).
            .arg("--host-uds=create")
            .arg("--cpu-num-from-quota");
        if let Some(log) = log {
            cmd.arg(format!("--log={}", log.display()));
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `runsc create`: the sandbox (Sentry and gofer) is up with its init
    /// not yet running. The init's stdout and stderr go to `output`. Returns
    /// the Sentry's pid.
    pub fn create(&self, id: &str, bundle: &Path, output: File) -> Result<i32, RunscError> {
        let pid_file = bundle.join("runsc.pid");
        let log = bundle.join("runsc.log");
        let err = output.try_clone().map_err(|source| RunscError::Spawn {
            command: "create",
            source,
        })?;
        let mut cmd = self.command(Some(&log));
        cmd.arg("create")
            .arg(format!("--bundle={}", bundle.display()))
            .arg(format!("--pid-file={}", pid_file.display()))
            .arg(id)
            .stdout(output)
            .stderr(err);
        run(cmd, "create", Some(&log))?;
        let text = fs::read_to_string(&pid_file).unwrap_or_default();
        text.trim().parse().map_err(|_| RunscError::Failed {
            command: "create",
            message: format!("no pid in {pid_file:?}"),
        })
    }

    /// `runsc start`: runs the init of a created sandbox.
    pub fn start(&self, id: &str, bundle: &Path) -> Result<(), RunscError> {
        let log = bundle.join("runsc.log");
        let mut cmd = self.command(Some(&log));
        cmd.arg("start")
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run(cmd, "start", Some(&log))
    }

    /// `runsc delete --force`: kills what is left of the sandbox and removes
    /// runsc's state of it. Deleting one runsc does not know succeeds.
    pub fn delete(&self, id: &str) -> Result<(), RunscError> {
        let mut cmd = self.command(None);
        cmd.arg("delete")
            .arg("--force")
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match run(cmd, "delete", None) {
            Err(RunscError::Failed { message, .. }) if is_unknown(&message) => Ok(()),
            other => other,
        }
    }

    /// `runsc --version`, first line.
    pub fn version() -> Result<String, RunscError> {
        let out = Command::new(RUNSC)
            .arg("--version")
            .output()
            .map_err(|source| spawn_error("--version", source))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }
}

/// runsc's answer about a container it has no state for.
fn is_unknown(message: &str) -> bool {
    ["does not exist", "not found", "no such file"]
        .iter()
        .any(|m| message.to_ascii_lowercase().contains(m))
}

fn spawn_error(command: &'static str, source: io::Error) -> RunscError {
    match source.kind() {
        io::ErrorKind::NotFound => RunscError::Missing,
        _ => RunscError::Spawn { command, source },
    }
}

/// Runs `cmd`; on failure the message is its stderr (when piped) or the
/// tail of `log`.
fn run(mut cmd: Command, command: &'static str, log: Option<&Path>) -> Result<(), RunscError> {
    let out = cmd.output().map_err(|e| spawn_error(command, e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if message.is_empty() {
        message = log.map(log_tail).unwrap_or_default();
    }
    if message.is_empty() {
        message = out.status.to_string();
    }
    Err(RunscError::Failed { command, message })
}

/// The last lines of runsc's log that say what went wrong.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
