//! API keys: `X-Api-Key` → the calling tenant.
//!
//! Keys are random 32-byte tokens shown once; the database keeps their
//! SHA-256. Lookups are cached in memory; revocation clears the cache entry
//! (see `Keys::forget`), so it takes effect on the next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The tenant the request acts for.
    pub tenant_id: String,
    pub is_admin: bool,
    /// The key used (for audit and self-revocation checks).
    pub key_id: String,
}

/// Header an admin key may use to act for another tenant (by id or name),
/// as in the seed's `Tenant ID` security scheme. For other keys it must name
/// the key's own tenant.
pub const TENANT_HEADER: &str = "x-tenant-id";

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

/// How long a key lookup is trusted without the database. Revocation through
/// this server clears the cache at once; the bound matters for replicas.
const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct CachedKey {
    key_id: String,
    tenant_id: String,
    tenant_name: String,
    is_admin: bool,
    at: Instant,
}

/// Cached key lookups.
#[derive(Default)]
pub struct Keys {
    cache: Mutex<HashMap<String, CachedKey>>,
}

impl Keys {
    async fn lookup(&self, store: &Store, key: &str) -> StoreResult<Option<CachedKey>> {
        let hash = hash_key(key);
        if let Some(hit) = self
            .lock()
            .get(&hash)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
        {
            return Ok(Some(hit.clone()));
        }
        let Some(row) = store.live_key(&hash).await? else {
            self.lock().remove(&hash);
            return Ok(None);
        };
        let Some(tenant) = store.tenant(&row.tenant_id).await? else {
            return Ok(None);
        };
        let cached = CachedKey {
            key_id: row.id,
            tenant_id: tenant.id,
            tenant_name: tenant.name,
            is_admin: row.is_admin != 0,
            at: Instant::now(),
        };
        self.lock().insert(hash, cached.clone());
        Ok(Some(cached))
    }

    /// The caller for `key`, acting for the tenant `tenant_header` names
    /// (admin keys only may name another tenant).
    pub async fn resolve(
        &self,
        store: &Store,
        key: &str,
        tenant_header: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let found = self
            .lookup(store, key)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("Invalid API key".into()))?;
        let mut caller = Caller {
            tenant_id: found.tenant_id.clone(),
            is_admin: found.is_admin,
            key_id: found.key_id,
        };
        let Some(wanted) = tenant_header.filter(|t| !t.is_empty()) else {
            return Ok(caller);
        };
        if wanted == found.tenant_id || wanted == found.tenant_name {
            return Ok(caller);
        }
        if !found.is_admin {
            return Err(ApiError::Forbidden(
                "This API key does not belong to the tenant named in X-Tenant-Id".into(),
            ));
        }
        let tenant = match store.tenant(wanted).await? {
            Some(t) => t,
            None => store.tenant_by_name(wanted).await?.ok_or_else(|| {
                ApiError::Forbidden(format!("Unknown tenant '{wanted}' in X-Tenant-Id"))
            })?,
        };
        caller.tenant_id = tenant.id;
        Ok(caller)
    }

    /// Drop every cached lookup (after a key is revoked or replaced).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKey>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = header(parts, API_KEY_HEADER)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Missing API key: set the X-Api-Key header".into())
            })?;
        state
            .keys
            .resolve(&state.store, key, header(parts, TENANT_HEADER))
            .await
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
