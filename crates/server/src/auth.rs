//! API keys: `X-Api-Key` → the calling tenant.
//!
//! Keys are random 32-byte tokens shown once; the database keeps their
//! SHA-256. Lookups are cached in memory; revocation clears the cache entry
//! (see `Keys::forget`), so it takes effect on the next request.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Store, StoreResult};

/// Header carrying the key, as the LangSmith SDK sends it.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Name of the default tenant that the admin key belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: String,
    pub is_admin: bool,
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `sp_` + 43 base64url characters.
pub fn generate_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "sp_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The first characters of a key, safe to show in listings and logs.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}

/// Cached key lookups.
#[derive(Default)]
pub struct Keys {
    cache: Mutex<HashMap<String, Caller>>,
}

impl Keys {
    pub async fn resolve(&self, store: &Store, key: &str) -> StoreResult<Option<Caller>> {
        let hash = hash_key(key);
        if let Some(caller) = self.lock().get(&hash) {
            return Ok(Some(caller.clone()));
        }
        let Some(row) = store.live_key(&hash).await? else {
            return Ok(None);
        };
        let caller = Caller {
            tenant_id: row.tenant_id,
            is_admin: row.is_admin != 0,
        };
        self.lock().insert(hash, caller.clone());
        Ok(Some(caller))
    }

    /// Drop every cached lookup (after a key is revoked or replaced).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Caller>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Missing API key: set the X-Api-Key header".into())
            })?;
        state
            .keys
            .resolve(&state.store, key)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("Invalid API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_prefixed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("sp_") && a.len() == 46, "{a}");
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }
}
