//! TLS interception for hosts a rule matches: the proxy terminates the
//! sandbox's TLS with a leaf certificate from Sandpit's CA, reads HTTP/1.1
//! requests (keep-alive), sets the headers the rules say (and a `gcp`
//! rule's bearer token, an `aws` rule's signature), and forwards each
//! request over verified TLS to the host it dials itself, keeping that
//! upstream connection open for the next request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::callback;
use crate::gcp::{self, GcpError};
use crate::http::{denied, refuse, request_authority, BadAuthority, Body, GONE};
use crate::inject::{AwsAuth, SecretError};
use crate::limits::{scaled, HANDSHAKE_TIMEOUT, HEADER_TIMEOUT};
use crate::live::LivePolicy;
use crate::sigv4::{sign_request, AwsCredentials};
use crate::tls::StreamError;
use crate::upstream::RequestError;
use crate::{Context, Lookup, Policy};

/// Headers to set on a request for `host` and `path`, secrets resolved.
pub(crate) async fn headers<L: Lookup>(
    policy: &Policy,
    lookup: &L,
    host: &str,
    path: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SecretError> {
    let wanted = policy.rules.headers_for(host, path);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let secrets = read_secrets(policy, lookup, wanted.iter().flat_map(|h| h.secrets())).await;
    let read = |name: &str| secrets.get(name).cloned().flatten();
    wanted
        .iter()
        .map(|h| Ok((h.name.clone(), h.value(read)?)))
        .collect()
}

/// The values of the workspace secrets `names` of the policy's tenant.
pub(crate) async fn read_secrets<'a, L: Lookup>(
    policy: &Policy,
    lookup: &L,
    names: impl Iterator<Item = &'a str>,
) -> HashMap<String, Option<String>> {
    let mut secrets = HashMap::new();
    for name in names {
        if secrets.contains_key(name) {
            continue;
        }
        let value = match &policy.tenant {
            Some(tenant) => lookup.secret(tenant, name).await,
            None => None,
        };
        secrets.insert(name.to_owned(), value);
    }
    secrets
}

/// Set the headers the callbacks matching the host answer with. A
/// `full_request` callback gets a snapshot of the request as the sandbox
/// sent it, so its body is buffered first.
async fn ask_callbacks<L: Lookup>(
    req: Request<Incoming>,
    upstream: &Upstream,
    policy: &Policy,
    ctx: &Context<L>,
) -> Result<Request<Body>, Response<Body>> {
    let callbacks = policy.rules.callbacks_for(&upstream.host);
    if callbacks.is_empty() {
        return Ok(req.map(|body| body.boxed()));
    }
    let (mut parts, body) = req.into_parts();
    let (body, buffered) = if callbacks.iter().any(|cb| cb.full_request) {
        let bytes = buffer(body, "full_request callbacks see bodies").await?;
        (full(bytes.clone()), Some(bytes))
    } else {
        (body.boxed(), None)
    };
    let mut answers = Vec::new();
    for cb in callbacks {
        let snapshot = buffered.as_ref().map(|bytes| callback::Snapshot {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: bytes,
        });
        let port = upstream.port;
        answers.extend(
            callback::headers(cb, ctx, policy, &upstream.host, port, snapshot)
                .await
                .map_err(bad_gateway)?,
        );
    }
    for (name, value) in answers {
        parts.headers.insert(name, value);
    }
    Ok(Request::from_parts(parts, body))
}

/// Largest request body the proxy buffers to sign with SigV4.
const MAX_SIGNED_BODY: usize = 64 << 20;

/// Sign `req` with the credentials of `aws` (SigV4), buffering its body.
async fn sign_aws<L: Lookup>(
    req: Request<Body>,
    aws: &AwsAuth,
    policy: &Policy,
    lookup: &L,
    host: &str,
) -> Result<Request<Body>, Response<Body>> {
    let names = aws
        .access_key_id
        .secrets()
        .into_iter()
        .chain(aws.secret_access_key.secrets());
    let secrets = read_secrets(policy, lookup, names).await;
    let read = |name: &str| secrets.get(name).cloned().flatten();
    let credentials = AwsCredentials {
        access_key_id: aws.access_key_id.resolve(read).map_err(missing_secret)?,
        secret_access_key: aws
            .secret_access_key
            .resolve(read)
            .map_err(missing_secret)?,
    };
    let (mut parts, body) = req.into_parts();
    let body = buffer(body, "bodies of AWS requests are signed").await?;
    sign_request(&mut parts, host, &body, &credentials, SystemTime::now()).map_err(bad_gateway)?;
    Ok(Request::from_parts(parts, full(body)))
}

/// The whole of `body`, up to [`MAX_SIGNED_BODY`] bytes; `why` says what
/// needs it buffered, for the 413 beyond that.
async fn buffer<B>(body: B, why: &str) -> Result<Bytes, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let collected = http_body_util::Limited::new(body, MAX_SIGNED_BODY)
        .collect()
        .await
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Sandpit egress: {why} up to {MAX_SIGNED_BODY} bytes"),
            )
        })?;
    Ok(collected.to_bytes())
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A 502 from the proxy saying what went wrong.
fn bad_gateway(what: impl std::fmt::Display) -> Response<Body> {
    refuse(StatusCode::BAD_GATEWAY, format!("Sandpit egress: {what}"))
}

/// A 502 naming a workspace secret that is not set (never a value).
fn missing_secret(err: SecretError) -> Response<Body> {
    bad_gateway(err)
}

/// Set the rules' headers on `req`, or say which secret is unusable.
pub(crate) async fn inject<B, L: Lookup>(
    req: &mut Request<B>,
    policy: &Policy,
    lookup: &L,
    host: &str,
) -> Result<(), Response<Body>> {
    let path = req.uri().path().to_owned();
    match headers(policy, lookup, host, &path).await {
        Ok(set) => {
            for (name, value) in set {
                req.headers_mut().insert(name, value);
            }
            Ok(())
        }
        Err(err) => Err(bad_gateway(err)),
    }
}

/// The one upstream connection of an intercepted connection.
pub(crate) struct Upstream {
    host: String,
    /// The address the sandbox dialed, unless it was the sentinel.
    ip: Option<IpAddr>,
    port: u16,
    sender: Mutex<Option<SendRequest<Body>>>,
}

impl Upstream {
    pub fn new(host: String, ip: Option<IpAddr>, port: u16) -> Self {
        Self {
            host,
            ip,
            port,
            sender: Mutex::new(None),
        }
    }

    /// A ready sender: the kept one, or a new connection.
    async fn sender<L: Lookup>(
        &self,
        policy: &Policy,
        ctx: &Context<L>,
    ) -> Result<SendRequest<Body>, RequestError> {
        let kept = self.sender.lock().expect("upstream sender").take();
        if let Some(mut sender) = kept {
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let tcp = ctx
            .dialer
            .dial(policy, Some(&self.host), None, self.port)
            .await?;
        let tls = crate::upstream::connect_tls(ctx, tcp, &self.host).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Hold `req` to this connection's host: a request naming another
    /// (its `Host` or absolute URI) is refused with 421, else the policy
    /// would check the SNI's host and the upstream serve the other, with
    /// the first one's secrets. A request naming none gets this host.
    fn bind<B>(&self, req: &mut Request<B>) -> Result<(), BadAuthority> {
        let bound = self.host.trim_end_matches('.').to_ascii_lowercase();
        match request_authority(req, self.port)? {
            Some((host, port)) if host == bound && port == self.port => Ok(()),
            Some((named, _)) => Err(BadAuthority::Misdirected {
                named,
                bound: self.host.clone(),
            }),
            None => {
                let value =
                    HeaderValue::from_str(&self.host).map_err(|_| BadAuthority::Unparsable)?;
                req.headers_mut().insert(http::header::HOST, value);
                Ok(())
            }
        }
    }

    fn keep(&self, sender: SendRequest<Body>) {
        *self.sender.lock().expect("upstream sender") = Some(sender);
    }
}

/// Serve an intercepted TLS connection to `upstream`'s host (its
/// ClientHello still unread in `stream`) until the sandbox closes it.
pub(crate) async fn serve<S, L>(
    stream: S,
    upstream: Upstream,
    live: Arc<LivePolicy<L>>,
    ctx: Arc<Context<L>>,
) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    L: Lookup,
{
    let config = ctx.ca.server_config(&upstream.host)?;
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let tls = tokio::time::timeout(scaled(HANDSHAKE_TIMEOUT, ctx.time_scale), handshake)
        .await
        .map_err(|_| StreamError::HandshakeTimeout)?
        .map_err(StreamError::Handshake)?;
    let header_timeout = scaled(HEADER_TIMEOUT, ctx.time_scale);
    let upstream = Arc::new(upstream);
    let service = hyper::service::service_fn(move |req| {
        let (upstream, live, ctx) = (upstream.clone(), live.clone(), ctx.clone());
        async move { Ok::<_, Infallible>(forward(req, &upstream, &live, &ctx).await) }
    });
    // The header timeout also ends a kept-alive connection left idle.
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .await?;
    Ok(())
}

async fn forward<L: Lookup>(
    req: Request<Incoming>,
    upstream: &Upstream,
    live: &LivePolicy<L>,
    ctx: &Context<L>,
) -> Response<Body> {
    // Read per request: an update applies to kept-alive connections too.
    let Some(policy) = live.current().await else {
        return refuse(StatusCode::FORBIDDEN, GONE.into());
    };
    let mut req = req;
    if let Err(bad) = upstream.bind(&mut req) {
        return bad.response();
    }
    if let Err(denial) = policy.check_port(Some(&upstream.host), upstream.ip, upstream.port) {
        return denied(&upstream.host, denial);
    }
    let policy = &*policy;
    let req = match prepare(req, upstream, policy, ctx).await {
        Ok(req) => req,
        Err(refused) => return refused,
    };
    let mut sender = match upstream.sender(policy, ctx).await {
        Ok(s) => s,
        Err(err) => return bad_gateway(err),
    };
    let response = sender.send_request(req).await;
    upstream.keep(sender);
    match response {
        Ok(response) => response.map(|b| b.boxed()),
        Err(err) => bad_gateway(err),
    }
}

/// The request as it goes upstream: the callbacks' headers, then the
/// rules' headers (which win), then a provider rule's authorisation (a
/// Google bearer token, an AWS signature over the final request).
async fn prepare<L: Lookup>(
    req: Request<Incoming>,
    upstream: &Upstream,
    policy: &Policy,
    ctx: &Context<L>,
) -> Result<Request<Body>, Response<Body>> {
    // Callbacks see the request as the sandbox sent it, before any rule
    // header (a secret) is set.
    let mut req = ask_callbacks(req, upstream, policy, ctx).await?;
    inject(&mut req, policy, &*ctx.lookup, &upstream.host).await?;
    let path = req.uri().path().to_owned();
    if let Some(auth) = policy.rules.gcp_for(&upstream.host, &path) {
        let bearer = gcp::bearer(ctx, policy, auth).await.map_err(|e| match e {
            GcpError::MissingSecret(name) => missing_secret(name),
            other => bad_gateway(format!("no Google access token: {other}")),
        })?;
        req.headers_mut().insert(AUTHORIZATION, bearer);
    }
    match policy.rules.aws_for(&upstream.host, &path) {
        Some(aws) => sign_aws(req, aws, policy, &*ctx.lookup, &upstream.host).await,
        None => Ok(req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn requests_are_held_to_the_host_of_the_connection() {
        let upstream = Upstream::new("Allowed.test".into(), None, 443);
        // The finding: SNI allowed.test, Host denied.test.
        let mut other = request("/", Some("denied.test"));
        let refused = upstream.bind(&mut other).unwrap_err();
        assert_eq!(refused.response().status(), StatusCode::MISDIRECTED_REQUEST);
        let mut absolute = request("https://denied.test/", Some("allowed.test"));
        assert!(upstream.bind(&mut absolute).is_err());
        let mut port = request("/", Some("allowed.test:8443"));
        assert!(upstream.bind(&mut port).is_err());
        for host in ["allowed.test", "ALLOWED.test.", "allowed.test:443"] {
            assert!(
                upstream.bind(&mut request("/", Some(host))).is_ok(),
                "{host}"
            );
        }
        let mut bare = request("/", None);
        upstream.bind(&mut bare).unwrap();
        assert_eq!(bare.headers()[http::header::HOST], "Allowed.test");
    }
}
