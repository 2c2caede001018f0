//! Service routes: HTTP into a port of a sandbox, authorised by a signed
//! token instead of an API key.
//!
//! Three front doors lead to the same relay:
//!
//! - host `{sandbox-id}--{port}.{service domain}` (and `.localhost`, which
//!   browsers resolve to loopback): the whole host is the service;
//! - path `/svc/{sandbox-id}--{port}/...` on the server's own address (the
//!   zero-config local `service_url`, for code);
//! - path `/sandboxes/{sandbox-id}/port/{port}/...` (OpenSandbox endpoints).
//!
//! The two path forms share the server's origin — the console's — so no
//! browser is ever handed one: they take the token from a header only
//! (`X-Langsmith-Sandbox-Service-Token`, `X-Sandbox-Token`), which a browser
//! cannot send on a navigation, have no `/_svc/auth` login, and their
//! responses carry [`forwarding::PATH_FORM_CSP`] (an opaque origin) in case
//! a page is rendered anyway. Only a service host also takes the cookie
//! `/_svc/auth?token=...` sets. [`urls`] refuses a `browser_url` when it
//! cannot put the service on an origin of its own. What crosses the relay
//! is [`forwarding`]'s decision.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::forwarding::{self, TokenSource};
use super::grants;
use super::relay;
use super::tokens::{Claims, TokenError, AUD_ENDPOINT, AUD_LOGIN, AUD_SERVICE, AUD_SESSION};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ServiceGrantRow;

pub use super::forwarding::{COOKIE, ENDPOINT_TOKEN_HEADER, SERVICE_TOKEN_HEADER};
/// Path prefix of local-mode service URLs.
pub const PATH_PREFIX: &str = "/svc/";
/// Path prefix of OpenSandbox endpoints.
pub const ENDPOINT_PREFIX: &str = "/sandboxes/";
/// Path, inside a service, that exchanges `?token=` for the cookie.
const AUTH_PATH: &str = "/_svc/auth";
/// Path, inside a service host, that redeems a sign-in ticket for a login
/// session (`grants`).
const LOGIN_PATH: &str = "/_svc/login";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Door {
    /// LangSmith service URL: header or cookie.
    Service,
    /// OpenSandbox endpoint: `X-Sandbox-Token`.
    Endpoint,
}

/// Which service a request is for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub door: Door,
    pub id: String,
    pub port: u16,
    /// Path prefix the service is mounted at ("" for a service host).
    pub base: String,
    /// Path inside the service, starting with `/`.
    pub path: String,
}

impl Target {
    /// Served on a path of the server's own origin (not a host of its own).
    pub fn is_path_form(&self) -> bool {
        !self.base.is_empty()
    }

    /// `/_svc/auth` on a service host, which the gateway answers itself.
    pub fn is_token_exchange(&self) -> bool {
        self.door == Door::Service && !self.is_path_form() && self.path == AUTH_PATH
    }

    /// `/_svc/login` on a service host, which the gateway answers itself.
    pub fn is_login(&self) -> bool {
        self.door == Door::Service && !self.is_path_form() && self.path == LOGIN_PATH
    }

    /// Where this door takes its token from.
    pub fn token_source(&self) -> TokenSource {
        match (self.door, self.is_path_form()) {
            (Door::Endpoint, _) => TokenSource::EndpointHeader,
            (Door::Service, true) => TokenSource::ServiceHeader,
            (Door::Service, false) => TokenSource::ServiceHeaderOrCookie,
        }
    }
}

/// `{id}--{port}` → (id, port).
pub(crate) fn parse_label(label: &str) -> Option<(String, u16)> {
    let (id, port) = label.rsplit_once("--")?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| (id.to_ascii_lowercase(), port))
}

/// The service label of `host` if it is `{label}.{domain}` or
/// `{label}.localhost` (with any port).
fn host_label<'a>(host: &'a str, domain: Option<&str>) -> Option<&'a str> {
    let (label, rest) = host.split_once('.')?;
    let bare = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let matches = |d: &str| rest.eq_ignore_ascii_case(d) || bare.eq_ignore_ascii_case(d);
    (domain.is_some_and(matches) || matches("localhost")).then_some(label)
}

fn request_host(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The sandbox a service-URL request is for (`cluster::forward`).
pub(crate) fn sandbox_of(config: &ServerConfig, req: &Request) -> Option<String> {
    target(config, req).map(|t| t.id)
}

fn target(config: &ServerConfig, req: &Request) -> Option<Target> {
    target_for(config, request_host(req), req.uri().path())
}

/// Whether a request for `host` and `path` is for a sandbox's service (the
/// metrics count it as one).
pub(crate) fn is_service(config: &ServerConfig, host: Option<&str>, path: &str) -> bool {
    target_for(config, host, path).is_some()
}

/// The service a request for `host` and `path` (without the query) is for.
pub(super) fn target_for(config: &ServerConfig, host: Option<&str>, path: &str) -> Option<Target> {
    if let Some(label) = host.and_then(|h| host_label(h, config.service_domain.as_deref())) {
        let (id, port) = parse_label(label)?;
        return Some(Target {
            door: Door::Service,
            id,
            port,
            base: String::new(),
            path: path.to_owned(),
        });
    }
    if let Some(rest) = path.strip_prefix(PATH_PREFIX) {
        let (label, inner) = rest.split_once('/').map_or((rest, ""), |(l, p)| (l, p));
        let (id, port) = parse_label(label)?;
        return Some(Target {
            door: Door::Service,
            id,
            port,
            base: format!("{PATH_PREFIX}{label}"),
            path: format!("/{inner}"),
        });
    }
    let rest = path.strip_prefix(ENDPOINT_PREFIX)?;
    let mut parts = rest.splitn(4, '/');
    let (Some(id), Some("port"), Some(port)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let (id, port) = parse_label(&format!("{id}--{port}"))?;
    Some(Target {
        base: format!("{ENDPOINT_PREFIX}{id}/port/{port}"),
        path: format!("/{}", parts.next().unwrap_or("")),
        door: Door::Endpoint,
        id,
        port,
    })
}

/// Middleware in front of every route: requests for a service go to it,
/// everything else to the API.
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match target(&state.config, &req) {
        Some(target) => serve(state, target, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        None => next.run(req).await,
    }
}

async fn serve(state: AppState, target: Target, req: Request) -> Result<Response, ApiError> {
    if target.is_token_exchange() {
        return exchange_token(&state, &target, req.uri()).await;
    }
    if target.is_login() {
        return redeem_ticket(&state, &target, req.uri()).await;
    }
    let grant = match target.door {
        Door::Service => grants::lookup(&state.store, &target.id, target.port).await?,
        Door::Endpoint => None,
    };
    // Who may come in, and who may frame what they get.
    let (tid, frame_policy) = match &grant {
        Some(grant) => match session(&state, &target, grant, req.headers()) {
            Ok(claims) => (claims.tid, Some(grants::frame_ancestors(&grant.origins()))),
            Err(err) => return sign_in(&target, grant, &req, err),
        },
        None => {
            let claims = authorise(&state, &target, req.headers())?;
            let policy = (!claims.eo.is_empty()).then(|| grants::frame_ancestors(&claims.eo));
            (claims.tid, policy)
        }
    };
    let net = state
        .sandboxes
        .live_net(&tid, &target.id)
        .ok_or_else(unreachable)?;
    let path_form = target.is_path_form();
    let mut path = target.path;
    if let Some(query) = req.uri().query() {
        path.push('?');
        path.push_str(query);
    }
    let connection = state.sandboxes.connection(&target.id);
    let upstream = net.upstream(target.port).ok_or_else(unreachable)?;
    let mut response = relay::forward_holding(req, &upstream, &path, connection)
        .await
        .map_err(|err| {
            tracing::debug!(sandbox = %target.id, port = target.port, error = ?err, "service relay failed");
            unreachable()
        })?;
    if path_form {
        response.headers_mut().append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(forwarding::PATH_FORM_CSP),
        );
    }
    if let Some(policy) = frame_policy {
        // Framing is decided by the URL's embed origins, not by the app.
        let headers = response.headers_mut();
        headers.remove(header::X_FRAME_OPTIONS);
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.append(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    Ok(response)
}

fn unreachable() -> ApiError {
    ApiError::Upstream("Service is not reachable".into())
}

/// Check the token for `target`: signed by us, unexpired, for this sandbox
/// and port.
fn authorise(state: &AppState, target: &Target, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = forwarding::presented_in(target.token_source(), headers)
        .ok_or_else(|| ApiError::Unauthorized("Authentication required".into()))?;
    token_claims(state, target, token)
}

/// The fast path's gate: a token-mode token for `target` whose responses
/// need nothing added, on a port known to have no login grant. Anything
/// else is handed to [`serve`] (the error is not shown to anyone).
pub(super) fn check(state: &AppState, target: &Target, token: &str) -> Result<Claims, ApiError> {
    let claims = token_claims(state, target, token)?;
    let gated = target.door == Door::Service
        && (target.is_login() || !grants::known_absent(&target.id, target.port));
    if gated || !claims.eo.is_empty() {
        return Err(ApiError::Unauthorized("Not for the fast path".into()));
    }
    Ok(claims)
}

/// The claims of a token-mode `token` for `target`: signed by us,
/// unexpired, unrevoked, for this sandbox and port.
fn token_claims(state: &AppState, target: &Target, token: &str) -> Result<Claims, ApiError> {
    let aud = match target.door {
        Door::Service => AUD_SERVICE,
        Door::Endpoint => AUD_ENDPOINT,
    };
    let claims = state
        .service_keys
        .verify(token, aud)
        .map_err(|err| match err {
            TokenError::Expired => ApiError::Unauthorized("Service link has expired".into()),
            TokenError::Revoked => ApiError::Unauthorized("Service link has been revoked".into()),
            _ => ApiError::Unauthorized("Invalid service token".into()),
        })?;
    if claims.sub != target.id || claims.port != target.port {
        return Err(ApiError::Forbidden(
            "This token is not valid for this service".into(),
        ));
    }
    Ok(claims)
}

/// `/_svc/auth?token=...`: check the token, set it as an HttpOnly cookie
/// scoped to this host (and mount path), and redirect to the service root.
/// A URL with embed origins is also opened inside a cross-site frame, where
/// a `SameSite=Lax` cookie is never sent: its cookie is `SameSite=None;
/// Secure` (browsers accept `Secure` on `*.localhost` over http too) and
/// `Partitioned`, so it is kept per embedding site where third-party
/// cookies are blocked.
async fn exchange_token(
    state: &AppState,
    target: &Target,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let token = query_param(uri, "token")
        .ok_or_else(|| ApiError::Unauthorized("Authentication required".into()))?;
    let claims = token_claims(state, target, token)?;
    if let Some(grant) = grants::lookup(&state.store, &target.id, target.port).await? {
        return Err(ApiError::Unauthorized(format!(
            "This service is open to signed-in users only (access={}); open its browser_url",
            grant.access
        )));
    }
    let max_age = (claims.exp - chrono::Utc::now().timestamp()).max(0);
    let root = format!("{}/", target.base);
    let cookie = session_cookie(token, &root, max_age, !claims.eo.is_empty(), true);
    redirect(&root, Some(cookie))
}

/// The value of query parameter `name` (not decoded: tokens and tickets
/// are base64url), if present and not empty.
fn query_param<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
}

/// The `Set-Cookie` value that carries a token or session on a service
/// host: HttpOnly and host-only always; for a framed URL `SameSite=None;
/// Secure` (and `Partitioned` when set inside the frame).
fn session_cookie(
    value: &str,
    path: &str,
    max_age: i64,
    framed: bool,
    partitioned: bool,
) -> String {
    let site = match (framed, partitioned) {
        (false, _) => "SameSite=Lax",
        (true, false) => "SameSite=None; Secure",
        (true, true) => "SameSite=None; Secure; Partitioned",
    };
    format!("{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; {site}")
}

/// A 302 to `location` (a path on this host or a console URL) that
/// caches nothing and sends no `Referer` on.
fn redirect(location: &str, cookie: Option<String>) -> Result<Response, ApiError> {
    let mut builder = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::REFERRER_POLICY, "no-referrer");
    if let Some(cookie) = cookie {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    builder
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.into()))
}

/// The login session a request for a login-gated `target` carries: the
/// service-host cookie, signed by us as a session of this very grant.
fn session(
    state: &AppState,
    target: &Target,
    grant: &ServiceGrantRow,
    headers: &HeaderMap,
) -> Result<Claims, ApiError> {
    if target.is_path_form() {
        return Err(ApiError::Unauthorized(format!(
            "This service is open to signed-in users only (access={}); open its browser_url \
             in a browser",
            grant.access
        )));
    }
    let token = forwarding::presented_in(TokenSource::ServiceHeaderOrCookie, headers)
        .ok_or_else(|| ApiError::Unauthorized("Sign-in required".into()))?;
    let claims = state
        .service_keys
        .verify(token, AUD_SESSION)
        .map_err(|err| match err {
            TokenError::Expired => ApiError::Unauthorized("Session has expired".into()),
            TokenError::Revoked => ApiError::Unauthorized("Session has been revoked".into()),
            _ => ApiError::Unauthorized("Sign-in required".into()),
        })?;
    let ours = claims.sub == target.id
        && claims.port == target.port
        && claims.tid == grant.tenant_id
        && claims.gid.as_deref() == Some(grant.id.as_str());
    if !ours {
        return Err(ApiError::Unauthorized("Sign-in required".into()));
    }
    Ok(claims)
}

/// No session for a login-gated service: a browser's page load goes to
/// the console's sign-in page (which comes back with a ticket); anything
/// else gets the error.
fn sign_in(
    target: &Target,
    grant: &ServiceGrantRow,
    req: &Request,
    err: ApiError,
) -> Result<Response, ApiError> {
    let navigation = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    if target.is_path_form() || !navigation {
        return Err(err);
    }
    let next = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!(
        "{}{}?service={}--{}&next={}",
        grant.console_url.trim_end_matches('/'),
        grants::SIGN_IN_PATH,
        target.id,
        target.port,
        grants::encode_query_value(&grants::same_host_path(next)),
    );
    let mut response = redirect(&location, None)?;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    Ok(response)
}

/// `/_svc/login?ticket=...` on a service host: check the sign-in ticket
/// (signed by us, for this service, of the grant in place, unexpired),
/// spend it (single use, in the database), set the session cookie and go
/// on to the page the browser first asked for. The ticket never reaches
/// the app.
async fn redeem_ticket(
    state: &AppState,
    target: &Target,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let ticket = query_param(uri, "ticket")
        .ok_or_else(|| ApiError::Unauthorized("Sign-in ticket required".into()))?;
    let claims = state
        .service_keys
        .verify(ticket, AUD_LOGIN)
        .map_err(|err| match err {
            TokenError::Expired => ApiError::Unauthorized("Sign-in ticket has expired".into()),
            _ => ApiError::Unauthorized("Invalid sign-in ticket".into()),
        })?;
    if claims.sub != target.id || claims.port != target.port {
        return Err(ApiError::Forbidden(
            "This sign-in ticket is not valid for this service".into(),
        ));
    }
    let grant = grants::lookup_fresh(&state.store, &target.id, target.port)
        .await?
        .filter(|g| claims.gid.as_deref() == Some(g.id.as_str()) && g.tenant_id == claims.tid)
        .ok_or_else(|| {
            ApiError::Unauthorized("This service's sign-in grant has been removed".into())
        })?;
    let jti = claims
        .jti
        .as_deref()
        .ok_or_else(|| ApiError::Unauthorized("Invalid sign-in ticket".into()))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
    let fresh = state
        .store
        .spend_login_ticket(jti, &crate::store::format_time(expires))
        .await?;
    if !fresh {
        return Err(ApiError::Unauthorized(
            "This sign-in ticket has already been used".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let session = Claims {
        sub: claims.sub.clone(),
        port: claims.port,
        tid: claims.tid.clone(),
        aud: AUD_SESSION.to_owned(),
        iat: now,
        exp: now + grants::SESSION_TTL,
        ep: state.service_keys.epoch(&claims.sub),
        gid: Some(grant.id.clone()),
        ..Claims::default()
    };
    let value = state
        .service_keys
        .sign(&session)
        .map_err(ApiError::Internal)?;
    let framed = !grant.origins().is_empty();
    let cookie = session_cookie(&value, "/", grants::SESSION_TTL, framed, false);
    let next = grants::same_host_path(claims.next.as_deref().unwrap_or("/"));
    redirect(&next, Some(cookie))
}

/// Why no `browser_url` can be given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "this server cannot give a browser a service URL on an origin of its own: it has no \
     --service-domain and was not reached over loopback, and a service page on the console's \
     origin could read the console's API key. Start the server with --service-domain D (and \
     wildcard DNS for *.D), or reach it over loopback (e.g. ssh -L 8080:127.0.0.1:8080 HOST). \
     Code can still reach the service at /svc/{label}/ with the token in the \
     X-Langsmith-Sandbox-Service-Token header."
)]
pub struct NoServiceOrigin {
    label: String,
}

/// The URLs of `port` of sandbox `id` for a server reached at `base_url`.
pub struct ServiceUrls {
    /// Logs a browser in (`/_svc/auth?token=`) on the service's own origin.
    pub browser: Result<String, NoServiceOrigin>,
    /// For code, with the token in a header.
    pub service: String,
}

/// `browser_url` and `service_url` of `port` of sandbox `id`. A browser URL
/// is never on `base_url`'s origin (the console's): a service page there
/// would share the console's storage. With a service domain it is the host
/// `{label}.{domain}`; on a loopback address `{label}.localhost`; otherwise
/// there is none.
pub fn urls(
    config: &ServerConfig,
    base_url: &str,
    id: &str,
    port: u16,
    token: &str,
) -> ServiceUrls {
    let label = format!("{id}--{port}");
    let auth = format!("{AUTH_PATH}?token={token}");
    if config.service_domain.is_some() {
        let root = origin(config, base_url, id, port).unwrap_or_default();
        return ServiceUrls {
            browser: Ok(format!("{root}{auth}")),
            service: format!("{root}/"),
        };
    }
    let service = format!("{base_url}{PATH_PREFIX}{label}/");
    ServiceUrls {
        browser: origin(config, base_url, id, port).map(|root| format!("{root}{auth}")),
        service,
    }
}

/// The origin of its own that `port` of sandbox `id` is served on for a
/// browser (`{label}.{domain}`, or `{label}.localhost` on a loopback
/// server), never `base_url`'s (the console's).
pub fn origin(
    config: &ServerConfig,
    base_url: &str,
    id: &str,
    port: u16,
) -> Result<String, NoServiceOrigin> {
    let label = format!("{id}--{port}");
    let (scheme, authority) = base_url.split_once("://").unwrap_or(("http", base_url));
    let authority = authority.split('/').next().unwrap_or(authority);
    if let Some(domain) = &config.service_domain {
        return Ok(format!("{scheme}://{label}.{domain}"));
    }
    let (host, port_part) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, format!(":{p}")),
        _ => (authority, String::new()),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback());
    if loopback {
        Ok(format!("{scheme}://{label}.localhost{port_part}"))
    } else {
        Err(NoServiceOrigin { label })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b7e4c1a-2f55-4d2e-9d2f-5a3c8e1f0a11";

    fn target_of(config: &ServerConfig, host: &str, uri: &str) -> Option<Target> {
        let req = Request::get(uri)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        target(config, &req)
    }

    #[test]
    fn hosts_and_paths_name_services() {
        let config = ServerConfig {
            service_domain: Some("sandpit.test".into()),
            ..ServerConfig::default()
        };
        let t = target_of(&config, &format!("{ID}--8000.sandpit.test"), "/a?b=1").unwrap();
        assert_eq!((t.id.as_str(), t.port, t.path.as_str()), (ID, 8000, "/a"));
        let t = target_of(&config, &format!("{ID}--3000.localhost:8080"), "/").unwrap();
        assert_eq!((t.port, t.base.as_str()), (3000, ""));
        let t = target_of(&config, "127.0.0.1:8080", &format!("/svc/{ID}--8000/x/y")).unwrap();
        assert_eq!(
            (t.path.as_str(), t.base),
            ("/x/y", format!("/svc/{ID}--8000"))
        );
        let t = target_of(&config, "127.0.0.1:8080", &format!("/svc/{ID}--8000")).unwrap();
        assert_eq!(t.path, "/");
        let t = target_of(&config, "h", &format!("/sandboxes/{ID}/port/80/p")).unwrap();
        assert_eq!(
            (t.door, t.port, t.path.as_str()),
            (Door::Endpoint, 80, "/p")
        );
        assert!(target_of(&config, "127.0.0.1:8080", "/api/v2/sandboxes/boxes").is_none());
        assert!(target_of(&config, "other.example", "/").is_none());
        assert!(target_of(&config, "127.0.0.1", &format!("/svc/{ID}--0/")).is_none());
        assert!(target_of(&config, "127.0.0.1", &format!("/svc/{ID}--70000/")).is_none());
    }

    #[test]
    fn local_and_domain_urls() {
        let mut config = ServerConfig::default();
        let urls_of = |config: &ServerConfig, base: &str| urls(config, base, "i", 80, "T");
        let u = urls_of(&config, "http://127.0.0.1:8080");
        assert_eq!(
            u.browser.unwrap(),
            "http://i--80.localhost:8080/_svc/auth?token=T"
        );
        assert_eq!(u.service, "http://127.0.0.1:8080/svc/i--80/");
        let u = urls_of(&config, "http://LocalHost:8080");
        assert_eq!(
            u.browser.unwrap(),
            "http://i--80.localhost:8080/_svc/auth?token=T"
        );
        config.service_domain = Some("svc.example:8443".into());
        let u = urls_of(&config, "https://sandpit.example");
        assert_eq!(
            u.browser.unwrap(),
            "https://i--80.svc.example:8443/_svc/auth?token=T"
        );
        assert_eq!(u.service, "https://i--80.svc.example:8443/");
    }

    /// H1: without a service domain, a server reached by a name or an
    /// address that is not loopback has no origin to give a service but the
    /// console's own, so it gives a browser none (code keeps the path form).
    #[test]
    fn no_browser_url_on_the_console_s_origin() {
        let config = ServerConfig::default();
        for base in [
            "https://sandpit.example",
            "http://sandpit.example:8080",
            "http://10.1.2.3:8080",
            "http://[2001:db8::1]:8080",
            "http://localhost.example.com:8080",
        ] {
            let u = urls(&config, base, "i", 80, "T");
            let err = u.browser.expect_err(base);
            assert!(err.to_string().contains("--service-domain"), "{err}");
            assert_eq!(u.service, format!("{base}/svc/i--80/"));
        }
    }

    /// A framed URL's cookie must be sent in a cross-site frame; others
    /// stay Lax. Always HttpOnly and host-only.
    #[test]
    fn service_cookies() {
        let plain = session_cookie("T", "/", 60, false, true);
        assert_eq!(
            plain,
            "sandpit_svc_token=T; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        let framed = session_cookie("T", "/", 60, true, false);
        assert!(framed.ends_with("HttpOnly; SameSite=None; Secure"));
        let partitioned = session_cookie("T", "/", 60, true, true);
        assert!(partitioned.ends_with("SameSite=None; Secure; Partitioned"));
        assert!(!partitioned.to_ascii_lowercase().contains("domain"));
    }

    #[test]
    fn path_forms_take_header_tokens_only_and_have_no_login() {
        let config = ServerConfig::default();
        let t = target_of(
            &config,
            "sandpit.example",
            &format!("/svc/{ID}--80/_svc/auth"),
        )
        .unwrap();
        assert!(t.is_path_form());
        assert!(!t.is_token_exchange());
        assert_eq!(t.token_source(), TokenSource::ServiceHeader);
        let t = target_of(&config, &format!("{ID}--80.localhost:1"), "/_svc/auth").unwrap();
        assert!(t.is_token_exchange());
        assert_eq!(t.token_source(), TokenSource::ServiceHeaderOrCookie);
        let t = target_of(&config, &format!("{ID}--80.localhost:1"), "/_svc/login").unwrap();
        assert!(t.is_login());
        let t = target_of(&config, "h", &format!("/svc/{ID}--80/_svc/login")).unwrap();
        assert!(!t.is_login());
        let t = target_of(&config, "h", &format!("/sandboxes/{ID}/port/80/")).unwrap();
        assert_eq!(t.token_source(), TokenSource::EndpointHeader);
    }
}
