//! The lifecycle operations, on Sandpit's controller (`crate::sandboxes`):
//! an OpenSandbox sandbox is a Sandpit sandbox row like any other.
//!
//! **Images.** `image.uri` is `host` (the built-in image), a snapshot
//! reference of the caller's tenant (id, `name:tag` or name), or a registry
//! image: that one is pulled through the snapshot store into a snapshot
//! named after the image (reused by later creates), and a pull failure is
//! 400 `INVALID_IMAGE`. `snapshotId` names a snapshot directly.
//!
//! **Pause is a stop, resume a start.** The writable layer (every file) is
//! kept, processes are not. Why not a cgroup freeze: a frozen sandbox would
//! hold its memory and its vCPU/memory quota for as long as it is paused,
//! would need a status LangSmith clients do not know (to them it would be
//! `ready` yet never answer, since its agent is frozen too), and does not
//! survive a server restart. A stopped sandbox is what LangSmith already
//! has: it shows as `Paused` here and `stopped` there, and a data-plane or
//! execd request starts it again, as LangSmith's do.
//!
//! **Retention.** `timeout` is the row's `ttl_seconds` (its lifetime from
//! creation; renew moves it); an OpenSandbox sandbox has no idle stop and
//! no deletion after stop, so it lives until then or until it is killed.
//!
//! **Entrypoint.** PID 1 is always Sandpit's agent; the entrypoint runs as
//! a detached command (id [`ENTRYPOINT_ID`]) once the sandbox is ready, and
//! again after each resume.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use sandpit_api::sandbox::RunConfig;
use sandpit_api::{CreateSandboxRequest, SandboxStatus};
use serde_json::Map;

use super::agent::{sh_quote, Agent, AgentEvent, StartRequest};
use super::error::OsError;
use super::model::{self, CreateRequest, Extra, EXTRA_KEY};
use crate::auth::Caller;
use crate::sandboxes::validate::{create_spec, ImageRef, UpdateSpec};
use crate::sandboxes::Sandboxes;
use crate::snapshots::validate::{create_snapshot, CreateSnapshotRequest};
use crate::state::AppState;
use crate::store::{ListFilter, SandboxRow, SortColumn};

/// Shortest and longest `timeout` (seconds) the spec allows.
pub const MIN_TIMEOUT: i64 = 60;
pub const MAX_TIMEOUT: i64 = 86_400;
/// How long a create waits for a registry image to be pulled.
const PULL_WAIT: Duration = Duration::from_secs(600);
/// How long the entrypoint waits for its sandbox to become ready.
const ENTRYPOINT_WAIT: Duration = Duration::from_secs(300);
/// Agent command id of the entrypoint.
pub const ENTRYPOINT_ID: &str = "opensandbox-entrypoint";

/// `cpu` and `memory` of `resourceLimits` as whole vCPUs (rounded up) and
/// bytes. `gpu` other than 0 is refused; other keys are ignored.
fn resources(limits: &BTreeMap<String, String>) -> Result<(Option<i64>, Option<i64>), OsError> {
    use crate::templates::quantity;
    let mut vcpus = None;
    let mut mem = None;
    for (key, value) in limits {
        match key.as_str() {
            "cpu" => {
                let millis = quantity::cpu_millis(value)
                    .map_err(|e| OsError::bad_request(format!("resourceLimits.cpu: {e}")))?;
                vcpus = Some(i64::try_from(millis.div_ceil(1000).max(1)).unwrap_or(i64::MAX));
            }
            "memory" => {
                let bytes = quantity::bytes(value)
                    .map_err(|e| OsError::bad_request(format!("resourceLimits.memory: {e}")))?;
                mem = Some(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            "gpu" if value.trim() != "0" => {
                return Err(OsError::bad_request("Sandpit sandboxes have no GPUs"));
            }
            _ => {}
        }
    }
    Ok((vcpus, mem))
}

fn check_timeout(timeout: Option<i64>) -> Result<Option<i64>, OsError> {
    match timeout {
        None => Ok(None),
        Some(t) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&t) => Ok(Some(t)),
        Some(t) => Err(OsError::bad_request(format!(
            "timeout must be between {MIN_TIMEOUT} and {MAX_TIMEOUT} seconds, got {t}"
        ))),
    }
}

/// Refuses what Sandpit does not implement, rather than ignoring it.
fn refuse_unsupported(req: &CreateRequest) -> Result<(), OsError> {
    if req.template_id.is_some() {
        return Err(OsError::not_implemented("templateId (fsb templates)"));
    }
    if req.volumes.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(OsError::not_implemented("volumes"));
    }
    let policy_set = req
        .network_policy
        .as_ref()
        .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()));
    if policy_set {
        return Err(OsError::not_implemented(
            "networkPolicy (use Sandpit's proxy_config through the LangSmith API)",
        ));
    }
    if req.image.as_ref().is_some_and(|i| i.auth.is_some()) {
        return Err(OsError::not_implemented(
            "image.auth (configure registry credentials on the server)",
        ));
    }
    Ok(())
}

/// A snapshot name for registry image `uri`: `img-` and the URI in
/// lowercase letters, digits and `-`.
pub fn snapshot_name_for(uri: &str) -> String {
    let mut name = String::from("img-");
    let mut dash = false;
    for c in uri.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
            dash = false;
        } else if !dash {
            name.push('-');
            dash = true;
        }
    }
    let mut name: String = name
        .chars()
        .take(crate::sandboxes::validate::MAX_NAME_LEN)
        .collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

fn invalid_image(message: String) -> OsError {
    OsError::new(StatusCode::BAD_REQUEST, "INVALID_IMAGE", message)
}

/// What `uri` boots, pulling a registry image into a snapshot if needed.
async fn image_ref(state: &AppState, caller: &Caller, uri: &str) -> Result<ImageRef, OsError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(invalid_image("image.uri must not be empty".into()));
    }
    if uri == crate::templates::HOST_IMAGE {
        return Ok(ImageRef::Host);
    }
    let snapshots = state.snapshots()?;
    let name = snapshot_name_for(uri);
    for reference in [uri, name.as_str()] {
        if let Ok(row) = snapshots.get(caller, reference).await {
            if row.status != "failed" {
                return wait_for_snapshot(state, caller, &row.id, uri).await;
            }
        }
    }
    // Tagged `latest`, so that the bare name finds it again (a bare name
    // is `name:latest`, else the newest untagged snapshot; the image's own
    // tag is part of the name already).
    let request = CreateSnapshotRequest {
        name,
        docker_image: uri.to_owned(),
        fs_capacity_bytes: None,
        tag: Some("latest".into()),
        registry_id: None,
        run_config: None,
        labels: None,
    };
    let create = create_snapshot(request, state.sandboxes.defaults().fs_capacity_bytes)
        .map_err(|e| invalid_image(format!("Invalid image '{uri}': {e}")))?;
    let row = snapshots.create(caller, create).await?;
    wait_for_snapshot(state, caller, &row.id, uri).await
}

async fn wait_for_snapshot(
    state: &AppState,
    caller: &Caller,
    id: &str,
    uri: &str,
) -> Result<ImageRef, OsError> {
    let snapshots = state.snapshots()?;
    let deadline = tokio::time::Instant::now() + PULL_WAIT;
    loop {
        let row = snapshots.get(caller, id).await?;
        match row.status.as_str() {
            "ready" => return Ok(ImageRef::Snapshot(row.id)),
            "failed" => {
                let why = row.status_message.unwrap_or_default();
                // Leave no failed snapshot behind for a bad image.
                let _ = snapshots.delete(caller, &row.id).await;
                return Err(invalid_image(format!(
                    "Image '{uri}' could not be pulled: {why}"
                )));
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(OsError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "TIMEOUT",
                    format!("Image '{uri}' is still being pulled; retry later"),
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `POST /v1/sandboxes`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    req: CreateRequest,
) -> Result<SandboxRow, OsError> {
    refuse_unsupported(&req)?;
    let timeout = check_timeout(req.timeout)?;
    let (vcpus, mem_bytes) = resources(&req.resource_limits.clone().unwrap_or_default())?;
    let (image_ref, uri) = match (&req.image, &req.snapshot_id) {
        (Some(_), Some(_)) => {
            return Err(OsError::bad_request(
                "Exactly one of image and snapshotId may be given",
            ))
        }
        (Some(image), None) => (
            image_ref(state, caller, &image.uri).await?,
            image.uri.clone(),
        ),
        (None, Some(id)) => (ImageRef::Snapshot(id.clone()), id.clone()),
        (None, None) => {
            return Err(OsError::bad_request("image (or snapshotId) is required"));
        }
    };
    let entrypoint = match req.entrypoint {
        Some(e) if e.is_empty() || e[0].is_empty() => {
            return Err(OsError::bad_request("entrypoint must name a program"))
        }
        Some(e) => e,
        None => model::default_entrypoint(),
    };
    let extra = Extra {
        image: Some(uri),
        entrypoint,
    };
    let mut extra_fields = Map::new();
    extra_fields.insert(
        EXTRA_KEY.to_owned(),
        serde_json::to_value(&extra).map_err(|e| OsError::internal("extra", e))?,
    );
    let wire = CreateSandboxRequest {
        wait_for_ready: Some(false),
        // An OpenSandbox sandbox lives until its timeout or a kill: no idle
        // stop, and a paused one is not deleted for being stopped.
        idle_ttl_seconds: Some(0),
        delete_after_stop_seconds: Some(0),
        vcpus,
        mem_bytes,
        run_config: req.env.filter(|e| !e.is_empty()).map(|env| RunConfig {
            env_vars: Some(env),
            ..RunConfig::default()
        }),
        labels: req.metadata,
        extra: extra_fields,
        ..CreateSandboxRequest::default()
    };
    let mut spec = create_spec(wire, state.sandboxes.defaults())?;
    spec.image_ref = image_ref;
    spec.ttl_seconds = timeout;
    let row = state.sandboxes.create(caller, spec).await?;
    spawn_entrypoint(state.sandboxes.clone(), caller.clone(), row.id.clone());
    Ok(row)
}

/// Runs the sandbox's entrypoint once it is ready (see the module docs).
pub fn spawn_entrypoint(sandboxes: Arc<Sandboxes>, caller: Caller, id: String) {
    tokio::spawn(async move {
        if let Err(err) = run_entrypoint(&sandboxes, &caller, &id).await {
            tracing::warn!(sandbox = %id, error = %err, "OpenSandbox entrypoint did not start");
        }
    });
}

async fn run_entrypoint(
    sandboxes: &Arc<Sandboxes>,
    caller: &Caller,
    id: &str,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + ENTRYPOINT_WAIT;
    let row = loop {
        let row = sandboxes
            .find_by_id(caller, id)
            .await
            .map_err(|e| e.to_string())?;
        match row.status().map_err(|e| e.to_string())? {
            SandboxStatus::Ready => break row,
            SandboxStatus::Provisioning if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Err(format!("sandbox is {}", other.as_str())),
        }
    };
    let Some(extra) = Extra::of(&row).filter(|e| !e.entrypoint.is_empty()) else {
        return Ok(());
    };
    let command = extra
        .entrypoint
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let socket = sandboxes
        .dataplane_socket(caller, id)
        .await
        .map_err(|e| e.to_string())?;
    let agent = Agent::new(socket);
    let mut request = StartRequest::detached(format!("exec {command}"), ENTRYPOINT_ID.into());
    request.ttl_seconds = -1.0;
    let mut events = agent.start(&request).await.map_err(|e| e.to_string())?;
    match events.next().await.map_err(|e| e.to_string())? {
        Some(AgentEvent::Started { .. }) => Ok(()),
        other => Err(format!("unexpected first event {other:?}")),
    }
}

/// Every sandbox of the caller's tenant, newest first (warm pool members
/// excluded).
async fn all_rows(state: &AppState, caller: &Caller) -> Result<Vec<SandboxRow>, OsError> {
    const PAGE: i64 = crate::sandboxes::validate::MAX_LIST_LIMIT;
    let mut rows = Vec::new();
    loop {
        let filter = ListFilter {
            name_contains: None,
            status: None,
            sort_by: SortColumn::CreatedAt,
            descending: true,
            limit: PAGE,
            offset: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        };
        let page = state.sandboxes.list(caller, &filter).await?;
        let done = (page.len() as i64) < PAGE;
        rows.extend(page);
        if done {
            break;
        }
    }
    rows.retain(|r| !crate::store::is_warm_name(&r.name));
    Ok(rows)
}

/// What `GET /v1/sandboxes` filters and pages by.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub states: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub page: usize,
    pub page_size: usize,
}

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Percent-decodes `text` (`+` is a space), as a query component.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the query pairs of a list request (already decoded once by the
/// query extractor). `metadata` is itself `k=v&k2=v2`, each part encoded
/// again, as the SDK sends it.
pub fn list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, OsError> {
    let mut query = ListQuery {
        page: 1,
        page_size: DEFAULT_PAGE_SIZE,
        ..ListQuery::default()
    };
    let number = |key: &str, value: &str, max: usize| -> Result<usize, OsError> {
        value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                OsError::bad_request(format!(
                    "{key} must be an integer from 1 to {max}, got '{value}'"
                ))
            })
    };
    for (key, value) in pairs {
        match key.as_str() {
            "state" => query.states.push(value),
            "page" => query.page = number("page", &value, usize::MAX)?,
            "pageSize" => query.page_size = number("pageSize", &value, MAX_PAGE_SIZE)?,
            "metadata" => {
                for part in value.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = part.split_once('=').unwrap_or((part, ""));
                    query.metadata.insert(percent_decode(k), percent_decode(v));
                }
            }
            _ => {}
        }
    }
    Ok(query)
}

/// `GET /v1/sandboxes`: states OR'ed, metadata AND'ed, then paged.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
) -> Result<model::ListView, OsError> {
    let wanted: Vec<SandboxStatus> = query
        .states
        .iter()
        .flat_map(|s| model::statuses_of(s))
        .collect();
    let rows: Vec<SandboxRow> = all_rows(state, caller)
        .await?
        .into_iter()
        .filter(|row| query.states.is_empty() || row.status().is_ok_and(|s| wanted.contains(&s)))
        .filter(|row| {
            let labels: BTreeMap<String, String> =
                serde_json::from_str(&row.labels).unwrap_or_default();
            query.metadata.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    let total_items = rows.len();
    let total_pages = total_items.div_ceil(query.page_size);
    let items = rows
        .iter()
        .skip((query.page - 1).saturating_mul(query.page_size))
        .take(query.page_size)
        .map(model::sandbox_view)
        .collect();
    Ok(model::ListView {
        items,
        pagination: model::Pagination {
            page: query.page,
            page_size: query.page_size,
            total_items,
            total_pages,
            has_next_page: query.page < total_pages,
        },
    })
}

/// A caller's sandbox by OpenSandbox id (Sandpit's id; a LangSmith name
/// works too).
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<SandboxRow, OsError> {
    Ok(state.sandboxes.find(caller, id).await?)
}

/// `POST .../pause`: stop a running sandbox (see the module docs).
pub async fn pause(state: &AppState, caller: &Caller, id: &str) -> Result<(), OsError> {
    let row = find(state, caller, id).await?;
    match row.status()? {
        SandboxStatus::Ready => {}
        other => {
            return Err(OsError::conflict(format!(
                "Sandbox '{id}' is {} and cannot be paused",
                model::state_of(other)
            )))
        }
    }
    state.sandboxes.stop(caller, &row.id).await?;
    Ok(())
}

/// `POST .../resume`: start a paused sandbox; returns once the start is
/// under way (poll GET for `Running`).
pub async fn resume(state: &AppState, caller: &Caller, id: &str) -> Result<(), OsError> {
    let row = find(state, caller, id).await?;
    match row.status()? {
        SandboxStatus::Stopped => {}
        other => {
            return Err(OsError::conflict(format!(
                "Sandbox '{id}' is {} and cannot be resumed",
                model::state_of(other)
            )))
        }
    }
    state
        .sandboxes
        .start(caller, &row.id, Duration::from_millis(0))
        .await?;
    spawn_entrypoint(state.sandboxes.clone(), caller.clone(), row.id);
    Ok(())
}

/// `POST .../renew-expiration`: a new absolute expiry, in the future.
pub async fn renew(
    state: &AppState,
    caller: &Caller,
    id: &str,
    expires_at: &str,
) -> Result<chrono::DateTime<chrono::Utc>, OsError> {
    let at = chrono::DateTime::parse_from_rfc3339(expires_at)
        .map_err(|e| OsError::bad_request(format!("expiresAt must be RFC 3339: {e}")))?
        .with_timezone(&chrono::Utc);
    let now = chrono::Utc::now();
    if at <= now {
        return Err(OsError::bad_request(format!(
            "expiresAt ({}) must be in the future",
            model::rfc3339(at)
        )));
    }
    let row = find(state, caller, id).await?;
    if row.status()? == SandboxStatus::Deleting {
        return Err(OsError::conflict(format!(
            "Sandbox '{id}' is being deleted"
        )));
    }
    let created = crate::store::parse_time(&row.created_at)?;
    let seconds = (at - created).num_milliseconds().div_euclid(1000)
        + i64::from((at - created).num_milliseconds().rem_euclid(1000) > 0);
    let spec = UpdateSpec {
        ttl_seconds: Some(seconds),
        ..UpdateSpec::default()
    };
    let row = state.sandboxes.update(caller, &row.id, spec).await?;
    model::expires_at(&row).ok_or_else(|| OsError::internal("renew", "no expiry after renew"))
}

/// `DELETE /v1/sandboxes/{id}`.
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<(), OsError> {
    let row = find(state, caller, id).await?;
    state.sandboxes.delete(caller, &row.id).await?;
    super::sweeper::forget_sandbox(&row.id);
    Ok(())
}

impl From<crate::store::StoreError> for OsError {
    fn from(err: crate::store::StoreError) -> Self {
        crate::error::ApiError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_images_get_valid_snapshot_names() {
        assert_eq!(
            snapshot_name_for("127.0.0.1:5000/bb:1"),
            "img-127-0-0-1-5000-bb-1"
        );
        assert_eq!(snapshot_name_for("Python:3.11"), "img-python-3-11");
        let long = snapshot_name_for(&"a/".repeat(100));
        assert!(long.len() <= 63 && !long.ends_with('-'));
    }

    #[test]
    fn list_query_decodes_metadata_twice_and_checks_pages() {
        let q = list_query(vec![
            ("state".into(), "Running".into()),
            ("state".into(), "Paused".into()),
            (
                "metadata".into(),
                "project=Apollo&note=Demo%20Test&a%26b=c%3Dd".into(),
            ),
            ("pageSize".into(), "5".into()),
        ])
        .expect("valid");
        assert_eq!(q.states, ["Running", "Paused"]);
        assert_eq!(
            q.metadata.get("note").map(String::as_str),
            Some("Demo Test")
        );
        assert_eq!(q.metadata.get("a&b").map(String::as_str), Some("c=d"));
        assert_eq!((q.page, q.page_size), (1, 5));
        assert!(list_query(vec![("page".into(), "0".into())]).is_err());
        assert!(list_query(vec![("pageSize".into(), "x".into())]).is_err());
    }

    #[test]
    fn timeouts_and_resources() {
        assert!(check_timeout(Some(59)).is_err());
        assert_eq!(check_timeout(Some(60)).ok(), Some(Some(60)));
        assert!(check_timeout(Some(86_401)).is_err());
        let limits = BTreeMap::from([
            ("cpu".to_owned(), "500m".to_owned()),
            ("memory".to_owned(), "512Mi".to_owned()),
        ]);
        assert_eq!(resources(&limits).ok(), Some((Some(1), Some(512 << 20))));
        let gpu = BTreeMap::from([("gpu".to_owned(), "1".to_owned())]);
        assert!(resources(&gpu).is_err());
    }
}
