//! Login-gated service URLs (`access="restricted"`/`"workspace"`) and
//! embedding (`embed_origins`).
//!
//! A **login grant** (a row of `service_grants`, one per sandbox and port)
//! says: this port is opened by a browser signed in to the console of the
//! owning tenant, not by a token. The sign-in hop:
//!
//! 1. a browser with no session asks the service host for a page and is
//!    sent (302) to `{console}/service-sign-in?service={label}&next={path}`;
//! 2. that page, on the console's origin, uses the console's key from its
//!    tab (or asks for one, like the console's own sign-in) to call
//!    `POST /api/v1/console/service-logins`, which checks the caller may
//!    open the service and answers a **ticket** (a JWS, 60 s, single use,
//!    naming the grant) inside a `login_url` on the service host;
//! 3. the service host redeems the ticket at `/_svc/login` (answered by the
//!    gateway, never forwarded), spends it in the database, and sets a
//!    **session** (a JWS naming the grant, 12 h) as the same HttpOnly,
//!    host-only cookie token mode uses, which the relay strips before the
//!    app sees a request.
//!
//! A session is valid while its grant is in place: revoking
//! (`POST .../service-url/revoke`, which also bumps the token epoch) or
//! deleting the sandbox ends it. This process keeps the set of granted
//! ports in memory (loaded at the first service request, re-read every
//! 2 s while requests come), so the fast path can tell that a port has no
//! grant without a database read; grants themselves are cached 2 s.
//! Replicas see another replica's new or removed grant within that time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::store::{ServiceGrantRow, Store, StoreResult};

/// At most this many `embed_origins`.
pub const MAX_EMBED_ORIGINS: usize = 5;
/// Lifetime of a sign-in ticket.
pub const TICKET_TTL: i64 = 60;
/// Lifetime of a login session on a service host.
pub const SESSION_TTL: i64 = 12 * 3600;
/// Console page that runs the sign-in hop.
pub const SIGN_IN_PATH: &str = "/service-sign-in";
/// Its script (the page's CSP allows same-origin scripts only).
pub const SIGN_IN_SCRIPT_PATH: &str = "/service-sign-in.js";
/// API the sign-in page calls with the console's key.
pub const SERVICE_LOGINS_PATH: &str = "/api/v1/console/service-logins";

/// How long a grant (or its absence) is trusted without a database read.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// Entries kept before the cache is cleared.
const CACHE_MAX: usize = 10_000;

/// Why a login grant's `access` or `embed_origins` is refused (a 422
/// naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("access must be \"restricted\" or \"workspace\", got {0:?}")]
    Access(String),
    #[error("embed_origins takes at most {MAX_EMBED_ORIGINS} origins, got {0}")]
    TooManyOrigins(usize),
    #[error("embed_origins: {origin:?} is not a valid origin: {why}")]
    Origin { origin: String, why: &'static str },
}

/// Who a login grant admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Sessions that can read the sandbox.
    Restricted,
    /// Any session of the owning tenant.
    Workspace,
}

impl Access {
    /// Parse the request's `access`, or a 422 message naming the field.
    pub fn parse(value: &str) -> Result<Self, GrantError> {
        match value {
            "restricted" => Ok(Access::Restricted),
            "workspace" => Ok(Access::Workspace),
            other => Err(GrantError::Access(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Restricted => "restricted",
            Access::Workspace => "workspace",
        }
    }
}

type CacheEntry = (Instant, Option<ServiceGrantRow>);

/// Grants by (sandbox id, port), with when they were read. Process-wide:
/// keys are sandbox ids (UUIDs), unique across servers.
static CACHE: LazyLock<Mutex<HashMap<(String, u16), CacheEntry>>> = LazyLock::new(Mutex::default);

fn cache() -> std::sync::MutexGuard<'static, HashMap<(String, u16), CacheEntry>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every granted (sandbox id, port), and when it was read.
#[derive(Default)]
struct Granted {
    loaded_at: Option<Instant>,
    ports: HashSet<(String, u16)>,
}

static GRANTED: LazyLock<RwLock<Granted>> = LazyLock::new(RwLock::default);
/// The store the set is re-read from (set at the first load).
static STORE: OnceLock<Store> = OnceLock::new();
static REFRESHING: AtomicBool = AtomicBool::new(false);

fn granted() -> std::sync::RwLockReadGuard<'static, Granted> {
    GRANTED.read().unwrap_or_else(|e| e.into_inner())
}

fn granted_mut() -> std::sync::RwLockWriteGuard<'static, Granted> {
    GRANTED.write().unwrap_or_else(|e| e.into_inner())
}

/// Whether port `port` of sandbox `id` is known to have no login grant.
/// The fast path relays only then. A set older than 2 s still answers
/// while a re-read runs in the background.
pub fn known_absent(id: &str, port: u16) -> bool {
    let set = granted();
    let Some(at) = set.loaded_at else {
        return false;
    };
    let absent = !set.ports.contains(&(id.to_owned(), port));
    drop(set);
    if at.elapsed() >= CACHE_TTL {
        refresh_in_background();
    }
    absent
}

fn refresh_in_background() {
    let (Some(store), Ok(runtime)) = (STORE.get(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    if REFRESHING.swap(true, Ordering::AcqRel) {
        return;
    }
    let store = store.clone();
    runtime.spawn(async move {
        if let Err(err) = load(&store).await {
            tracing::warn!(error = %err, "re-reading service grants failed");
        }
        REFRESHING.store(false, Ordering::Release);
    });
}

/// Read the set of granted ports.
async fn load(store: &Store) -> StoreResult<()> {
    let ports = store.granted_service_ports().await?;
    let ports = ports
        .into_iter()
        .filter_map(|(id, port)| Some((id, u16::try_from(port).ok()?)))
        .collect();
    *granted_mut() = Granted {
        loaded_at: Some(Instant::now()),
        ports,
    };
    Ok(())
}

/// Load the set of granted ports before the first connection: until it is
/// loaded the fast path takes nothing, and a connection it hands to hyper
/// stays there (a benchmark's 32 connections opened at once all did).
pub async fn preload(store: &Store) {
    if let Err(err) = ensure_loaded(store).await {
        tracing::warn!(error = %err, "reading service grants failed; the fast path waits for them");
    }
}

/// Load the set of granted ports if this process never has.
async fn ensure_loaded(store: &Store) -> StoreResult<()> {
    let _ = STORE.set(store.clone());
    if granted().loaded_at.is_none() {
        load(store).await?;
    }
    Ok(())
}

/// The grant on `port` of sandbox `id` (cached up to 2 s).
pub async fn lookup(store: &Store, id: &str, port: u16) -> StoreResult<Option<ServiceGrantRow>> {
    ensure_loaded(store).await?;
    if let Some(grant) = cached(id, port) {
        return Ok(grant);
    }
    lookup_fresh(store, id, port).await
}

/// The cached grant (or its absence) if read in the last 2 s.
fn cached(id: &str, port: u16) -> Option<Option<ServiceGrantRow>> {
    let cache = cache();
    let (at, grant) = cache.get(&(id.to_owned(), port))?;
    (at.elapsed() < CACHE_TTL).then(|| grant.clone())
}

/// The grant on `port` of sandbox `id`, read from the database.
pub async fn lookup_fresh(
    store: &Store,
    id: &str,
    port: u16,
) -> StoreResult<Option<ServiceGrantRow>> {
    let grant = store.service_grant(id, i64::from(port)).await?;
    remember(id, port, grant.clone());
    Ok(grant)
}

/// Note what the database says of `port` of sandbox `id` (after a read, or
/// after this process created the grant).
pub fn remember(id: &str, port: u16, grant: Option<ServiceGrantRow>) {
    {
        let mut set = granted_mut();
        let key = (id.to_owned(), port);
        if grant.is_some() {
            set.ports.insert(key);
        } else {
            set.ports.remove(&key);
        }
    }
    let mut cache = cache();
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert((id.to_owned(), port), (Instant::now(), grant));
}

/// Sandbox `id`'s grants are gone (revoked): forget them.
pub fn forget(id: &str) {
    granted_mut().ports.retain(|(sandbox, _)| sandbox != id);
    cache().retain(|(sandbox, _), _| sandbox != id);
}

/// Validate and normalize `embed_origins`: at most 5, each
/// `https://host[:port]` (`http` only for localhost, `*.localhost` and
/// loopback addresses), lower-cased, default port dropped, duplicates
/// removed. The error names the field.
pub fn normalize_origins(origins: &[String]) -> Result<Vec<String>, GrantError> {
    if origins.len() > MAX_EMBED_ORIGINS {
        return Err(GrantError::TooManyOrigins(origins.len()));
    }
    let mut out: Vec<String> = Vec::new();
    for origin in origins {
        let normal = normalize_origin(origin).map_err(|why| GrantError::Origin {
            origin: origin.clone(),
            why,
        })?;
        if !out.contains(&normal) {
            out.push(normal);
        }
    }
    Ok(out)
}

fn normalize_origin(origin: &str) -> Result<String, &'static str> {
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or("expected https://host[:port]")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', '\\', '*']) {
        return Err("expected https://host[:port], with no path, query, user or wildcard");
    }
    let (host, port) = split_port(authority)?;
    let host = host.to_ascii_lowercase();
    if !valid_host(&host) {
        return Err("the host is not a DNS name or an IP address");
    }
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" if is_local(&host) => 80,
        "http" => return Err("http is allowed only for localhost; use https"),
        _ => return Err("the scheme must be https (or http on localhost)"),
    };
    Ok(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// `host[:port]` (IPv6 in brackets) → (host, port).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("unclosed IPv6 bracket")?;
        let rest = &authority[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err("junk after the IPv6 address"),
        };
        (&authority[..=end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && !p.to_string().is_empty())
                .ok_or("the port must be 1-65535")
        })
        .transpose()?;
    Ok((host, port))
}

fn valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_local(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The `Content-Security-Policy` that lets exactly `origins` frame a page
/// (none at all when empty).
pub fn frame_ancestors(origins: &[String]) -> String {
    if origins.is_empty() {
        "frame-ancestors 'none'".to_owned()
    } else {
        format!("frame-ancestors {}", origins.join(" "))
    }
}

/// `path` if it is a path on the same host (`/...`, not `//host` or
/// `/\host`, no control characters), else `/`: the redirect after sign-in
/// never leaves the service host.
pub fn same_host_path(path: &str) -> String {
    let safe = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 2048
        && !path.chars().any(|c| c.is_control() || c == ' ');
    if safe {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

/// Percent-encode `value` for a query string.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The sign-in page (console origin). Plain HTML; its script is
/// [`SIGN_IN_SCRIPT`].
pub const SIGN_IN_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to open a service - Sandpit</title>
<script type="module" src="/service-sign-in.js"></script>
<style>
body { font: 15px system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; }
input { width: 100%; padding: .4rem; box-sizing: border-box; }
button { margin-top: .6rem; padding: .4rem 1rem; }
#error { color: #b00020; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>Sign in to open a service</h1>
<p>This sandbox service is open to signed-in users of its workspace.
Sign in to the Sandpit console with your API key to continue to
<code id="service"></code>.</p>
<form id="sign-in">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="off" required>
<button type="submit">Sign in and continue</button>
</form>
<p id="error" role="alert"></p>
</body>
</html>
"#;

/// The sign-in page's script: the console's key from this tab's
/// `sessionStorage` (the console's own key name), or the one typed, sent
/// only to this origin's API; then on to the service host's `login_url`.
pub const SIGN_IN_SCRIPT: &str = r#"const KEY = 'sandpit.apiKey';
const params = new URLSearchParams(location.search);
const service = params.get('service') || '';
const next = params.get('next') || '/';
document.getElementById('service').textContent = service;
const error = document.getElementById('error');

async function go(key) {
  error.textContent = '';
  const response = await fetch('/api/v1/console/service-logins', {
    method: 'POST',
    headers: { 'X-Api-Key': key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ service, next }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) sessionStorage.removeItem(KEY);
    const detail = body.detail || body;
    error.textContent = `${response.status} error: ${detail.message || response.statusText}`;
    return;
  }
  location.replace(body.login_url);
}

document.getElementById('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = document.getElementById('key').value.trim();
  sessionStorage.setItem(KEY, key);
  go(key);
});

const saved = sessionStorage.getItem(KEY);
if (saved) go(saved);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(list: &[&str]) -> Result<Vec<String>, String> {
        normalize_origins(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            norm(&[
                "HTTPS://App.Example.com:443/",
                "https://app.example.com",
                "http://localhost:3000",
                "http://127.0.0.1",
                "https://[::1]:8443",
                "http://x.localhost:80",
            ])
            .unwrap_err(),
            "embed_origins takes at most 5 origins, got 6"
        );
        assert_eq!(
            norm(&[
                "HTTPS://App.Example.com:443/",
                "https://app.example.com",
                "http://localhost:3000",
                "https://[::1]:8443",
                "http://x.localhost:80",
            ])
            .unwrap(),
            vec![
                "https://app.example.com",
                "http://localhost:3000",
                "https://[::1]:8443",
                "http://x.localhost",
            ]
        );
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "http://app.example.com",
            "app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://user@app.example.com",
            "https://*.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "ftp://app.example.com",
            "https://",
            "https://exa mple.com",
            "https://[::1",
            "javascript://x",
        ] {
            let err = norm(&[bad]).expect_err(bad);
            assert!(err.starts_with("embed_origins"), "{err}");
        }
    }

    #[test]
    fn redirects_stay_on_the_host() {
        assert_eq!(same_host_path("/a/b?c=1"), "/a/b?c=1");
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil",
            "a",
            "/a\nb",
        ] {
            assert_eq!(same_host_path(bad), "/", "{bad:?}");
        }
        assert_eq!(encode_query_value("/a b?c=&"), "/a%20b%3Fc%3D%26");
    }

    /// The fast path (which cannot read the database) relays a port only
    /// while this process knows it has no grant.
    #[test]
    fn only_ports_known_without_a_grant_take_the_fast_path() {
        let id = "0b7e4c1a-grants-unit-test";
        let unloaded = granted().loaded_at.is_none();
        if unloaded {
            assert!(
                !known_absent(id, 80),
                "nothing is known before the first load"
            );
            granted_mut().loaded_at = Some(Instant::now());
        }
        assert!(known_absent(id, 80));
        let row = ServiceGrantRow {
            sandbox_id: id.into(),
            port: 80,
            id: "g".into(),
            tenant_id: "t".into(),
            access: "workspace".into(),
            embed_origins: "[]".into(),
            console_url: "http://127.0.0.1:1".into(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        remember(id, 80, Some(row));
        assert!(!known_absent(id, 80));
        assert!(known_absent(id, 81));
        forget(id);
        assert!(known_absent(id, 80));
    }

    #[test]
    fn frame_policy() {
        assert_eq!(frame_ancestors(&[]), "frame-ancestors 'none'");
        assert_eq!(
            frame_ancestors(&["https://a.example".into(), "http://localhost:3000".into()]),
            "frame-ancestors https://a.example http://localhost:3000"
        );
    }
}
