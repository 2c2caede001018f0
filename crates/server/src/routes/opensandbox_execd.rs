//! execd routes: `/v1/sandboxes/{id}/execd/...`, where the endpoint of port
//! 44772 points (`crate::opensandbox::execd` says how each call is served).
//! Every call needs the endpoint's `X-Sandbox-Token` (or an API key of the
//! sandbox's tenant); a paused (stopped) sandbox is started first, as for
//! LangSmith's data plane.
//!
//! Code interpreting (`/code`, `/code/context(s)`) is
//! `crate::opensandbox::code`. Bash sessions (`/session`), isolated
//! sessions (`/v1/isolated/...`), PTY sessions (`/pty`) and caller-bound
//! operations (`/execution/...`, `/command/operations`) answer 501
//! `NOT_IMPLEMENTED`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::opensandbox_lifecycle::{parse_json, stamped};
use crate::auth::Caller;
use crate::opensandbox::agent::Agent;
use crate::opensandbox::auth::execd_caller;
use crate::opensandbox::code;
use crate::opensandbox::error::OsError;
use crate::opensandbox::execd::{commands, files, metrics};
use crate::sandboxes::ActivityGuard;
use crate::state::AppState;

const BASE: &str = "/v1/sandboxes/{id}/execd";

pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/ping", get(ping))
        .route("/command", post(run_command).delete(interrupt_command))
        .route("/command/{cid}/interrupt", post(interrupt_one))
        .route("/command/status/{cid}", get(command_status))
        .route("/command/{cid}/logs", get(command_logs))
        .route("/files", delete(remove_files))
        .route("/files/info", get(files_info))
        .route("/files/permissions", post(chmod))
        .route("/files/mv", post(rename))
        .route("/files/search", get(search))
        .route("/files/replace", post(replace))
        .route(
            "/files/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/files/download", get(download))
        .route("/directories", post(make_dirs).delete(remove_dirs))
        .route("/directories/list", get(list_dir))
        .route("/metrics", get(get_metrics))
        .route("/metrics/watch", get(watch_metrics))
        .route("/code", post(run_code).delete(interrupt_code))
        .route("/code/context", post(create_context))
        .route("/code/contexts", get(list_contexts).delete(delete_contexts))
        .route(
            "/code/contexts/{ctx}",
            get(get_context).delete(delete_context),
        )
        .route("/command/operations", any(operations))
        .route("/execution/{*rest}", any(operations))
        .route("/pty", any(pty))
        .route("/pty/{*rest}", any(pty))
        .route("/session", any(session))
        .route("/session/{*rest}", any(session))
        .route("/v1/isolated/{*rest}", any(isolated));
    Router::new().nest(BASE, routes)
}

/// An authorised execd call: the caller and the sandbox's agent. Holding
/// it counts as a connection to the sandbox (it is not idle meanwhile).
pub struct Execd {
    caller: Caller,
    id: String,
    /// The sandbox's limits, for metrics.
    limits: (i64, i64),
    agent: Agent,
    guard: ActivityGuard,
}

impl FromRequestParts<AppState> for Execd {
    type Rejection = OsError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, OsError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| OsError::bad_request(e.to_string()))?;
        let id = params
            .get("id")
            .cloned()
            .ok_or_else(|| OsError::bad_request("missing sandbox id"))?;
        let caller = execd_caller(state, parts, &id).await?;
        let row = state.sandboxes.find(&caller, &id).await?;
        let socket = state.sandboxes.dataplane_socket(&caller, &row.id).await?;
        crate::opensandbox::sweeper::ensure_running(&state.store);
        Ok(Self {
            guard: state.sandboxes.connection(&row.id),
            caller,
            limits: (row.vcpus, row.mem_bytes),
            id: row.id,
            agent: Agent::new(socket),
        })
    }
}

fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, OsError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| OsError::bad_request(format!("Invalid query: {e}")))
}

fn values(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

fn one(pairs: &[(String, String)], key: &str) -> Result<String, OsError> {
    values(pairs, key)
        .into_iter()
        .next()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OsError::bad_request(format!("query parameter '{key}' is required")))
}

fn number<T: std::str::FromStr>(
    pairs: &[(String, String)],
    key: &str,
) -> Result<Option<T>, OsError> {
    values(pairs, key)
        .into_iter()
        .next()
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| OsError::bad_request(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

fn json<T: Serialize>(body: &T) -> Response {
    stamped(Json(body).into_response())
}

fn ok() -> Response {
    stamped(StatusCode::OK.into_response())
}

async fn ping(execd: Execd) -> Response {
    code::ensure_runtime(&execd.agent).await;
    ok()
}

async fn run_command(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let req: commands::RunCommand = parse_json(&body)?;
    commands::run(
        execd.agent,
        execd.guard,
        &execd.caller.tenant_id,
        &execd.id,
        req,
    )
    .await
}

async fn interrupt(execd: &Execd, cid: &str) -> Result<Response, OsError> {
    let exec = commands::executions().get(&execd.caller.tenant_id, &execd.id, cid)?;
    commands::interrupt(&execd.agent, &exec).await?;
    Ok(ok())
}

async fn interrupt_command(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let cid = one(&pairs(&uri)?, "id")?;
    interrupt(&execd, &cid).await
}

async fn interrupt_one(
    execd: Execd,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, OsError> {
    let cid = params.get("cid").cloned().unwrap_or_default();
    interrupt(&execd, &cid).await
}

async fn command_status(
    execd: Execd,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, OsError> {
    let cid = params.get("cid").cloned().unwrap_or_default();
    let exec = commands::executions().get(&execd.caller.tenant_id, &execd.id, &cid)?;
    Ok(json(&commands::status(&exec)))
}

async fn command_logs(
    execd: Execd,
    Path(params): Path<HashMap<String, String>>,
    uri: Uri,
) -> Result<Response, OsError> {
    let cid = params.get("cid").cloned().unwrap_or_default();
    let cursor = number::<usize>(&pairs(&uri)?, "cursor")?.unwrap_or(0);
    let exec = commands::executions().get(&execd.caller.tenant_id, &execd.id, &cid)?;
    let (text, next) = commands::logs(&exec, cursor);
    let mut response =
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    response
        .headers_mut()
        .insert("execd-commands-tail-cursor", HeaderValue::from(next));
    Ok(stamped(response))
}

async fn files_info(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let paths = values(&pairs(&uri)?, "path");
    if paths.is_empty() {
        return Err(OsError::bad_request("query parameter 'path' is required"));
    }
    Ok(json(&files::info(&execd.agent, &paths).await?))
}

async fn remove_files(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let paths = values(&pairs(&uri)?, "path");
    files::remove_files(&execd.agent, &paths).await?;
    Ok(ok())
}

async fn remove_dirs(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let paths = values(&pairs(&uri)?, "path");
    files::remove_dirs(&execd.agent, &paths).await?;
    Ok(ok())
}

async fn chmod(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let entries: BTreeMap<String, files::Permission> = parse_json(&body)?;
    files::chmod(&execd.agent, &entries).await?;
    Ok(ok())
}

async fn make_dirs(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let entries: BTreeMap<String, files::Permission> = parse_json(&body)?;
    files::make_dirs(&execd.agent, &entries).await?;
    Ok(ok())
}

async fn rename(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let items: Vec<files::RenameItem> = parse_json(&body)?;
    files::rename(&execd.agent, &items).await?;
    Ok(ok())
}

async fn search(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let pairs = pairs(&uri)?;
    let path = one(&pairs, "path")?;
    let pattern = values(&pairs, "pattern")
        .into_iter()
        .next()
        .unwrap_or_default();
    Ok(json(&files::search(&execd.agent, &path, &pattern).await?))
}

async fn list_dir(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let pairs = pairs(&uri)?;
    let path = one(&pairs, "path")?;
    let depth = number::<u32>(&pairs, "depth")?.unwrap_or(1);
    Ok(json(&files::list_dir(&execd.agent, &path, depth).await?))
}

async fn replace(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let entries: BTreeMap<String, files::ReplaceItem> = parse_json(&body)?;
    Ok(json(&files::replace(&execd.agent, &entries).await?))
}

/// `POST /files/upload`: `metadata` (JSON) and `file` parts, in pairs.
async fn upload(
    State(state): State<AppState>,
    execd: Execd,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, OsError> {
    let mut multipart = multipart.map_err(|e| OsError::bad_request(e.to_string()))?;
    let max = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    let bad = |e: axum::extract::multipart::MultipartError| OsError::bad_request(e.to_string());
    let mut meta: Option<files::FileMetadata> = None;
    let mut written = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            data.extend_from_slice(&chunk);
            if data.len() > max {
                return Err(OsError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("file over the upload limit of {max} bytes"),
                ));
            }
        }
        match name.as_str() {
            "metadata" => meta = Some(parse_json(&Bytes::from(data))?),
            "file" => {
                let meta = meta.take().ok_or_else(|| {
                    OsError::bad_request("a file part must follow its metadata part")
                })?;
                files::write(&execd.agent, &meta, Bytes::from(data)).await?;
                written += 1;
            }
            _ => {}
        }
    }
    if written == 0 {
        return Err(OsError::bad_request("no file part in the upload"));
    }
    Ok(ok())
}

/// `GET /files/download`: the agent's bytes (with `Range`), or a line
/// window with `offset`/`limit`.
async fn download(execd: Execd, uri: Uri, headers: HeaderMap) -> Result<Response, OsError> {
    let pairs = pairs(&uri)?;
    let path = one(&pairs, "path")?;
    let offset = number::<usize>(&pairs, "offset")?;
    let limit = number::<usize>(&pairs, "limit")?;
    let name = path.rsplit('/').next().unwrap_or("file").replace('"', "");
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = if offset.is_some() || limit.is_some() {
        let bytes = files::read_all(&execd.agent, &path).await?;
        let window = files::line_window(&bytes, offset, limit);
        ([(header::CONTENT_TYPE, "application/octet-stream")], window).into_response()
    } else {
        let response = execd
            .agent
            .download(&path, headers.get(header::RANGE))
            .await?;
        let (mut parts, body) = response.into_parts();
        let guard = execd.guard;
        let body = axum::body::Body::new(GuardedBody {
            body,
            _guard: guard,
        });
        parts.headers.remove(header::CONNECTION);
        Response::from_parts(parts, body)
    };
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, disposition);
    Ok(stamped(response))
}

/// A body that keeps the sandbox marked busy until it has been sent.
struct GuardedBody {
    body: axum::body::Body,
    _guard: ActivityGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

async fn get_metrics(execd: Execd) -> Result<Response, OsError> {
    Ok(json(
        &metrics::sample(&execd.agent, execd.limits.0, execd.limits.1).await?,
    ))
}

/// `GET /metrics/watch`: a sample every second until the client leaves.
async fn watch_metrics(execd: Execd) -> Response {
    let stream = futures_util::stream::unfold(execd, |execd| async move {
        let data = match metrics::sample(&execd.agent, execd.limits.0, execd.limits.1).await {
            Ok(m) => serde_json::to_string(&m).unwrap_or_default(),
            Err(e) => serde_json::json!({"code": e.code, "message": e.message}).to_string(),
        };
        tokio::time::sleep(Duration::from_millis(800)).await;
        Some((Ok::<_, Infallible>(Event::default().data(data)), execd))
    });
    stamped(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

fn tenant_and_sandbox(execd: &Execd) -> (&str, &str) {
    (&execd.caller.tenant_id, &execd.id)
}

async fn create_context(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let req: code::ContextRequest = if body.is_empty() {
        code::ContextRequest::default()
    } else {
        parse_json(&body)?
    };
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    let context = code::contexts()
        .create(execd.agent.socket(), tenant, sandbox, req, false)
        .await?;
    Ok(json(&context.view()))
}

async fn run_code(execd: Execd, body: Bytes) -> Result<Response, OsError> {
    let req: code::RunRequest = parse_json(&body)?;
    let source = req
        .code
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| OsError::bad_request("code is required"))?;
    let wanted = req.context.unwrap_or_default();
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    let context = match wanted.id.filter(|id| !id.is_empty()) {
        Some(id) => {
            let context = code::contexts().get(tenant, sandbox, &id)?;
            if let Some(language) = wanted.language.as_deref().filter(|l| !l.is_empty()) {
                if code::check_language(Some(language))? != context.language {
                    return Err(OsError::bad_request(format!(
                        "context {id} is a {} context, not {language}",
                        context.language
                    )));
                }
            }
            context
        }
        None => {
            let language = code::check_language(wanted.language.as_deref())?;
            code::contexts()
                .default_for(execd.agent.socket(), tenant, sandbox, &language)
                .await?
        }
    };
    Ok(stamped(code::run(context, source, execd.guard).await?))
}

/// `DELETE /code?id=`: `id` is the context (execd's `init` event carries it).
async fn interrupt_code(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let id = one(&pairs(&uri)?, "id")?;
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    code::contexts().get(tenant, sandbox, &id)?.interrupt();
    Ok(ok())
}

async fn list_contexts(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let language = values(&pairs(&uri)?, "language")
        .into_iter()
        .find(|l| !l.is_empty())
        .map(|l| code::check_language(Some(&l)))
        .transpose()?;
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    Ok(json(&code::contexts().list(
        tenant,
        sandbox,
        language.as_deref(),
    )))
}

async fn delete_contexts(execd: Execd, uri: Uri) -> Result<Response, OsError> {
    let language = code::check_language(Some(&one(&pairs(&uri)?, "language")?))?;
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    code::contexts().delete_language(tenant, sandbox, &language);
    Ok(ok())
}

fn context_id(params: &HashMap<String, String>) -> String {
    params.get("ctx").cloned().unwrap_or_default()
}

async fn get_context(
    execd: Execd,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, OsError> {
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    let context = code::contexts().get(tenant, sandbox, &context_id(&params))?;
    Ok(json(&context.view()))
}

async fn delete_context(
    execd: Execd,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, OsError> {
    let (tenant, sandbox) = tenant_and_sandbox(&execd);
    code::contexts().delete(tenant, sandbox, &context_id(&params))?;
    Ok(ok())
}

async fn operations(_: Execd) -> OsError {
    OsError::not_implemented(
        "Caller-bound execution operations (/execution/..., /command/operations)",
    )
}

async fn pty(_: Execd) -> OsError {
    OsError::not_implemented("PTY sessions (/pty; Sandpit's own API has terminals)")
}

async fn session(_: Execd) -> OsError {
    OsError::not_implemented("Bash sessions (/session)")
}

async fn isolated(_: Execd) -> OsError {
    OsError::not_implemented("Isolated sessions (/v1/isolated)")
}
