//! Images travel between replicas: a node about to boot a snapshot whose
//! image it does not hold (pulled or captured on another node) fetches the
//! image record and the missing layers from a live peer that has them.
//!
//! Served on the internal API with the cluster token, like [`super::rpc`]:
//! `GET /internal/v1/cluster/images/{digest}` (the record, JSON) and
//! `GET /internal/v1/cluster/layers/{digest}` (the layer as an uncompressed
//! OCI tar, [`sandpit_images::pack`]). The receiver unpacks it with the
//! same hostile-safe unpacker as a registry pull, into `tmp/`, and renames
//! it in whole, so a layer is present only when complete.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use sandpit_images::unpack::Compression;
use sandpit_images::{ImageRecord, LayerStore};
use tokio::io::AsyncWriteExt;

use super::rpc::{connect, token_ok, unreachable, TOKEN_HEADER};
use super::Cluster;
use crate::error::ApiError;
use crate::state::AppState;

pub const IMAGES_PATH: &str = "/internal/v1/cluster/images/{digest}";
pub const LAYERS_PATH: &str = "/internal/v1/cluster/layers/{digest}";
/// Bound on one layer's unpacked size (as for a registry pull).
const MAX_LAYER_BYTES: u64 = 64 << 30;
/// Longest a layer transfer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Why an image could not be fetched from the peers.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no live replica holds image {0}")]
    Nowhere(String),
    #[error("replica {url}: {message}")]
    Peer { url: String, message: String },
    #[error("layer store: {0}")]
    Store(#[from] sandpit_images::StoreError),
    #[error("database: {0}")]
    Database(#[from] crate::store::StoreError),
    #[error("fetching image {0} took too long")]
    Timeout(String),
}

/// Make image `digest` (its record and every layer) present in `store`,
/// fetching what is missing from a live peer. A no-op when it is here.
pub async fn ensure(
    cluster: &Cluster,
    store: &Arc<LayerStore>,
    digest: &str,
) -> Result<(), FetchError> {
    let _pin = store.pin(digest);
    if let Some(record) = store.image(digest)? {
        if record.layers.iter().all(|l| store.has_layer(l)) {
            return Ok(());
        }
    }
    tokio::time::timeout(FETCH_TIMEOUT, fetch(cluster, store, digest))
        .await
        .map_err(|_| FetchError::Timeout(digest.to_owned()))?
}

async fn fetch(cluster: &Cluster, store: &Arc<LayerStore>, digest: &str) -> Result<(), FetchError> {
    let token = cluster.secret().rpc_token();
    let mut last = FetchError::Nowhere(digest.to_owned());
    for node in cluster.live_peers().await? {
        match fetch_from(&node.url, &token, store, digest).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(node = %node.name, error = %err, "fetching an image from a replica failed");
                last = err;
            }
        }
    }
    Err(last)
}

/// Fetch `digest` from the node at `url`; Ok(false) if it does not hold it.
async fn fetch_from(
    url: &str,
    token: &str,
    store: &Arc<LayerStore>,
    digest: &str,
) -> Result<bool, FetchError> {
    let peer = |message: String| FetchError::Peer {
        url: url.to_owned(),
        message,
    };
    let response = get(url, token, &format!("/internal/v1/cluster/images/{digest}"))
        .await
        .map_err(peer)?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    let body = collect(response).await.map_err(peer)?;
    let record: ImageRecord =
        serde_json::from_slice(&body).map_err(|e| peer(format!("bad image record: {e}")))?;
    if record.digest != digest {
        return Err(peer(format!(
            "answered image {} for {digest}",
            record.digest
        )));
    }
    let mut pins = Vec::new();
    for layer in &record.layers {
        pins.push(store.pin(layer));
        if !store.has_layer(layer) {
            fetch_layer(url, token, store, layer).await?;
        }
    }
    store.put_image(&record)?;
    tracing::info!(%digest, from = url, layers = record.layers.len(), "image fetched from a replica");
    Ok(true)
}

async fn fetch_layer(
    url: &str,
    token: &str,
    store: &Arc<LayerStore>,
    layer: &str,
) -> Result<(), FetchError> {
    let peer = |message: String| FetchError::Peer {
        url: url.to_owned(),
        message,
    };
    let mut response = get(url, token, &format!("/internal/v1/cluster/layers/{layer}"))
        .await
        .map_err(peer)?;
    if !response.status().is_success() {
        return Err(peer(format!("layer {layer}: {}", response.status())));
    }
    // Into a file first: the unpacker is blocking, and a file lets it run
    // on a blocking thread.
    let blob = store.temp_path("fetched");
    let written = async {
        let mut file = tokio::fs::File::create(&blob).await?;
        while let Some(frame) = response.body_mut().frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await?;
            }
        }
        file.flush().await
    }
    .await;
    let result = match written {
        Ok(()) => {
            let (store, layer, path) = (store.clone(), layer.to_owned(), blob.clone());
            tokio::task::spawn_blocking(move || {
                store.unpack_layer(&layer, &path, Compression::None, MAX_LAYER_BYTES)
            })
            .await
            .map_err(|e| peer(e.to_string()))
            .and_then(|r| r.map(|_| ()).map_err(FetchError::from))
        }
        Err(err) => Err(peer(format!("layer {layer}: {err}"))),
    };
    let _ = tokio::fs::remove_file(&blob).await;
    result
}

/// `GET path` on the node at `url` with the cluster token.
async fn get(
    url: &str,
    token: &str,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let (authority, mut sender) = connect(url).await?;
    let request = http::Request::get(path)
        .header(http::header::HOST, &authority)
        .header(TOKEN_HEADER, token)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(url, &e))
}

async fn collect(response: http::Response<hyper::body::Incoming>) -> Result<Bytes, String> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body)
}

/// The layer store of `state`, if the caller holds the cluster token.
fn authorised(state: &AppState, headers: &HeaderMap) -> Result<Arc<LayerStore>, ApiError> {
    let Some(cluster) = state.cluster.as_ref() else {
        return Err(ApiError::NotFound {
            kind: "Route",
            name: "/internal/v1/cluster".into(),
        });
    };
    if !token_ok(cluster, headers) {
        return Err(ApiError::Unauthorized("Invalid cluster token".into()));
    }
    Ok(state.snapshots()?.puller().store().clone())
}

/// `GET /internal/v1/cluster/images/{digest}`: the image record.
pub async fn serve_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let store = authorised(&state, &headers)?;
    match store.image(&digest) {
        Ok(Some(record)) if record.layers.iter().all(|l| store.has_layer(l)) => {
            Ok(Json(record).into_response())
        }
        Ok(_) => Err(ApiError::NotFound {
            kind: "Image",
            name: digest,
        }),
        Err(err) => Err(ApiError::BadRequest(err.to_string())),
    }
}

/// `GET /internal/v1/cluster/layers/{digest}`: the layer as an OCI tar.
pub async fn serve_layer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let store = authorised(&state, &headers)?;
    let dir = match store.layer_dir(&digest) {
        Ok(dir) if dir.is_dir() => dir,
        Ok(_) => {
            return Err(ApiError::NotFound {
                kind: "Layer",
                name: digest,
            })
        }
        Err(err) => return Err(ApiError::BadRequest(err.to_string())),
    };
    // Packed on a blocking thread into a file first, so the response has
    // a length: a transfer cut short is an error on the other side, never
    // a layer that looks whole.
    let pin = store.pin(&digest);
    let path = store.temp_path("export");
    let packed = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let _pin = pin;
            let file = std::fs::File::create(&path)?;
            sandpit_images::pack::pack_layer(&dir, std::io::BufWriter::new(file))?;
            std::fs::File::open(&path)
        })
        .await
    };
    let _ = std::fs::remove_file(&path);
    let file = match packed {
        Ok(Ok(file)) => file,
        Ok(Err(err)) => {
            let err = anyhow::Error::new(err).context(format!("packing layer {digest}"));
            return Err(ApiError::Internal(err));
        }
        Err(err) => return Err(ApiError::Internal(err.into())),
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [(http::header::CONTENT_LENGTH, length.to_string())],
        Body::from_stream(stream),
    )
        .into_response())
}
