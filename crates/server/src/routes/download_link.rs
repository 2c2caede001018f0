//! Download-link tokens: `base64url(claims).base64url(HMAC-SHA256)` naming
//! one file of one sandbox and the headers it is served with.
//!
//! Why HMAC and not the service tokens' Ed25519 keys: a download link may
//! never expire (the SDK's default), and service keys are retired once their
//! successor has signed for a day, which would break such links. The key is
//! `DATA/download-links.key` (32 random bytes, 0600), made on first use and
//! never rotated; deleting it (and restarting) invalidates every link. A
//! link also dies with its sandbox: the claims name the sandbox id, which is
//! never reused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Key file name in the data dir.
pub const KEY_FILE: &str = "download-links.key";
/// Domain separation: a MAC over another kind of payload never verifies.
const CONTEXT: &[u8] = b"sandpit-download-link.v1.";

/// What a link grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// Sandbox id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// The file, exactly as the creator gave it.
    pub path: String,
    /// `Content-Type` to serve.
    pub ct: String,
    /// `attachment` or `inline`.
    pub cd: String,
    pub iat: i64,
    /// Expiry in seconds since the epoch; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("malformed download token")]
    Malformed,
    #[error("bad download token signature")]
    BadSignature,
    #[error("download link has expired")]
    Expired,
}

/// The HMAC key of one data dir.
pub struct LinkKey {
    key: hmac::Key,
}

pub use crate::key_file::KeyError;

impl LinkKey {
    /// The key of `data_dir`, loaded once per process (made on first use).
    pub fn of(data_dir: &Path) -> Result<Arc<LinkKey>, KeyError> {
        static KEYS: Mutex<Option<HashMap<PathBuf, Arc<LinkKey>>>> = Mutex::new(None);
        let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
        let keys = keys.get_or_insert_with(HashMap::new);
        if let Some(key) = keys.get(data_dir) {
            return Ok(key.clone());
        }
        let key = Arc::new(Self::open(&data_dir.join(KEY_FILE))?);
        keys.insert(data_dir.to_path_buf(), key.clone());
        Ok(key)
    }

    /// Makes the key file of `data_dir` if it is missing, without loading
    /// it for this process (replicas share it before anything reads it).
    pub fn ensure(data_dir: &Path) -> Result<(), KeyError> {
        Self::open(&data_dir.join(KEY_FILE)).map(|_| ())
    }

    fn open(path: &Path) -> Result<Self, KeyError> {
        let bytes = crate::key_file::read_or_create(path)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    fn mac(&self, payload: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(payload.as_bytes());
        ctx.sign()
    }

    pub fn sign(&self, claims: &LinkClaims) -> Result<String, serde_json::Error> {
        let payload = B64.encode(serde_json::to_vec(claims)?);
        let tag = self.mac(&payload);
        Ok(format!("{payload}.{}", B64.encode(tag.as_ref())))
    }

    /// The claims of `token` if this key signed it and it has not expired
    /// at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<LinkClaims, LinkError> {
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| LinkError::Malformed)?;
        let mut ctx_input = CONTEXT.to_vec();
        ctx_input.extend_from_slice(payload.as_bytes());
        hmac::verify(&self.key, &ctx_input, &tag).map_err(|_| LinkError::BadSignature)?;
        let bytes = B64.decode(payload).map_err(|_| LinkError::Malformed)?;
        let claims: LinkClaims =
            serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
        match claims.exp {
            Some(exp) if exp <= now => Err(LinkError::Expired),
            _ => Ok(claims),
        }
    }
}

/// The sandbox id a token names, its signature NOT checked: for routing
/// only (a replica sends the request on to the replica that runs the
/// sandbox, which verifies the token).
pub fn unverified_sandbox(token: &str) -> Option<String> {
    let (payload, _) = token.split_once('.')?;
    let bytes = B64.decode(payload).ok()?;
    serde_json::from_slice::<LinkClaims>(&bytes)
        .ok()
        .map(|claims| claims.sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> LinkClaims {
        LinkClaims {
            sub: "sb".into(),
            tid: "t".into(),
            path: "/tmp/a.txt".into(),
            ct: "text/plain".into(),
            cd: "attachment".into(),
            iat: 0,
            exp,
        }
    }

    fn fresh_key() -> (PathBuf, Arc<LinkKey>) {
        let dir = std::env::temp_dir().join(format!("sandpit-dl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = LinkKey::of(&dir).unwrap();
        (dir, key)
    }

    #[test]
    fn routing_reads_the_sandbox_without_the_key() {
        let (dir, key) = fresh_key();
        let token = key.sign(&claims(None)).unwrap();
        assert_eq!(unverified_sandbox(&token).as_deref(), Some("sb"));
        assert_eq!(unverified_sandbox("garbage"), None);
        assert_eq!(unverified_sandbox("e30.x"), None); // `{}`: no claims
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn round_trip_expiry_and_forgery() {
        let (dir, key) = fresh_key();
        let token = key.sign(&claims(Some(100))).unwrap();
        assert_eq!(key.verify(&token, 99).unwrap(), claims(Some(100)));
        assert_eq!(key.verify(&token, 100), Err(LinkError::Expired));
        let forever = key.sign(&claims(None)).unwrap();
        assert!(key.verify(&forever, i64::MAX).is_ok());
        // Repointing the link at another file breaks the MAC.
        let (_, tag) = token.split_once('.').unwrap();
        let other = LinkClaims {
            path: "/etc/shadow".into(),
            ..claims(Some(100))
        };
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&other).unwrap()));
        assert_eq!(key.verify(&forged, 0), Err(LinkError::BadSignature));
        assert_eq!(key.verify("nodot", 0), Err(LinkError::Malformed));
        // The key survives a restart (same file), and another dir's does not
        // verify.
        let reopened = LinkKey::open(&dir.join(KEY_FILE)).unwrap();
        assert!(reopened.verify(&token, 0).is_ok());
        let (other_dir, other_key) = fresh_key();
        assert_eq!(other_key.verify(&token, 0), Err(LinkError::BadSignature));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other_dir).unwrap();
    }
}
