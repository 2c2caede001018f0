//! `POST /upload`, `GET /download` and `HEAD /download`.
//!
//! `?path=` is resolved by [`crate::paths::resolve`]. An upload is the
//! multipart field `file`, streamed to disk and counted against the upload
//! limit; an upload over the limit answers 413 and leaves no file. A
//! download streams the file, honouring `Range`, `If-Range` and
//! `If-None-Match` (see [`super::range`]).

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, FileOp};
use super::range::{self, Plan};
use super::AppState;
use crate::files::{self, FileError, FileMeta, Upload};
use crate::paths;

/// Multipart framing allowed on top of the file itself before a declared
/// `Content-Length` is refused unread.
const MULTIPART_SLACK_BYTES: u64 = 64 * 1024;

/// Read size of download bodies.
const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

const OCTET_STREAM: &str = "application/octet-stream";

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    path: String,
}

pub async fn upload(
    State(app): State<Arc<AppState>>,
    query: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let target = resolve(&app, query, FileOp::Write)?;
    let mut multipart =
        multipart.map_err(|e| ApiError::invalid(format!("expected a multipart body: {e}")))?;
    let limit = app.max_upload_bytes;
    if declared_length(&headers).is_some_and(|n| n > limit + MULTIPART_SLACK_BYTES) {
        drain(&mut multipart).await;
        return Err(ApiError::file(
            FileOp::Write,
            &FileError::TooLarge { limit },
        ));
    }
    let written = match receive(&mut multipart, target.clone(), limit).await {
        Ok(written) => written,
        Err(error) => {
            drain(&mut multipart).await;
            return Err(error);
        }
    };
    Ok(Json(json!({"path": target, "size_bytes": written})))
}

/// Streams the `file` field into `target`.
async fn receive(
    multipart: &mut Multipart,
    target: std::path::PathBuf,
    limit: u64,
) -> Result<u64, ApiError> {
    let write_error = |e: FileError| ApiError::file(FileOp::Write, &e);
    let bad_body = |e: axum::extract::multipart::MultipartError| {
        ApiError::invalid(format!("malformed multipart body: {}", e.body_text()))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad_body)? {
        if field.name() != Some("file") {
            continue;
        }
        let mut upload = Upload::begin(target, limit).await.map_err(write_error)?;
        while let Some(chunk) = field.chunk().await.map_err(bad_body)? {
            upload.write(&chunk).await.map_err(write_error)?;
        }
        return upload.commit().await.map_err(write_error);
    }
    Err(ApiError::invalid("multipart body has no \"file\" field"))
}

/// Reads and discards the rest of the body, so the client (which sends the
/// whole body before reading) gets the answer instead of a reset.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

pub async fn download(
    State(app): State<Arc<AppState>>,
    query: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = resolve(&app, query, FileOp::Read)?;
    let (mut file, meta) = files::open(&path)
        .await
        .map_err(|e| ApiError::file(FileOp::Read, &e))?;
    let plan = range::plan(&headers, meta.size, &meta.etag);
    let (start, len) = match plan {
        Plan::Full => (0, meta.size),
        Plan::Partial { start, end } => (start, end - start + 1),
        Plan::Unsatisfiable | Plan::NotModified => return Ok(bodyless(plan, &meta)),
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::file(FileOp::Read, &FileError::Io(path.clone(), e)))?;
    }
    let body = Body::from_stream(ReaderStream::with_capacity(
        file.take(len),
        DOWNLOAD_CHUNK_BYTES,
    ));
    let mut response = (status_of(plan), body).into_response();
    set_headers(response.headers_mut(), &meta, plan);
    Ok(response)
}

/// `HEAD /download`: the download's headers without its body.
pub async fn stat(
    State(app): State<Arc<AppState>>,
    query: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = resolve(&app, query, FileOp::Read)?;
    let (_, meta) = files::open(&path)
        .await
        .map_err(|e| ApiError::file(FileOp::Read, &e))?;
    Ok(bodyless(
        range::plan(&headers, meta.size, &meta.etag),
        &meta,
    ))
}

fn bodyless(plan: Plan, meta: &FileMeta) -> Response {
    let mut response = status_of(plan).into_response();
    set_headers(response.headers_mut(), meta, plan);
    response
}

fn status_of(plan: Plan) -> StatusCode {
    match plan {
        Plan::Full => StatusCode::OK,
        Plan::Partial { .. } => StatusCode::PARTIAL_CONTENT,
        Plan::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Plan::NotModified => StatusCode::NOT_MODIFIED,
    }
}

fn set_headers(headers: &mut HeaderMap, meta: &FileMeta, plan: Plan) {
    let mut set = |name, value: String| {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    };
    set(ETAG, meta.etag.clone());
    set(LAST_MODIFIED, meta.last_modified.clone());
    set(ACCEPT_RANGES, "bytes".to_string());
    match plan {
        Plan::Full => {
            set(CONTENT_TYPE, OCTET_STREAM.to_string());
            set(CONTENT_LENGTH, meta.size.to_string());
        }
        Plan::Partial { start, end } => {
            set(CONTENT_TYPE, OCTET_STREAM.to_string());
            set(CONTENT_LENGTH, (end - start + 1).to_string());
            set(CONTENT_RANGE, format!("bytes {start}-{end}/{}", meta.size));
        }
        Plan::Unsatisfiable => set(CONTENT_RANGE, format!("bytes */{}", meta.size)),
        Plan::NotModified => {}
    }
}

/// The resolved `?path=`, or a 400 in the operation's error kind.
fn resolve(
    app: &AppState,
    query: Result<Query<PathQuery>, QueryRejection>,
    op: FileOp,
) -> Result<std::path::PathBuf, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::invalid("missing ?path= parameter"))?;
    paths::resolve(&app.workdir, &query.path).map_err(|e| ApiError::path(op, &e))
}
