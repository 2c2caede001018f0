//! The life of a session from spawn to outcome.
//!
//! One task per session waits for the process to exit while enforcing the
//! command timeout (kill the group, outcome `TimedOut`) and the idle timeout
//! (kill the group when no client has been attached for that long; the timer
//! restarts whenever a client attaches). After the exit it waits for the
//! pumps to finish the output, then records the outcome. Forgetting the
//! session after its TTL is the registry's job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::sleep_until;

use super::{Outcome, Session};
use crate::process;
use crate::reaper::{ExitCode, ExitReceiver};

/// Exit code reported if the reaper could never deliver one.
const UNKNOWN_EXIT: i32 = -1;

pub(super) async fn supervise(
    session: Arc<Session>,
    exit: ExitReceiver,
    pumps: Vec<JoinHandle<()>>,
) {
    let (code, timed_out) = wait_for_exit(&session, exit).await;
    session.exited.send_replace(true);
    for pump in pumps {
        let _ = pump.await;
    }
    let outcome = match (timed_out, session.lifecycle.timeout) {
        (true, Some(after)) => Outcome::TimedOut(after),
        _ => Outcome::Exited(code.0),
    };
    tracing::debug!(id = session.id(), ?outcome, "command finished");
    session.finish(outcome);
}

/// Waits for the exit code, killing the group on timeout or idleness.
/// Returns the code and whether the timeout fired.
async fn wait_for_exit(session: &Session, mut exit: ExitReceiver) -> (ExitCode, bool) {
    let deadline = session.lifecycle.timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut idle_killed = false;
    loop {
        let clients_changed = session.clients.notified();
        let idle_deadline = idle_deadline(session);
        tokio::select! {
            code = &mut exit => return (code.unwrap_or(ExitCode(UNKNOWN_EXIT)), timed_out),
            _ = sleep_until_opt(deadline), if !timed_out => {
                timed_out = true;
                process::kill_group(session.pid);
            }
            _ = sleep_until_opt(idle_deadline), if !idle_killed => {
                if idle_deadline == self::idle_deadline(session) {
                    tracing::debug!(id = session.id(), "idle timeout");
                    idle_killed = true;
                    process::kill_group(session.pid);
                }
            }
            _ = clients_changed => {}
        }
    }
}

/// When the idle timeout fires, if no client attaches before then.
fn idle_deadline(session: &Session) -> Option<Instant> {
    let idle: Duration = session.lifecycle.idle_timeout?;
    let since = session.lock().detached_since?;
    Some(since + idle)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
