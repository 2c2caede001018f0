//! Pulling images from OCI/Docker registries into the [`LayerStore`].
//!
//! `oci-client` resolves the manifest (an index picks linux/amd64), runs the
//! registry's token flow (anonymous or with credentials) and verifies every
//! blob's digest while it streams to a file; each layer is then unpacked once
//! into the store. Concurrent pulls of one reference share a single pull.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::OnceCell;

use crate::config::ImageConfig;
use crate::store::{ImageRecord, LayerStore, StoreError};
use crate::unpack::Compression;

/// Upper bound on the file content one layer may unpack to.
const MAX_LAYER_BYTES: u64 = 64 << 30;

/// Why a pull failed. Cloneable, so every waiter of a shared pull gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference '{0}'")]
    Reference(String),
    #[error("image '{0}' not found in its registry")]
    NotFound(String),
    #[error("registry of image '{image}' is unreachable: {message}")]
    Unreachable { image: String, message: String },
    #[error("registry refused access to image '{0}'")]
    Unauthorized(String),
    #[error("digest verification failed for image '{image}': {message}")]
    Digest { image: String, message: String },
    #[error("pulling image '{image}' failed: {message}")]
    Registry { image: String, message: String },
    #[error("unpacking image '{image}' failed: {message}")]
    Unpack { image: String, message: String },
}

/// Registry settings of the puller.
#[derive(Debug, Clone, Default)]
pub struct PullerConfig {
    /// `HOST:PORT`s reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Registry host → (user, password).
    pub credentials: HashMap<String, (String, String)>,
}

type Shared = Arc<OnceCell<Result<ImageRecord, PullError>>>;

/// Credentials for one pull (a tenant's private registry), in place of the
/// server-wide ones.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Distinguishes pulls made with different credentials (a digest, so
    /// the password is not kept in the key).
    fn key(&self) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(self.username.as_bytes());
        hash.update([0]);
        hash.update(self.password.as_bytes());
        hex::encode(hash.finalize())
    }
}

pub struct Puller {
    client: Client,
    store: Arc<LayerStore>,
    config: PullerConfig,
    inflight: Mutex<HashMap<String, Shared>>,
    /// Layers being unpacked, so two images sharing a layer unpack it once.
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The registry host (and port) `image` is pulled from, Docker Hub as
/// `docker.io`.
pub fn registry_of(image: &str) -> Result<String, PullError> {
    let reference: Reference = image
        .parse()
        .map_err(|_| PullError::Reference(image.to_owned()))?;
    Ok(reference.registry().to_owned())
}

fn new_client(config: &PullerConfig) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(config.insecure_registries.clone()),
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..Default::default()
    })
}

impl Puller {
    pub fn new(store: Arc<LayerStore>, config: PullerConfig) -> Self {
        let client = new_client(&config);
        Self {
            client,
            store,
            config,
            inflight: Mutex::default(),
            layer_locks: Mutex::default(),
        }
    }

    pub fn store(&self) -> &Arc<LayerStore> {
        &self.store
    }

    /// Pull `image` (e.g. `registry:5000/busybox:1`), or join the pull of it
    /// already running.
    pub async fn pull(&self, image: &str) -> Result<ImageRecord, PullError> {
        self.pull_with(image, None).await
    }

    /// [`Puller::pull`] with `credentials` instead of the server-wide ones.
    /// Such a pull uses a client of its own: `oci-client` keeps the first
    /// credentials (and the tokens they earned) per registry for the life of
    /// a client, so a shared one would lend a tenant's access to every later
    /// pull from that registry. It only joins a running pull made with the
    /// same credentials.
    pub async fn pull_with(
        &self,
        image: &str,
        credentials: Option<&Credentials>,
    ) -> Result<ImageRecord, PullError> {
        let reference: Reference = image
            .parse()
            .map_err(|_| PullError::Reference(image.to_owned()))?;
        let key = match credentials {
            Some(c) => format!("{}\0{}", reference.whole(), c.key()),
            None => reference.whole(),
        };
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| async {
                let started = std::time::Instant::now();
                let result = match credentials {
                    Some(c) => {
                        let auth = RegistryAuth::Basic(c.username.clone(), c.password.clone());
                        let client = new_client(&self.config);
                        self.pull_now(&client, image, &reference, auth).await
                    }
                    None => {
                        let auth = self.auth(&reference);
                        self.pull_now(&self.client, image, &reference, auth).await
                    }
                };
                crate::stats::record_pull(result.is_ok(), started.elapsed());
                result
            })
            .await
            .clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&key);
        }
        result
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        match self.config.credentials.get(reference.resolve_registry()) {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    async fn pull_now(
        &self,
        client: &Client,
        image: &str,
        reference: &Reference,
        auth: RegistryAuth,
    ) -> Result<ImageRecord, PullError> {
        tracing::info!(%image, "pulling image");
        let (manifest, digest, config) = client
            .pull_manifest_and_config(reference, &auth)
            .await
            .map_err(|e| classify(image, e))?;
        // Pinned until the pull ends: garbage collection keeps the image and
        // its layers, whether present already or being fetched.
        let _pins: Vec<_> = std::iter::once(&digest)
            .chain(manifest.layers.iter().map(|l| &l.digest))
            .map(|d| self.store.pin(d))
            .collect();
        if let Some(record) = self
            .store
            .image(&digest)
            .map_err(|e| unpack_err(image, e))?
        {
            if record.layers.iter().all(|l| self.store.has_layer(l)) {
                return Ok(record);
            }
        }
        let config = ImageConfig::parse(&config).map_err(|e| PullError::Registry {
            image: image.to_owned(),
            message: format!("invalid image config: {e}"),
        })?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            self.fetch_layer(client, image, reference, layer).await?;
            layers.push(layer.digest.clone());
        }
        let record = ImageRecord {
            reference: image.to_owned(),
            digest,
            layers,
            config,
        };
        self.store
            .put_image(&record)
            .map_err(|e| unpack_err(image, e))?;
        tracing::info!(%image, digest = %record.digest, layers = record.layers.len(), "pulled image");
        Ok(record)
    }

    async fn fetch_layer(
        &self,
        client: &Client,
        image: &str,
        reference: &Reference,
        layer: &oci_client::manifest::OciDescriptor,
    ) -> Result<(), PullError> {
        let compression = Compression::from_media_type(&layer.media_type)
            .map_err(|e| unpack_err(image, e.into()))?;
        self.store
            .layer_dir(&layer.digest)
            .map_err(|e| unpack_err(image, e))?;
        let lock = self
            .layer_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(layer.digest.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        if self.store.has_layer(&layer.digest) {
            return Ok(());
        }
        let blob = self.store.temp_path("blob");
        let downloaded = async {
            let file = tokio::fs::File::create(&blob).await?;
            let writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
            client.pull_blob(reference, layer, writer).await
        }
        .await;
        if let Err(err) = downloaded {
            let _ = tokio::fs::remove_file(&blob).await;
            return Err(classify(image, err));
        }
        let store = self.store.clone();
        let digest = layer.digest.clone();
        let blob_path = blob.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            store.unpack_layer(&digest, &blob_path, compression, MAX_LAYER_BYTES)
        })
        .await
        .expect("unpack task panicked");
        let _ = tokio::fs::remove_file(&blob).await;
        if let Some(report) = unpacked.map_err(|e| unpack_err(image, e))? {
            tracing::debug!(%image, layer = %layer.digest, entries = report.entries,
                skipped_devices = report.skipped_devices, "unpacked layer");
        }
        Ok(())
    }
}

fn unpack_err(image: &str, err: StoreError) -> PullError {
    PullError::Unpack {
        image: image.to_owned(),
        message: chain(&err),
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn classify(image: &str, err: OciDistributionError) -> PullError {
    let image = image.to_owned();
    let not_found = [
        OciErrorCode::ManifestUnknown,
        OciErrorCode::NameUnknown,
        OciErrorCode::NotFound,
        OciErrorCode::BlobUnknown,
    ];
    match &err {
        OciDistributionError::ImageManifestNotFoundError(_) => PullError::NotFound(image),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| not_found.contains(&e.code)) =>
        {
            PullError::NotFound(image)
        }
        OciDistributionError::ServerError { code: 404, .. } => PullError::NotFound(image),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => PullError::Unauthorized(image),
        OciDistributionError::DigestError(_) => PullError::Digest {
            image,
            message: chain(&err),
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            PullError::Unreachable {
                image,
                message: chain(&err),
            }
        }
        _ => PullError::Registry {
            image,
            message: chain(&err),
        },
    }
}
