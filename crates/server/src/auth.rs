//! API keys: `X-Api-Key` → the calling tenant.
//!
//! Keys are random 32-byte tokens shown once; the database keeps their
//! SHA-256. Lookups are cached in memory; revocation clears the cache entry
//! (see `Keys::forget`), so it takes effect on the next request.
//!
//! Failed checks are throttled per client address ([`Throttle`]): after
//! [`MAX_FAILURES`] unknown keys within [`FAILURE_WINDOW`], requests from
//! that address get 429 with `Retry-After` until the window ends, before
//! the key is hashed or the database is asked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::connect_info::{ConnectInfo, Connected};
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

/// Unknown keys one client address may present within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 20;
/// The window failed checks are counted in; a throttled address waits for
/// its end.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses the throttle remembers (about 100 bytes each).
const MAX_TRACKED: usize = 16_384;

/// The address of the client a request came from (the TCP peer; Sandpit
/// trusts no forwarding header), as `axum` connect info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, crate::gateway::fastpath::Handoff>> for ClientAddr {
    fn connect_info(
        stream: axum::serve::IncomingStream<'_, crate::gateway::fastpath::Handoff>,
    ) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Failed key checks per client address. IPv6 clients are counted per /64,
/// which one host usually has whole.
pub struct Throttle {
    limit: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(MAX_FAILURES, FAILURE_WINDOW, MAX_TRACKED)
    }
}

impl Throttle {
    pub fn new(limit: u32, window: Duration, capacity: usize) -> Self {
        Self {
            limit,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `addr` has used up its failures for this window.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.lock();
        let Some(entry) = table.get(&bucket(addr)) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(entry.since);
        if entry.count < self.limit || elapsed >= self.window {
            return Ok(());
        }
        Err(self.window - elapsed)
    }

    /// Counts a failed check from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let key = bucket(addr);
        let mut table = self.lock();
        if !table.contains_key(&key) && table.len() >= self.capacity {
            self.make_room(&mut table, now);
        }
        let entry = table.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(entry.since) >= self.window {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// Drops expired entries; if none expired, the oldest one.
    fn make_room(&self, table: &mut HashMap<IpAddr, Failures>, now: Instant) {
        table.retain(|_, f| now.saturating_duration_since(f.since) < self.window);
        if table.len() < self.capacity {
            return;
        }
        if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
            table.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The unit failures are counted in: the IPv4 address, or the IPv6 /64.
fn bucket(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Cached key lookups and the failed-check throttle.
#[derive(Default)]
pub struct Keys {
    cache: Mutex<HashMap<String, CachedKey>>,
    throttle: Throttle,
}

impl Keys {
    /// [`Keys::resolve`] for a request from `client`: refused with 429 while
    /// the client is throttled (without hashing `key`), and an unknown key
    /// counts against it.
    pub async fn authenticate(
        &self,
        store: &Store,
        key: &str,
        tenant_header: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        let Some(addr) = client else {
            return self.resolve(store, key, tenant_header).await;
        };
        if let Err(wait) = self.throttle.check(addr, Instant::now()) {
            return Err(ApiError::RateLimited {
                message: "Too many requests with an invalid API key from this address".into(),
                retry_after: wait.as_secs().max(1),
            });
        }
        let result = self.resolve(store, key, tenant_header).await;
        if let Err(ApiError::Unauthorized(_)) = &result {
            self.throttle.failed(addr, Instant::now());
        }
        result
    }

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
        // A delegated request (access_delegation) was authorised, route and
        // permission included, by `crate::delegation::layer`; one that did
        // not pass through it is refused rather than read as a key request.
        if let Some(crate::delegation::Delegated(caller)) = parts.extensions.get() {
            return Ok(caller.clone());
        }
        if parts.headers.contains_key(crate::delegation::HEADER) {
            return Err(ApiError::Forbidden(
                "Delegated access (access_delegation) cannot call this route".into(),
            ));
        }
        let key = header(parts, API_KEY_HEADER)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Missing API key: set the X-Api-Key header".into())
            })?;
        state
            .keys
            .authenticate(
                &state.store,
                key,
                header(parts, TENANT_HEADER),
                client_ip(parts),
            )
            .await
    }
}

/// The client's address, when the server recorded it (not in unit tests
/// that call the router directly).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|ConnectInfo(ClientAddr(addr))| addr.ip())
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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn throttle_refuses_after_the_limit_until_the_window_ends() {
        let throttle = Throttle::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let client = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(throttle.check(client, t0).is_ok());
            throttle.failed(client, t0);
        }
        let wait = throttle.check(client, t0 + Duration::from_secs(10));
        assert_eq!(wait, Err(Duration::from_secs(50)));
        // Another address is not affected.
        assert!(throttle.check(ip("192.0.2.2"), t0).is_ok());
        // The window ends: the address may try again, and counts afresh.
        let later = t0 + Duration::from_secs(60);
        assert!(throttle.check(client, later).is_ok());
        throttle.failed(client, later);
        assert!(throttle.check(client, later).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let throttle = Throttle::new(2, Duration::from_secs(60), 100);
        let now = Instant::now();
        throttle.failed(ip("2001:db8:1:2::1"), now);
        throttle.failed(ip("2001:db8:1:2::ffff"), now);
        assert!(throttle.check(ip("2001:db8:1:2:aaaa::7"), now).is_err());
        assert!(throttle.check(ip("2001:db8:1:3::1"), now).is_ok());
        throttle.failed(ip("::ffff:198.51.100.7"), now);
        throttle.failed(ip("198.51.100.7"), now);
        assert!(throttle.check(ip("198.51.100.7"), now).is_err());
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let throttle = Throttle::new(1, Duration::from_secs(60), 64);
        let now = Instant::now();
        for n in 0..10_000u32 {
            throttle.failed(IpAddr::V4(n.into()), now + Duration::from_millis(n.into()));
        }
        assert!(throttle.lock().len() <= 64);
        // The newest addresses are the ones kept.
        let last = IpAddr::V4(9_999u32.into());
        assert!(throttle.check(last, now + Duration::from_secs(10)).is_err());
    }
}
