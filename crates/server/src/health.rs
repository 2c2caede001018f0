//! Probes for systemd and Kubernetes: `GET /healthz` (the process answers)
//! and `GET /readyz` (what a request needs is up: the database answers a
//! query, the runtime helper answers, the egress proxy listens).
//!
//! Both are unauthenticated and cheap: every check has a short deadline,
//! and the runtime helper is not asked while it is busy with other calls
//! (its calls are serialised; a probe must not queue behind a slow start).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sandpit_runtime::Runtime;
use serde::Serialize;

use crate::state::AppState;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks besides the database (set up by `serve`).
pub struct Probes {
    pub runtime: Arc<dyn Runtime>,
    /// A loopback address of the egress proxy's HTTP listener; `None`:
    /// egress is off (`--no-egress`, or a replica without sandboxes).
    pub egress: Option<SocketAddr>,
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// One check's outcome in the `/readyz` body.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }

    fn failed(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The `/readyz` body: `failed` names the checks that failed.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub failed: Vec<&'static str>,
    pub checks: std::collections::BTreeMap<&'static str, Check>,
}

/// `GET /readyz`: 200 when every check passes, else 503 naming what failed.
pub async fn readyz(
    State(state): State<AppState>,
    probes: Option<Extension<Arc<Probes>>>,
) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("database", database(&state).await);
    match probes {
        Some(Extension(probes)) => {
            checks.insert("runtime", runtime(probes.runtime.clone()).await);
            checks.insert("egress", egress(probes.egress).await);
        }
        None => {
            checks.insert("runtime", Check::failed("no runtime probe is installed"));
        }
    }
    let failed: Vec<&'static str> = checks
        .iter()
        .filter(|(_, c)| !c.ok)
        .map(|(name, _)| *name)
        .collect();
    let (code, status) = match failed.is_empty() {
        true => (StatusCode::OK, "ready"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    if !failed.is_empty() {
        tracing::warn!(?failed, "readiness check failed");
    }
    let body = Readiness {
        status,
        failed,
        checks,
    };
    (code, Json(body)).into_response()
}

/// The database answers `SELECT 1` in time.
async fn database(state: &AppState) -> Check {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await;
    match result {
        Ok(Ok(())) => Check::ok(format!("answered in {} ms", started.elapsed().as_millis())),
        Ok(Err(err)) => Check::failed(format!("query failed: {err}")),
        Err(_) => Check::failed(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// The runtime helper process lives and answers a `running` call. While
/// other calls are queued it is not asked (the answer would wait behind
/// them, and so would a check of its pid): a busy helper is a live one.
async fn runtime(runtime: Arc<dyn Runtime>) -> Check {
    if let Some(depth) = runtime.queue_depth().filter(|d| *d > 0) {
        return Check::ok(format!("busy with {depth} call(s)"));
    }
    let call = tokio::task::spawn_blocking(move || {
        if let Some(pid) = runtime.mount_namespace_pid() {
            if !process_alive(pid) {
                return Err(format!("the runtime helper (pid {pid}) is not running"));
            }
        }
        runtime
            .running()
            .map_err(|err| format!("the runtime helper failed: {err}"))
    });
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(Ok(running))) => {
            Check::ok(format!("answered; {} sandbox(es) running", running.len()))
        }
        Ok(Ok(Err(err))) => Check::failed(err),
        Ok(Err(err)) => Check::failed(format!("the runtime check panicked: {err}")),
        Err(_) => Check::failed(format!(
            "the runtime helper did not answer within {CHECK_TIMEOUT:?}"
        )),
    }
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may hold
    // spaces and parentheses itself.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The egress proxy accepts a TCP connection on its HTTP port.
async fn egress(addr: Option<SocketAddr>) -> Check {
    let Some(addr) = addr else {
        return Check::ok("disabled");
    };
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Check::ok(format!("listening on port {}", addr.port())),
        Ok(Err(err)) => Check::failed(format!("port {} refused: {err}", addr.port())),
        Err(_) => Check::failed(format!("port {} did not accept in time", addr.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }

    #[tokio::test]
    async fn egress_check_fails_on_a_closed_port_and_passes_on_an_open_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        assert!(egress(Some(open)).await.ok);
        drop(listener);
        let check = egress(Some(open)).await;
        assert!(!check.ok, "{check:?}");
        assert!(egress(None).await.ok);
    }
}
