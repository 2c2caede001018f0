//! The one place that waits for children.
//!
//! As PID 1 (or a child subreaper on the host) the agent inherits every
//! orphan in the sandbox. A single task reacts to `SIGCHLD` by calling
//! `waitpid(-1, WNOHANG)` until nothing is left, hands the status of each pid
//! a session registered to its waiter, and silently reaps the rest.
//!
//! Spawning happens under the same lock as reaping, so a child that exits at
//! once cannot be reaped before its pid is registered (and std's own
//! `waitpid` after a failed `exec` never races the reaper).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tracing::Instrument;

/// How a command ended, as a shell reports it: the exit code, or 128 plus
/// the number of the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    fn from_wait(status: WaitStatus) -> Option<(Pid, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Self(code))),
            WaitStatus::Signaled(pid, signal, _) => Some((pid, Self(128 + signal as i32))),
            _ => None,
        }
    }
}

/// Receives the exit code of one registered child.
pub type ExitReceiver = oneshot::Receiver<ExitCode>;

/// Routes exit statuses to the sessions waiting for them.
#[derive(Debug, Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<Pid, oneshot::Sender<ExitCode>>>,
}

impl Reaper {
    /// Becomes a child subreaper and starts the reaping task. Must run inside
    /// the tokio runtime, before any child is spawned.
    pub fn start() -> io::Result<Arc<Self>> {
        become_subreaper();
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self::default());
        let task = Arc::clone(&reaper);
        let reaping = async move {
            loop {
                task.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        };
        tokio::spawn(reaping.instrument(tracing::debug_span!("reaper")));
        Ok(reaper)
    }

    /// Runs `spawn` (which starts a child and returns its pid) with reaping
    /// held off, and registers the pid.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> io::Result<(i32, T)>,
    ) -> io::Result<(T, ExitReceiver)> {
        let mut waiters = self.lock();
        let (pid, spawned) = spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(Pid::from_raw(pid), tx);
        Ok((spawned, rx))
    }

    fn reap_all(&self) {
        let mut waiters = self.lock();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => route(&mut waiters, status),
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    tracing::warn!(%error, "waitpid failed");
                    break;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Pid, oneshot::Sender<ExitCode>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn route(waiters: &mut HashMap<Pid, oneshot::Sender<ExitCode>>, status: WaitStatus) {
    let Some((pid, code)) = ExitCode::from_wait(status) else {
        return;
    };
    match waiters.remove(&pid) {
        Some(waiter) => {
            let _ = waiter.send(code);
        }
        None => tracing::debug!(pid = pid.as_raw(), "reaped an orphan"),
    }
}

/// Makes orphans of our commands reparent to us even when we are not PID 1
/// (tests on the host); inside a sandbox we are PID 1 anyway.
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no
    // memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot become a child subreaper");
    }
}
