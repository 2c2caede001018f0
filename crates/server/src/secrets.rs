//! Workspace secrets: set, listed (names only) and deleted per tenant
//! through `/api/v1/workspaces/current/secrets`, read by the egress proxy
//! when a request needs one.
//!
//! Values are sealed with ChaCha20-Poly1305 (ring) under a 256-bit key in
//! `DATA/secrets.key` (0600), never in the database; the associated data is
//! `tenant_id/name`, so a sealed row moved to another tenant or name does
//! not open. **Invariant:** no value is ever returned by the API or logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::ApiError;
use crate::store::Store;

/// The most bytes a secret value may hold.
pub const MAX_VALUE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot read or write the secrets key {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key file {0} is not 32 bytes")]
    BadKey(String),
}

/// Seals and opens secret values.
pub struct Vault {
    key: LessSafeKey,
    rng: SystemRandom,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Vault {
    /// Load the key at `path`, generating it (0600) the first time.
    pub fn open(path: &Path) -> Result<Self, VaultError> {
        let rng = SystemRandom::new();
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes)
                .map_err(|_| io(path)(std::io::Error::other("no randomness")))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io(path))?;
            file.write_all(&bytes).map_err(io(path))?;
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| VaultError::BadKey(path.display().to_string()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng,
        })
    }

    fn aad(tenant: &str, name: &str) -> Vec<u8> {
        format!("{tenant}/{name}").into_bytes()
    }

    pub fn seal(&self, tenant: &str, name: &str, value: &str) -> Result<String, ApiError> {
        let mut nonce = [0u8; NONCE_LEN];
        let failed = || ApiError::Internal(anyhow::anyhow!("sealing a secret failed"));
        self.rng.fill(&mut nonce).map_err(|_| failed())?;
        let mut data = value.as_bytes().to_vec();
        let aad = Self::aad(tenant, name);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut data,
            )
            .map_err(|_| failed())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The value, or `None` if the row does not open under this key.
    pub fn unseal(&self, tenant: &str, name: &str, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let aad = Self::aad(tenant, name);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&aad), &mut data)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// The secrets of every tenant.
pub struct Secrets {
    store: Store,
    vault: Vault,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    sandpit_egress::inject::valid_secret_name(name)
        .map(|_| ())
        .map_err(|e| ApiError::Validation(e.to_string()))
}

/// 1 to [`MAX_VALUE`] bytes of text. Line breaks are allowed (a service
/// account JSON has them); a secret used in a header must not have any,
/// which the proxy reports when it is used.
fn check_value(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(ApiError::Validation(format!(
            "value must be 1 to {MAX_VALUE} bytes"
        )));
    }
    let forbidden = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if value.chars().any(forbidden) {
        return Err(ApiError::Validation(
            "value must not contain control characters other than tabs and line breaks".into(),
        ));
    }
    Ok(())
}

impl Secrets {
    pub fn new(store: Store, vault: Vault) -> Self {
        Self { store, vault }
    }

    /// The key other sealed values (registry passwords) are sealed with.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub async fn set(&self, tenant: &str, name: &str, value: &str) -> Result<(), ApiError> {
        check_name(name)?;
        check_value(value)?;
        let sealed = self.vault.seal(tenant, name, value)?;
        Ok(self.store.put_secret(tenant, name, &sealed).await?)
    }

    pub async fn exists(&self, tenant: &str, name: &str) -> Result<bool, ApiError> {
        Ok(self.store.sealed_secret(tenant, name).await?.is_some())
    }

    pub async fn names(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.store.secret_names(tenant).await?)
    }

    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, ApiError> {
        check_name(name)?;
        Ok(self.store.delete_secret(tenant, name).await?)
    }

    /// The value, for the egress proxy.
    pub async fn value(&self, tenant: &str, name: &str) -> Option<String> {
        let sealed = self.store.sealed_secret(tenant, name).await.ok()??;
        let value = self.vault.unseal(tenant, name, &sealed);
        if value.is_none() {
            tracing::warn!(
                tenant,
                secret = name,
                "a stored secret does not open under the key"
            );
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_text_with_line_breaks_at_most() {
        assert!(check_value("s3cr3t").is_ok());
        assert!(check_value("{\n  \"type\": \"service_account\"\r\n}\t").is_ok());
        assert!(check_value("").is_err());
        assert!(check_value("nul\0").is_err());
        assert!(check_value("esc\u{1b}[0m").is_err());
        assert!(check_value(&"x".repeat(MAX_VALUE + 1)).is_err());
    }

    #[test]
    fn sealed_values_open_only_for_their_tenant_and_name() {
        let path = std::env::temp_dir().join(format!("sandpit-vault-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let vault = Vault::open(&path).unwrap();
        let sealed = vault.seal("t1", "KEY", "s3cr3t").unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(
            vault.unseal("t1", "KEY", &sealed).as_deref(),
            Some("s3cr3t")
        );
        assert_eq!(vault.unseal("t2", "KEY", &sealed), None);
        assert_eq!(vault.unseal("t1", "OTHER", &sealed), None);
        let again = Vault::open(&path).unwrap();
        assert_eq!(
            again.unseal("t1", "KEY", &sealed).as_deref(),
            Some("s3cr3t")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_file(&path);
    }
}
