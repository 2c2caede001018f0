//! The server's side: [`HelperRuntime`] implements [`Runtime`] by asking a
//! helper process.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::lines::LineReader;
use super::protocol::{encode, Reply, Request};
use crate::error::RuntimeError;
use crate::spec::{RunningSandbox, SandboxSpec, Started};
use crate::Runtime;

/// How long one request may take before the helper is declared wedged.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an exiting helper may take to finish before it is killed.
const HELPER_GRACE: Duration = Duration::from_secs(5);

/// A [`Runtime`] backed by a `runtime-helper` child process running the
/// local backend. Calls are serialised; call it from blocking threads (for
/// example tokio's `spawn_blocking`). If the helper dies, the call in flight
/// fails and the next call starts a new helper.
#[derive(Debug)]
pub struct HelperRuntime {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    process: Mutex<Option<HelperProcess>>,
    /// The last helper said sandboxes may have a user namespace.
    userns: AtomicBool,
}

#[derive(Debug)]
struct HelperProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: LineReader<ChildStdout>,
}

impl HelperRuntime {
    /// Starts `program runtime-helper --state-dir <state_dir>` and waits
    /// until it is ready. `program` is normally `std::env::current_exe()`.
    pub fn spawn(
        program: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self, RuntimeError> {
        Self::spawn_with_egress(program, state_dir, None)
    }

    /// [`HelperRuntime::spawn`], with the firewall redirecting sandbox DNS,
    /// HTTP and HTTPS to the egress proxy's `ports`.
    pub fn spawn_with_egress(
        program: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        egress: Option<crate::network::firewall::EgressPorts>,
    ) -> Result<Self, RuntimeError> {
        let state_dir: PathBuf = state_dir.into();
        let mut args: Vec<std::ffi::OsString> = vec![
            "runtime-helper".into(),
            "--state-dir".into(),
            state_dir.into_os_string(),
        ];
        if let Some(ports) = egress {
            args.push("--egress-ports".into());
            args.push(ports.to_string().into());
        }
        let runtime = Self {
            program: program.into(),
            args,
            timeout: DEFAULT_TIMEOUT,
            process: Mutex::new(None),
            userns: AtomicBool::new(false),
        };
        let process = runtime.launch()?;
        *runtime.lock() = Some(process);
        Ok(runtime)
    }

    /// Overrides [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the helper can give sandboxes a user namespace with
    /// idmapped mounts (probed when it started).
    pub fn userns_supported(&self) -> bool {
        self.userns.load(Ordering::Relaxed)
    }

    /// Pid of the current helper process, if one runs.
    pub fn helper_pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|p| p.child.id())
    }

    fn lock(&self) -> MutexGuard<'_, Option<HelperProcess>> {
        self.process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn launch(&self) -> Result<HelperProcess, RuntimeError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| RuntimeError::Helper(format!("{what}: {e}"));
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(&format!("cannot run {:?}", self.program), &e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RuntimeError::Helper("helper pipes missing".into()));
        };
        let mut process = HelperProcess {
            child,
            stdin,
            stdout: LineReader::new(stdout),
        };
        match process.receive(self.timeout) {
            Ok(Reply::Ready { userns, .. }) => {
                self.userns.store(userns, Ordering::Relaxed);
                Ok(process)
            }
            Ok(Reply::Error(err)) => {
                process.end(Duration::from_secs(1));
                Err(err)
            }
            Ok(other) => {
                process.end(Duration::ZERO);
                Err(RuntimeError::Helper(format!(
                    "unexpected first message {other:?}"
                )))
            }
            Err(err) => {
                process.end(Duration::ZERO);
                Err(err)
            }
        }
    }

    fn call(&self, request: &Request) -> Result<Reply, RuntimeError> {
        let mut guard = self.lock();
        let process = match guard.as_mut() {
            Some(process) => process,
            None => guard.insert(self.launch()?),
        };
        match process.exchange(request, self.timeout) {
            Ok(Reply::Error(err)) => Err(err),
            Ok(reply) => Ok(reply),
            Err(err) => {
                if let Some(dead) = guard.take() {
                    dead.end(Duration::ZERO);
                }
                tracing::error!(request = request.name(), error = %err, "runtime helper lost; it will be restarted");
                Err(err)
            }
        }
    }
}

fn unexpected(reply: Reply) -> RuntimeError {
    RuntimeError::Helper(format!("unexpected reply {reply:?}"))
}

impl HelperProcess {
    fn exchange(&mut self, request: &Request, timeout: Duration) -> Result<Reply, RuntimeError> {
        let lost = |e: std::io::Error| {
            RuntimeError::Helper(format!("{} request failed: {e}", request.name()))
        };
        self.stdin.write_all(&encode(request)).map_err(lost)?;
        self.receive(timeout)
    }

    fn receive(&mut self, timeout: Duration) -> Result<Reply, RuntimeError> {
        let line = self
            .stdout
            .read_line(timeout)
            .map_err(|e| RuntimeError::Helper(format!("no reply from the helper: {e}")))?;
        serde_json::from_slice(&line)
            .map_err(|e| RuntimeError::Helper(format!("malformed reply from the helper: {e}")))
    }

    /// Closes the helper's stdin (it exits on EOF), waits up to `grace`, then
    /// kills it.
    fn end(self, grace: Duration) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for HelperRuntime {
    fn drop(&mut self) {
        if let Some(process) = self.lock().take() {
            process.end(HELPER_GRACE);
        }
    }
}

impl Runtime for HelperRuntime {
    fn host_view(&self, path: &std::path::Path) -> std::path::PathBuf {
        match self.helper_pid() {
            Some(pid) => std::path::Path::new("/proc")
                .join(pid.to_string())
                .join("root")
                .join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    fn mount_namespace_pid(&self) -> Option<u32> {
        self.helper_pid()
    }

    /// The server writes the cgroup itself: freezing forks nothing.
    fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), RuntimeError> {
        crate::cgroup::set_frozen(id, frozen).map_err(|message| RuntimeError::Setup {
            stage: if frozen { "freeze" } else { "thaw" }.into(),
            message,
        })
    }

    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError> {
        match self.call(&Request::Start {
            spec: Box::new(spec.clone()),
        })? {
            Reply::Started(started) => Ok(started),
            other => Err(unexpected(other)),
        }
    }

    fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        match self.call(&Request::Stop { id: id.into() })? {
            Reply::Stopped => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
        match self.call(&Request::Running)? {
            Reply::Running(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// The helper releases stopped sandboxes' links when its stdin closes;
    /// wait for it to finish.
    fn shutdown(&self) {
        if let Some(process) = self.lock().take() {
            process.end(HELPER_GRACE);
        }
    }

    fn cleanup(&self, keep_ids: &[String]) -> Result<Vec<String>, RuntimeError> {
        match self.call(&Request::Cleanup {
            keep_ids: keep_ids.to_vec(),
        })? {
            Reply::CleanedUp(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }
}
