//! Keys every replica must share, kept in the database sealed under the
//! shared secret (`--shared-secret-file`).
//!
//! Each replica keeps using its key files in the data dir, as a standalone
//! server does; this module makes those files the same everywhere. At
//! start-up ([`share_keys`], before anything opens them) each group of
//! files is taken from the `cluster_keys` table, or — for the first
//! replica — made locally and stored there (the first insert wins; a
//! replica that lost the race takes the winner's). Service-token keys also
//! change while running (rotation): [`sync_service_keys`] merges the key
//! files both ways every heartbeat, and revocation epochs are recorded in
//! `token_epochs` and merged into every replica's [`ServiceKeys`].
//!
//! Sealing: ChaCha20-Poly1305 under SHA-256("sandpit cluster keys v1" ||
//! secret), a random nonce per value, the group's name as associated data.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use super::{Cluster, ClusterError};
use crate::gateway::tokens::{ServiceKeys, MAX_TTL};
use crate::routes::download_link;
use crate::store::Store;

/// The secret every replica reads from its shared secret file, and what
/// is derived from it.
pub struct Secret {
    seal: LessSafeKey,
    rpc: ring::hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Read the secret file (at least 32 bytes; surrounding whitespace is
    /// ignored, so `openssl rand -hex 32 > FILE` works).
    pub fn from_file(path: &Path) -> Result<Self, ClusterError> {
        let bytes = std::fs::read(path).map_err(|source| ClusterError::SecretFile {
            path: path.to_owned(),
            source,
        })?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < 32 {
            return Err(ClusterError::ShortSecret(path.to_owned()));
        }
        Ok(Self::from_bytes(trimmed))
    }

    pub fn from_bytes(secret: &[u8]) -> Self {
        let derive = |purpose: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(purpose);
            h.update(secret);
            h.finalize().into()
        };
        let seal = derive(b"sandpit cluster keys v1");
        let rpc = derive(b"sandpit cluster rpc v1");
        Self {
            seal: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &seal).expect("32-byte key"),
            ),
            rpc: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rpc),
            rng: SystemRandom::new(),
        }
    }

    /// The token peers present on the internal API.
    pub fn rpc_token(&self) -> String {
        hex::encode(ring::hmac::sign(&self.rpc, b"sandpit-internal-api").as_ref())
    }

    /// Whether `token` is [`Secret::rpc_token`] (constant time).
    pub fn check_rpc_token(&self, token: &str) -> bool {
        match hex::decode(token) {
            Ok(tag) => ring::hmac::verify(&self.rpc, b"sandpit-internal-api", &tag).is_ok(),
            Err(_) => false,
        }
    }

    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<String, ClusterError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ClusterError::Corrupt("no randomness".into()))?;
        let mut data = plain.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| ClusterError::Corrupt("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(B64.encode(out))
    }

    pub fn unseal(&self, name: &str, sealed: &str) -> Result<Vec<u8>, ClusterError> {
        let raw = B64.decode(sealed).map_err(|_| ClusterError::Unseal)?;
        if raw.len() < NONCE_LEN {
            return Err(ClusterError::Unseal);
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ClusterError::Unseal)?;
        let mut data = data.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| ClusterError::Unseal)?;
        Ok(plain.to_vec())
    }
}

/// A group of key files stored as one sealed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Admin,
    Secrets,
    EgressCa,
    ServiceKeys,
    DownloadLinks,
    AccessDelegation,
}

const GROUPS: [Group; 6] = [
    Group::Admin,
    Group::Secrets,
    Group::EgressCa,
    Group::ServiceKeys,
    Group::DownloadLinks,
    Group::AccessDelegation,
];

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Admin => "admin-api-key",
            Group::Secrets => "secrets-key",
            Group::EgressCa => "egress-ca",
            Group::ServiceKeys => "service-keys",
            Group::DownloadLinks => "download-links",
            Group::AccessDelegation => "access-delegation",
        }
    }

    /// The group's files now in `root`, relative path → bytes.
    fn read(self, root: &Path) -> std::io::Result<Files> {
        let names: Vec<String> = match self {
            Group::Admin => vec!["admin-api-key".into()],
            Group::Secrets => vec!["secrets.key".into()],
            Group::EgressCa => vec!["egress/ca.key".into(), "egress/ca.crt".into()],
            Group::DownloadLinks => vec![download_link::KEY_FILE.into()],
            Group::AccessDelegation => vec![crate::delegation::KEY_FILE.into()],
            Group::ServiceKeys => {
                let dir = root.join("service-keys");
                let mut names = Vec::new();
                if dir.is_dir() {
                    for entry in std::fs::read_dir(&dir)? {
                        let name = entry?.file_name().to_string_lossy().into_owned();
                        if name.ends_with(".json") && !name.starts_with('.') {
                            names.push(format!("service-keys/{name}"));
                        }
                    }
                }
                names
            }
        };
        let mut files = Files::new();
        for name in names {
            match std::fs::read(root.join(&name)) {
                Ok(bytes) => {
                    files.insert(name, B64.encode(bytes));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }

    /// Make the group's files in `root` the way a standalone server would.
    fn generate(self, root: &Path) -> anyhow::Result<()> {
        match self {
            Group::Admin => {
                let path = root.join("admin-api-key");
                if !path.exists() {
                    write_private(
                        &path,
                        format!("{}\n", crate::auth::generate_key()).as_bytes(),
                    )?;
                }
            }
            Group::Secrets => {
                crate::secrets::Vault::open(&root.join("secrets.key"))?;
            }
            Group::EgressCa => {
                sandpit_egress::Authority::load_or_create(&root.join("egress"))?;
            }
            Group::ServiceKeys => {
                ServiceKeys::open(&root.join("service-keys"))?;
            }
            Group::DownloadLinks => download_link::LinkKey::ensure(root)?,
            Group::AccessDelegation => crate::delegation::TokenKey::ensure(root)?,
        }
        Ok(())
    }
}

/// Relative path → base64 content.
type Files = BTreeMap<String, String>;

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("cluster-tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Write `files` under `root`. Names come from our own sealed values, but
/// are checked anyway: plain relative paths inside the data dir only.
fn write_files(root: &Path, files: &Files) -> Result<(), ClusterError> {
    for (name, content) in files {
        let safe = Path::new(name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(ClusterError::Corrupt(format!("file name {name:?}")));
        }
        let bytes = B64
            .decode(content)
            .map_err(|_| ClusterError::Corrupt(format!("content of {name}")))?;
        let path = root.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            write_private(&path, &bytes)?;
        }
    }
    Ok(())
}

fn seal_files(secret: &Secret, group: Group, files: &Files) -> Result<String, ClusterError> {
    let json = serde_json::to_vec(files).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    secret.seal(group.name(), &json)
}

fn unseal_files(secret: &Secret, group: Group, sealed: &str) -> Result<Files, ClusterError> {
    let json = secret.unseal(group.name(), sealed)?;
    serde_json::from_slice(&json).map_err(|e| ClusterError::Corrupt(e.to_string()))
}

/// Make this replica's key files in `data_dir` the cluster's: taken from
/// the database, or made here and stored there by the first replica.
/// Runs before anything opens the files.
pub async fn share_keys(store: &Store, secret: &Secret, data_dir: &Path) -> anyhow::Result<()> {
    for group in GROUPS {
        let stored = match store.cluster_key(group.name()).await? {
            Some((sealed, _)) => sealed,
            None => {
                let root = data_dir.to_owned();
                tokio::task::spawn_blocking(move || group.generate(&root)).await??;
                let sealed = seal_files(secret, group, &group.read(data_dir)?)?;
                if store.insert_cluster_key(group.name(), &sealed).await? {
                    tracing::info!(
                        keys = group.name(),
                        "stored this replica's keys for the cluster"
                    );
                }
                // Ours, or the replica's that stored first.
                store
                    .cluster_key(group.name())
                    .await?
                    .map(|(sealed, _)| sealed)
                    .ok_or_else(|| ClusterError::Corrupt(group.name().into()))?
            }
        };
        let files = unseal_files(secret, group, &stored)?;
        if group == Group::ServiceKeys {
            // Exactly the cluster's keys: a key made here that lost the race
            // must not sign tokens other replicas cannot verify.
            for name in group.read(data_dir)?.keys() {
                if !files.contains_key(name) {
                    std::fs::remove_file(data_dir.join(name))?;
                }
            }
        }
        write_files(data_dir, &files)?;
    }
    Ok(())
}

/// Merge service-token keys both ways (keys rotated here go to the
/// database, keys rotated elsewhere come here) and take the revocation
/// epochs other replicas recorded. Runs every heartbeat and after a
/// rotation or a revocation here.
pub async fn sync_service_keys(cluster: &Cluster, keys: &ServiceKeys) -> anyhow::Result<()> {
    let group = Group::ServiceKeys;
    let dir: PathBuf = keys.dir().to_owned();
    let root = dir
        .parent()
        .ok_or_else(|| anyhow::anyhow!("service-keys dir has no parent"))?
        .to_owned();
    for _ in 0..5 {
        let local = group.read(&root)?;
        let (stored, version) = match cluster.store.cluster_key(group.name()).await? {
            Some((sealed, version)) => (unseal_files(&cluster.secret, group, &sealed)?, version),
            None => (Files::new(), 0),
        };
        let mut merged = stored.clone();
        merged.extend(local.clone());
        if merged.len() != local.len() {
            write_files(&root, &merged)?;
            let added = keys.reload_keys()?;
            tracing::info!(added, "took service-token keys from other replicas");
        }
        if merged == stored {
            break;
        }
        let sealed = seal_files(&cluster.secret, group, &merged)?;
        let replaced = match version {
            0 => {
                cluster
                    .store
                    .insert_cluster_key(group.name(), &sealed)
                    .await?
            }
            v => {
                cluster
                    .store
                    .replace_cluster_key(group.name(), &sealed, v)
                    .await?
            }
        };
        if replaced {
            break;
        }
    }
    let since = chrono::Utc::now().timestamp() - MAX_TTL - 60;
    let epochs: Vec<(String, u64, i64)> = cluster
        .store
        .token_epochs(since)
        .await?
        .into_iter()
        .map(|(sub, epoch, at)| (sub, u64::try_from(epoch).unwrap_or(0), at))
        .collect();
    keys.merge_epochs(&epochs);
    Ok(())
}

/// Revoke sandbox `sub`'s tokens on every replica: start from the highest
/// epoch any replica recorded, bump it here, record it for the others.
pub async fn revoke(cluster: &Cluster, keys: &ServiceKeys, sub: &str) -> anyhow::Result<u64> {
    sync_service_keys(cluster, keys).await?;
    let epoch = keys.revoke(sub)?;
    cluster
        .store
        .record_token_epoch(sub, i64::try_from(epoch)?, chrono::Utc::now().timestamp())
        .await?;
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_same_secret_and_name() {
        let a = Secret::from_bytes(&[7u8; 32]);
        let b = Secret::from_bytes(&[8u8; 32]);
        let sealed = a.seal("egress-ca", b"key").unwrap();
        assert_eq!(a.unseal("egress-ca", &sealed).unwrap(), b"key");
        assert!(
            a.unseal("admin-api-key", &sealed).is_err(),
            "moved to another name"
        );
        assert!(b.unseal("egress-ca", &sealed).is_err(), "another secret");
    }

    #[test]
    fn the_rpc_token_is_checked_against_the_secret() {
        let a = Secret::from_bytes(&[7u8; 32]);
        let b = Secret::from_bytes(&[8u8; 32]);
        assert!(a.check_rpc_token(&a.rpc_token()));
        assert!(!a.check_rpc_token(&b.rpc_token()));
        assert!(!a.check_rpc_token("not hex"));
    }

    #[test]
    fn key_files_never_escape_the_data_dir() {
        // Refused before anything is written: the root need not exist.
        let root = Path::new("/nonexistent-sandpit-data");
        for name in ["../escape", "/etc/x", "service-keys/../../x"] {
            let mut files = Files::new();
            files.insert(name.into(), B64.encode(b"x"));
            assert!(write_files(root, &files).is_err(), "{name}");
        }
    }
}
