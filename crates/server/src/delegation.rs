//! `access_delegation`: code in a sandbox calls the API as its creator,
//! with no API key inside the sandbox, capped to the permissions granted.
//!
//! - The grant (`{"mode": "EXPLICIT", "permissions": [...]}`, [`Grant`]) is
//!   checked when the sandbox is created and stored with the creating key's
//!   id (`sandbox_delegations`, [`record`]).
//! - The sandbox's environment points `LANGSMITH_ENDPOINT` at
//!   `http://sandpit.internal` ([`sandpit_egress::delegate::HOST`]). The
//!   egress proxy answers that name only for a sandbox with a grant: it drops
//!   whatever credentials the sandbox sent, sets [`HEADER`] to a short-lived
//!   token ([`Minter`], HMAC over tenant, sandbox and expiry with
//!   `DATA/access-delegation.key`) and forwards the request to this server.
//! - [`layer`] (one middleware, in front of every route) turns a request
//!   with [`HEADER`] into a delegated [`Caller`]: the token must verify, the
//!   sandbox must still exist with its grant, the creating key must still be
//!   live (checked on every request, so revoking it ends the delegation), and
//!   the route must map to a granted permission ([`required`]); anything
//!   else is refused before a handler runs. Delegated callers are never
//!   admins, and admin, secrets and registry routes map to no permission.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, API_KEY_HEADER, TENANT_HEADER};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;

pub use sandpit_egress::delegate::{HEADER, HOST};

/// The only mode: the listed permissions, each a ceiling.
pub const MODE: &str = "EXPLICIT";
/// Key file name in the data dir.
pub const KEY_FILE: &str = "access-delegation.key";
/// Domain separation from other HMACs.
const CONTEXT: &[u8] = b"sandpit-access-delegation.v1.";
/// How long a token the egress proxy sets is valid.
pub const TOKEN_TTL_SECONDS: i64 = 300;
/// The field under which the grant is stored in a sandbox's `extra` (and
/// returned).
pub const FIELD: &str = "access_delegation";

/// What a delegated caller may do. Names follow `resource:action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    SandboxesRead,
    SandboxesCreate,
    SandboxesUpdate,
    SandboxesDelete,
    SandboxesExec,
    SnapshotsRead,
    SnapshotsCreate,
    SnapshotsDelete,
    TemplatesRead,
    TemplatesWrite,
    VolumesRead,
    VolumesWrite,
    PoolsRead,
    PoolsWrite,
}

impl Permission {
    pub const ALL: [Permission; 14] = [
        Permission::SandboxesRead,
        Permission::SandboxesCreate,
        Permission::SandboxesUpdate,
        Permission::SandboxesDelete,
        Permission::SandboxesExec,
        Permission::SnapshotsRead,
        Permission::SnapshotsCreate,
        Permission::SnapshotsDelete,
        Permission::TemplatesRead,
        Permission::TemplatesWrite,
        Permission::VolumesRead,
        Permission::VolumesWrite,
        Permission::PoolsRead,
        Permission::PoolsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SandboxesRead => "sandboxes:read",
            Permission::SandboxesCreate => "sandboxes:create",
            Permission::SandboxesUpdate => "sandboxes:update",
            Permission::SandboxesDelete => "sandboxes:delete",
            Permission::SandboxesExec => "sandboxes:exec",
            Permission::SnapshotsRead => "snapshots:read",
            Permission::SnapshotsCreate => "snapshots:create",
            Permission::SnapshotsDelete => "snapshots:delete",
            Permission::TemplatesRead => "templates:read",
            Permission::TemplatesWrite => "templates:write",
            Permission::VolumesRead => "volumes:read",
            Permission::VolumesWrite => "volumes:write",
            Permission::PoolsRead => "pools:read",
            Permission::PoolsWrite => "pools:write",
        }
    }

    pub fn parse(name: &str) -> Option<Permission> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A validated grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permissions: BTreeSet<Permission>,
}

/// Most permissions one grant may list (duplicates included).
const MAX_LISTED: usize = 64;

impl Grant {
    /// The grant of a create request's `access_delegation`, or a 422 naming
    /// what is wrong.
    pub fn parse(value: &Value) -> Result<Grant, ApiError> {
        let invalid = |m: String| ApiError::Validation(format!("access_delegation: {m}"));
        let Value::Object(map) = value else {
            return Err(invalid(
                "must be an object {\"mode\", \"permissions\"}".into(),
            ));
        };
        if let Some(field) = map.keys().find(|k| *k != "mode" && *k != "permissions") {
            return Err(invalid(format!("unknown field '{field}'")));
        }
        match map.get("mode") {
            Some(Value::String(m)) if m == MODE => {}
            Some(Value::String(m)) => {
                return Err(invalid(format!(
                    "mode '{m}' is not supported; only \"{MODE}\" (with a list of permissions)"
                )))
            }
            _ => return Err(invalid(format!("mode is required and must be \"{MODE}\""))),
        }
        let Some(Value::Array(items)) = map.get("permissions") else {
            return Err(invalid(
                "permissions must be a list of permission names".into(),
            ));
        };
        if items.is_empty() {
            return Err(invalid(
                "permissions must name at least one permission".into(),
            ));
        }
        if items.len() > MAX_LISTED {
            return Err(invalid(format!("at most {MAX_LISTED} permissions")));
        }
        let mut permissions = BTreeSet::new();
        for item in items {
            let Value::String(name) = item else {
                return Err(invalid("permissions must be strings".into()));
            };
            let permission = Permission::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                invalid(format!(
                    "unknown permission '{name}' (known: {})",
                    known.join(", ")
                ))
            })?;
            permissions.insert(permission);
        }
        Ok(Grant { permissions })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.permissions.iter().map(|p| p.as_str()).collect()
    }

    /// `{"mode": "EXPLICIT", "permissions": [...]}` as stored and returned.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"mode": MODE, "permissions": self.names()})
    }

    /// The grant stored in a sandbox's `extra` (JSON text), if any.
    pub fn of_extra(extra: &str) -> Option<Grant> {
        let extra: Value = serde_json::from_str(extra).ok()?;
        Grant::parse(extra.get(FIELD)?).ok()
    }
}

/// The permission a delegated request needs, or `None`: not delegable.
/// `path` is the request path (any query string excluded).
pub fn required(method: &Method, path: &str) -> Option<Permission> {
    use Permission::*;
    if let Some(rest) = path.strip_prefix("/dataplane/") {
        // Commands, files and the tunnel of one sandbox (the handler checks
        // it is the caller's tenant's).
        return (!rest.is_empty()).then_some(SandboxesExec);
    }
    let rest = path
        .strip_prefix("/api/v2/sandboxes/")
        .or_else(|| path.strip_prefix("/v2/sandboxes/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let read = method == Method::GET || method == Method::HEAD;
    match (segments.as_slice(), method.as_str()) {
        (["boxes"], _) if read => Some(SandboxesRead),
        (["boxes"], "POST") => Some(SandboxesCreate),
        (["boxes", _], _) if read => Some(SandboxesRead),
        (["boxes", _], "PATCH") => Some(SandboxesUpdate),
        (["boxes", _], "DELETE") => Some(SandboxesDelete),
        (["boxes", _, "status" | "usage"], _) if read => Some(SandboxesRead),
        (["boxes", _, "stop" | "start"], "POST") => Some(SandboxesUpdate),
        (["boxes", _, "snapshot"], "POST") => Some(SnapshotsCreate),
        // They give access to what runs in the sandbox, like exec.
        (["boxes", _, "service-url" | "download-url"], "POST") => Some(SandboxesExec),
        (["boxes", _, "service-url", "revoke"], "POST") => Some(SandboxesExec),
        (["snapshots"] | ["snapshots", _] | ["snapshots-by-name", _], _) if read => {
            Some(SnapshotsRead)
        }
        (["snapshots"], "POST") => Some(SnapshotsCreate),
        (["snapshots", _], "DELETE") => Some(SnapshotsDelete),
        (["templates"] | ["templates", _], _) if read => Some(TemplatesRead),
        (["templates"], "POST") | (["templates", _], "PATCH" | "DELETE") => Some(TemplatesWrite),
        (["volumes"] | ["volumes", _], _) if read => Some(VolumesRead),
        (["volumes"], "POST") | (["volumes", _], "PATCH" | "DELETE") => Some(VolumesWrite),
        (["pools"] | ["pools", _], _) if read => Some(PoolsRead),
        (["pools"], "POST") | (["pools", _], "PATCH" | "DELETE") => Some(PoolsWrite),
        // Registries hold credentials; admin and secrets routes are outside
        // this prefix: none is delegable.
        _ => None,
    }
}

/// What a token says (checked against the database on every request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Sandbox id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed delegated credential")]
    Malformed,
    #[error("bad delegated credential signature")]
    BadSignature,
    #[error("delegated credential has expired")]
    Expired,
}

pub use crate::key_file::KeyError;

/// The HMAC key of one data dir (`DATA/access-delegation.key`, 32 random
/// bytes, 0600, made on first use).
pub struct TokenKey {
    key: hmac::Key,
}

impl TokenKey {
    /// The key of `data_dir`, loaded once per process.
    pub fn of(data_dir: &Path) -> Result<Arc<TokenKey>, KeyError> {
        static KEYS: Mutex<Option<HashMap<PathBuf, Arc<TokenKey>>>> = Mutex::new(None);
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
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    fn input(payload: &str) -> Vec<u8> {
        let mut input = CONTEXT.to_vec();
        input.extend_from_slice(payload.as_bytes());
        input
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let payload = B64.encode(serde_json::to_vec(claims)?);
        let tag = hmac::sign(&self.key, &Self::input(&payload));
        Ok(format!("{payload}.{}", B64.encode(tag.as_ref())))
    }

    /// The claims of `token` if this key signed it and it has not expired
    /// at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, &Self::input(payload), &tag)
            .map_err(|_| TokenError::BadSignature)?;
        let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        match claims.exp <= now {
            true => Err(TokenError::Expired),
            false => Ok(claims),
        }
    }
}

/// The egress proxy's side: a fresh token for a sandbox that has a grant,
/// and where to send its requests.
pub struct Minter {
    store: Store,
    data_dir: PathBuf,
    /// This server's API address (plain HTTP).
    api: Option<SocketAddr>,
}

impl Minter {
    /// `listen`: the address the API is bound to (an unspecified address is
    /// reached on loopback); `tls`: whether the API serves TLS, which the
    /// proxy does not speak to it (delegation is then off, and says so).
    pub fn new(store: Store, data_dir: PathBuf, listen: SocketAddr, tls: bool) -> Self {
        let mut api = listen;
        if api.ip().is_unspecified() {
            api.set_ip(match api {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if tls {
            tracing::warn!(
                "the API serves TLS: access_delegation requests are refused by the egress proxy"
            );
        }
        Self {
            store,
            data_dir,
            api: (!tls).then_some(api),
        }
    }

    /// A token for `sandbox` of `tenant` if it has a grant.
    pub async fn grant(
        &self,
        tenant: &str,
        sandbox: &str,
    ) -> Option<sandpit_egress::delegate::Grant> {
        let api = self.api?;
        let row = self.store.delegation(sandbox).await.ok()??;
        if row.tenant_id != tenant {
            return None;
        }
        let claims = Claims {
            sub: sandbox.to_owned(),
            tid: tenant.to_owned(),
            exp: chrono::Utc::now().timestamp() + TOKEN_TTL_SECONDS,
        };
        let key = TokenKey::of(&self.data_dir)
            .map_err(|err| tracing::warn!(error = %err, "no access-delegation key"))
            .ok()?;
        let token = key.sign(&claims).ok()?;
        Some(sandpit_egress::delegate::Grant {
            token,
            upstream: api,
        })
    }
}

/// A request's delegated caller, put there by [`layer`] and read by the
/// [`Caller`] extractor.
#[derive(Debug, Clone)]
pub struct Delegated(pub Caller);

/// Middleware in front of every route: requests with [`HEADER`] are
/// authorised here (or refused) and carry a [`Delegated`] caller; their
/// API-key headers are dropped so no other credential mixes in.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let token = token.to_str().unwrap_or_default().to_owned();
    // Owned: the request body is not `Sync`, so no borrow of it may be
    // held across the checks.
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match authorize(&state, &method, &path, &token).await {
        Ok(caller) => {
            let headers = req.headers_mut();
            headers.remove(API_KEY_HEADER);
            headers.remove(TENANT_HEADER);
            headers.remove(axum::http::header::AUTHORIZATION);
            headers.remove(axum::http::header::COOKIE);
            req.extensions_mut().insert(Delegated(caller));
            next.run(req).await
        }
        Err(err) => err.into_response(),
    }
}

/// The caller a delegated request acts as, re-checked against the
/// database: sandbox and grant still there, creating key still live, and
/// the route within the grant.
pub async fn authorize(
    state: &AppState,
    method: &Method,
    path: &str,
    token: &str,
) -> Result<Caller, ApiError> {
    let key = TokenKey::of(&state.config.data_dir).map_err(|e| ApiError::Internal(e.into()))?;
    let claims = key
        .verify(token, chrono::Utc::now().timestamp())
        .map_err(|e| ApiError::Unauthorized(format!("{e}")))?;
    let Some(needed) = required(method, path) else {
        return Err(ApiError::Forbidden(format!(
            "Delegated access (access_delegation) cannot call {method} {path}"
        )));
    };
    let gone = || {
        ApiError::Unauthorized(
            "The access_delegation grant of this sandbox no longer exists".into(),
        )
    };
    let row = state
        .store
        .delegation(&claims.sub)
        .await?
        .ok_or_else(gone)?;
    if row.tenant_id != claims.tid {
        return Err(gone());
    }
    let live = state
        .store
        .key(&row.key_id)
        .await?
        .filter(|k| k.revoked_at.is_none() && k.tenant_id == row.tenant_id);
    if live.is_none() {
        return Err(ApiError::Unauthorized(
            "The API key that created this sandbox was revoked: its access_delegation no longer works"
                .into(),
        ));
    }
    let granted: Vec<String> = serde_json::from_str(&row.permissions).unwrap_or_default();
    if !granted.iter().any(|p| p == needed.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "Missing permission '{}': this sandbox's access_delegation grants {}",
            needed.as_str(),
            granted.join(", ")
        )));
    }
    Ok(Caller {
        tenant_id: row.tenant_id,
        is_admin: false,
        key_id: row.key_id,
    })
}

/// Before a create: a delegated caller may not hand its access on.
pub fn refuse_redelegation(
    headers: &axum::http::HeaderMap,
    access_delegation: Option<&Value>,
) -> Result<(), ApiError> {
    if headers.contains_key(HEADER) && access_delegation.is_some_and(|v| !v.is_null()) {
        return Err(ApiError::Forbidden(
            "A sandbox created with delegated access cannot have access_delegation itself".into(),
        ));
    }
    Ok(())
}

/// After a create: record the grant of `row` (if it has one) with the
/// creating key.
pub async fn record(
    store: &Store,
    caller: &Caller,
    row: &crate::store::SandboxRow,
) -> Result<(), ApiError> {
    let Some(grant) = Grant::of_extra(&row.extra) else {
        return Ok(());
    };
    let permissions =
        serde_json::to_string(&grant.names()).map_err(|e| ApiError::Internal(e.into()))?;
    store
        .insert_delegation(&row.id, &row.tenant_id, &caller.key_id, &permissions)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grants_parse_and_bad_ones_name_the_problem() {
        let grant = Grant::parse(&json!({"mode": "EXPLICIT", "permissions": ["sandboxes:read", "sandboxes:read", "snapshots:read"]})).unwrap();
        assert_eq!(grant.names(), ["sandboxes:read", "snapshots:read"]);
        assert_eq!(
            grant.to_json(),
            json!({"mode": "EXPLICIT", "permissions": ["sandboxes:read", "snapshots:read"]})
        );
        for (bad, says) in [
            (json!({"mode": "INHERIT"}), "mode 'INHERIT'"),
            (
                json!({"permissions": ["sandboxes:read"]}),
                "mode is required",
            ),
            (json!({"mode": "EXPLICIT"}), "permissions must be a list"),
            (
                json!({"mode": "EXPLICIT", "permissions": []}),
                "at least one",
            ),
            (
                json!({"mode": "EXPLICIT", "permissions": ["admin"]}),
                "unknown permission 'admin'",
            ),
            (
                json!({"mode": "EXPLICIT", "permissions": [1]}),
                "must be strings",
            ),
            (
                json!({"mode": "EXPLICIT", "permissions": ["sandboxes:read"], "x": 1}),
                "unknown field 'x'",
            ),
            (json!("EXPLICIT"), "must be an object"),
        ] {
            match Grant::parse(&bad) {
                Err(ApiError::Validation(m)) => assert!(m.contains(says), "{bad}: {m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn routes_map_to_permissions_and_the_rest_is_not_delegable() {
        use Permission::*;
        let get = Method::GET;
        let cases = [
            (Method::GET, "/api/v2/sandboxes/boxes", Some(SandboxesRead)),
            (Method::GET, "/v2/sandboxes/boxes/b1", Some(SandboxesRead)),
            (
                Method::POST,
                "/api/v2/sandboxes/boxes",
                Some(SandboxesCreate),
            ),
            (
                Method::DELETE,
                "/api/v2/sandboxes/boxes/b1",
                Some(SandboxesDelete),
            ),
            (
                Method::PATCH,
                "/api/v2/sandboxes/boxes/b1",
                Some(SandboxesUpdate),
            ),
            (
                Method::POST,
                "/api/v2/sandboxes/boxes/b1/stop",
                Some(SandboxesUpdate),
            ),
            (
                Method::POST,
                "/api/v2/sandboxes/boxes/b1/snapshot",
                Some(SnapshotsCreate),
            ),
            (
                Method::GET,
                "/api/v2/sandboxes/snapshots/s",
                Some(SnapshotsRead),
            ),
            (
                Method::DELETE,
                "/api/v2/sandboxes/snapshots/s",
                Some(SnapshotsDelete),
            ),
            (Method::POST, "/dataplane/abc/execute", Some(SandboxesExec)),
            (
                Method::POST,
                "/api/v2/sandboxes/volumes",
                Some(VolumesWrite),
            ),
            // Never delegable.
            (Method::GET, "/api/v2/sandboxes/registries", None),
            (Method::POST, "/api/v1/admin/keys", None),
            (Method::GET, "/api/v1/admin/tenants", None),
            (Method::PUT, "/api/v1/workspaces/current/secrets/K", None),
            (Method::GET, "/api/v1/workspaces/current/secrets", None),
            (Method::GET, "/metrics", None),
            (Method::GET, "/", None),
            (Method::POST, "/api/v2/sandboxes/boxes/b1", None),
            (Method::GET, "/api/v2/sandboxes/boxes//status", None),
            (
                Method::GET,
                "/api/v2/sandboxes/boxes/b1/../../../v1/admin/keys",
                None,
            ),
            (Method::GET, "/dataplane/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(required(&method, path), want, "{method} {path}");
        }
        assert_eq!(required(&get, "/v2/sandboxes/pools/p"), Some(PoolsRead));
    }

    #[test]
    fn every_permission_name_round_trips() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("sandboxes:admin"), None);
    }

    #[test]
    fn tokens_verify_expire_and_resist_forgery() {
        let key = TokenKey::from_bytes(&[7u8; 32]);
        let claims = Claims {
            sub: "sb".into(),
            tid: "t".into(),
            exp: 100,
        };
        let token = key.sign(&claims).unwrap();
        assert_eq!(key.verify(&token, 99), Ok(claims.clone()));
        assert_eq!(key.verify(&token, 100), Err(TokenError::Expired));
        // Another key's token, changed claims, garbage.
        let other = TokenKey::from_bytes(&[8u8; 32]);
        assert_eq!(other.verify(&token, 0), Err(TokenError::BadSignature));
        let (_, tag) = token.split_once('.').unwrap();
        let forged = Claims {
            sub: "other".into(),
            ..claims
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            key.verify(&format!("{forged_payload}.{tag}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(key.verify("nodot", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("sandpit-deleg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = TokenKey::open(&dir.join(KEY_FILE)).unwrap();
        let b = TokenKey::open(&dir.join(KEY_FILE)).unwrap();
        let claims = Claims {
            sub: "s".into(),
            tid: "t".into(),
            exp: i64::MAX,
        };
        assert!(b.verify(&a.sign(&claims).unwrap(), 0).is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
