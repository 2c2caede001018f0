//! Plain HTTP: policy by `Host` per request, then forwarded; refused
//! requests get a 403 that says why.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::live::LivePolicy;
use crate::prefixed::Prefixed;
use crate::tls::{handle_stream, Target};
use crate::{intercept, meaningful_ip, original_destination, Context, Lookup, Policy};

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

pub async fn serve<L: Lookup>(listener: TcpListener, ctx: Arc<Context<L>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(err) => {
                tracing::warn!(error = %err, "egress http: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Some(live) = LivePolicy::fetch(ctx.lookup.clone(), peer.ip()).await else {
                return;
            };
            let dst = original_destination(&stream);
            let service = hyper::service::service_fn(move |req| {
                let (live, ctx) = (live.clone(), ctx.clone());
                async move { Ok::<_, Infallible>(route(req, live, ctx, dst).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

pub(crate) fn refuse(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    response
}

/// The host and port a request is for: its absolute URI (proxy form) or
/// its `Host` header.
fn target(req: &Request<Incoming>, default_port: u16) -> Option<(String, u16)> {
    if let Some(authority) = req.uri().authority() {
        return Some((
            authority.host().to_owned(),
            authority.port_u16().unwrap_or(80),
        ));
    }
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    Some((
        authority.host().to_owned(),
        authority.port_u16().unwrap_or(default_port),
    ))
}

/// A 403 saying which policy entry refused `name`.
pub(crate) fn denied(name: &str, why: impl std::fmt::Display) -> Response<Body> {
    refuse(
        StatusCode::FORBIDDEN,
        format!("Sandpit egress policy denied {name}: {why}"),
    )
}

async fn route<L: Lookup>(
    req: Request<Incoming>,
    live: Arc<LivePolicy<L>>,
    ctx: Arc<Context<L>>,
    dst: Option<SocketAddr>,
) -> Response<Body> {
    // Read per request: an update applies to kept-alive connections too.
    let Some(policy) = live.current().await else {
        return refuse(StatusCode::FORBIDDEN, GONE.into());
    };
    match req.method() == Method::CONNECT {
        true => connect(req, &policy, live, ctx),
        false => forward(req, &policy, &ctx, dst).await,
    }
}

/// Said to requests of a sandbox deleted while they were open.
pub(crate) const GONE: &str = "Sandpit egress: the sandbox is gone";

/// `CONNECT host:443` (explicit proxy clients): checked like a redirected
/// HTTPS connection, then handled as one once the tunnel is up.
fn connect<L: Lookup>(
    req: Request<Incoming>,
    policy: &Policy,
    live: Arc<LivePolicy<L>>,
    ctx: Arc<Context<L>>,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Sandpit egress: CONNECT needs host:port".into(),
        );
    };
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(443);
    if port != 443 {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("Sandpit egress: CONNECT is only allowed to port 443, not {port}"),
        );
    }
    let ip = host.parse::<IpAddr>().ok();
    if let Err(denial) = policy.check(Some(&host), ip) {
        return denied(&host, denial);
    }
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(err) => return tracing::debug!(error = %err, "egress: CONNECT upgrade failed"),
        };
        let target = Target {
            ip,
            port,
            name: Some(host),
        };
        // hyper hands the socket back, so a passed-through tunnel is
        // spliced like a redirected connection.
        let handled = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let tunnel = Prefixed::new(parts.read_buf.to_vec(), parts.io.into_inner());
                handle_stream(tunnel, live, target, ctx).await
            }
            Err(upgraded) => handle_stream(TokioIo::new(upgraded), live, target, ctx).await,
        };
        if let Err(reason) = handled {
            tracing::debug!(%reason, "egress: CONNECT tunnel refused");
        }
    });
    Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    )
}

async fn forward<L: Lookup>(
    mut req: Request<Incoming>,
    policy: &Policy,
    ctx: &Context<L>,
    dst: Option<SocketAddr>,
) -> Response<Body> {
    let ip = meaningful_ip(dst);
    let default_port = dst.map_or(80, |d| d.port());
    let (host, port) = match target(&req, default_port) {
        Some(t) => (Some(t.0), t.1),
        None => (None, default_port),
    };
    let name = host
        .clone()
        .or(ip.map(|i| i.to_string()))
        .unwrap_or_default();
    if host.is_none() && ip.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Sandpit egress: request without a Host".into(),
        );
    }
    if let Err(denial) = policy.check(host.as_deref(), ip) {
        return denied(&name, denial);
    }
    if let Some(host) = &host {
        if let Err(refused) = intercept::inject(&mut req, policy, &*ctx.lookup, host).await {
            return refused;
        }
    }
    let upstream = match ctx.dialer.dial(policy, host.as_deref(), ip, port).await {
        Ok(s) => s,
        Err(crate::dial::DialError::Denied(denial)) => return denied(&name, denial),
        Err(err) => return refuse(StatusCode::BAD_GATEWAY, format!("Sandpit egress: {err}")),
    };
    // Origin form towards the server.
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.as_str().parse().unwrap_or_default();
    }
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(err) => return refuse(StatusCode::BAD_GATEWAY, format!("Sandpit egress: {err}")),
        };
    tokio::spawn(conn);
    match sender.send_request(req).await {
        Ok(response) => response.map(|b| b.boxed()),
        Err(err) => refuse(StatusCode::BAD_GATEWAY, format!("Sandpit egress: {err}")),
    }
}
