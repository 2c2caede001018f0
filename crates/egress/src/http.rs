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
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::limits::{scaled, Slot, HEADER_TIMEOUT};
use crate::live::LivePolicy;
use crate::prefixed::Prefixed;
use crate::tls::{handle_stream, Target};
use crate::{meaningful_ip, original_destination, Context, Lookup, Policy};

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
        // Past the sandbox's cap the connection is closed at once.
        let Some(slot) = ctx.connections.acquire(peer.ip()) else {
            tracing::debug!(%peer, "egress http: connection cap reached; closed");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(serve_connection(stream, peer, Arc::new(slot), ctx));
    }
}

/// Serve one connection's requests; `slot` is held until it and any
/// `CONNECT` tunnel it became are closed.
async fn serve_connection<L: Lookup>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    ctx: Arc<Context<L>>,
) {
    let Some(live) = LivePolicy::fetch(ctx.lookup.clone(), peer.ip()).await else {
        return;
    };
    let dst = original_destination(&stream);
    let header_timeout = scaled(HEADER_TIMEOUT, ctx.time_scale);
    let service = hyper::service::service_fn(move |req| {
        let (live, ctx, slot) = (live.clone(), ctx.clone(), slot.clone());
        async move { Ok::<_, Infallible>(route(req, live, ctx, dst, slot).await) }
    });
    // The header timeout also ends a kept-alive connection left idle.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
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

/// Why a request's host cannot be taken as it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadAuthority {
    /// The `Host` header is not `host[:port]`.
    Unparsable,
    /// The request names `named`, but is bound for `bound`.
    Misdirected { named: String, bound: String },
}

impl BadAuthority {
    /// 400, or 421 Misdirected Request.
    pub(crate) fn response(self) -> Response<Body> {
        match self {
            BadAuthority::Unparsable => refuse(
                StatusCode::BAD_REQUEST,
                "Sandpit egress: the Host header is not host[:port]".into(),
            ),
            BadAuthority::Misdirected { named, bound } => refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!("Sandpit egress: this request is for {named} but was sent for {bound}"),
            ),
        }
    }
}

/// The host (lower case, no trailing dot or brackets) and port a request
/// names: its absolute URI (proxy form) and its `Host` header, which must
/// agree; `default_port` when neither says. `Ok(None)`: it names none.
/// A request whose URI and `Host` disagree is misdirected (421): the
/// policy would check one host and the upstream serve the other.
pub(crate) fn request_authority<B>(
    req: &Request<B>,
    default_port: u16,
) -> Result<Option<(String, u16)>, BadAuthority> {
    let parse = |authority: &http::uri::Authority| {
        let host = authority.host().trim_matches(['[', ']']);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        (host, authority.port_u16().unwrap_or(default_port))
    };
    let from_uri = req.uri().authority().map(parse);
    let from_header = match req.headers().get(header::HOST) {
        None => None,
        Some(value) => {
            let authority = value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<http::uri::Authority>().ok())
                .ok_or(BadAuthority::Unparsable)?;
            Some(parse(&authority))
        }
    };
    match (from_uri, from_header) {
        (Some(uri), Some(header)) if uri != header => Err(BadAuthority::Misdirected {
            named: header.0,
            bound: uri.0,
        }),
        (uri, header) => Ok(uri.or(header)),
    }
}

/// A 403 saying which policy entry refused `name`.
pub(crate) fn denied(name: &str, why: impl std::fmt::Display) -> Response<Body> {
    crate::stats::global().verdict(crate::stats::Verdict::Denied);
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
    slot: Arc<Slot>,
) -> Response<Body> {
    // Read per request: an update applies to kept-alive connections too.
    let Some(policy) = live.current().await else {
        return refuse(StatusCode::FORBIDDEN, GONE.into());
    };
    match req.method() == Method::CONNECT {
        true => connect(req, &policy, live, ctx, slot),
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
    slot: Arc<Slot>,
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
    if let Err(denial) = policy.check_port(Some(&host), ip, port) {
        return denied(&host, denial);
    }
    tokio::spawn(async move {
        // The tunnel counts as the connection it came from.
        let _slot = slot;
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

/// Forward a plain-HTTP request to the host it names, on the port it
/// names (80 unless the policy names another). No rule, callback or
/// provider credential is ever set on it: it would cross the network in
/// clear text.
async fn forward<L: Lookup>(
    mut req: Request<Incoming>,
    policy: &Policy,
    ctx: &Context<L>,
    dst: Option<SocketAddr>,
) -> Response<Body> {
    let ip = meaningful_ip(dst);
    let default_port = dst.map_or(80, |d| d.port());
    let (host, port) = match request_authority(&req, default_port) {
        Ok(Some((host, port))) => (Some(host), port),
        Ok(None) => (None, default_port),
        Err(bad) => return bad.response(),
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
    if host.as_deref() == Some(crate::delegate::HOST) {
        let grant = ctx.lookup.delegation(policy).await;
        return crate::delegate::forward(req, port, grant).await;
    }
    if let Err(denial) = policy.check_port(host.as_deref(), ip, port) {
        return denied(&name, denial);
    }
    // The upstream sees the host the policy checked.
    if let Some(host) = &host {
        if !req.headers().contains_key(header::HOST) {
            let host = match host.contains(':') {
                true => format!("[{host}]"),
                false => host.clone(),
            };
            let value = match port {
                80 => host,
                port => format!("{host}:{port}"),
            };
            match http::HeaderValue::from_str(&value) {
                Ok(value) => req.headers_mut().insert(header::HOST, value),
                Err(_) => {
                    return refuse(StatusCode::BAD_REQUEST, "Sandpit egress: bad host".into())
                }
            };
        }
    }
    let upstream = match ctx.dialer.dial(policy, host.as_deref(), ip, port).await {
        Ok(s) => {
            crate::stats::global().verdict(crate::stats::Verdict::Allowed);
            s
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{test_context, Policies};
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// An upstream that answers every request with the head it received.
    async fn echo_upstream() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        head.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.write_all(&head).await;
                });
            }
        });
        port
    }

    /// A proxy serving the client's `config`, at its address.
    async fn proxy(
        config: serde_json::Value,
        time_scale: u32,
    ) -> (SocketAddr, Arc<Context<Policies>>) {
        let policy = Policy::from_proxy_config(Some(&config)).unwrap();
        let ctx = test_context(Arc::new(Policies([(CLIENT, policy)].into())), time_scale);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, ctx.clone()));
        (addr, ctx)
    }

    /// Send `request` (closing the connection after it) and read the answer.
    async fn send(proxy: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    fn status(answer: &str) -> u16 {
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn plain_http_reaches_other_ports_only_where_an_entry_names_them() {
        let port = echo_upstream().await;
        let get = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let (lo, _) = proxy(
            serde_json::json!({"access_control": {"allow_list": ["127.0.0.1"]}}),
            1,
        )
        .await;
        let answer = send(lo, &get).await;
        assert_eq!(status(&answer), 403, "{answer}");
        assert!(
            answer.contains(&format!("port {port} is not allowed")),
            "{answer}"
        );
        let named = format!("127.0.0.1:{port}");
        let (lo_port, _) = proxy(
            serde_json::json!({"access_control": {"allow_list": [named]}}),
            1,
        )
        .await;
        assert_eq!(status(&send(lo_port, &get).await), 200);
        // The default policy: public names on 80 only.
        let (open, _) = proxy(serde_json::json!({}), 1).await;
        let other = "GET / HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n";
        assert_eq!(status(&send(open, other).await), 403);
    }

    /// A proxy that allows `127.0.0.1:port` and has a rule setting
    /// `X-Secret` for it.
    async fn secret_rule_proxy(port: u16) -> SocketAddr {
        let named = format!("127.0.0.1:{port}");
        let config = serde_json::json!({
            "access_control": {"allow_list": [named]},
            "rules": [{"name": "r", "match_hosts": ["127.0.0.1"],
                       "headers": [{"name": "X-Secret", "type": "plaintext", "value": "s3cret"}]}],
        });
        proxy(config, 1).await.0
    }

    #[tokio::test]
    async fn a_host_header_that_disagrees_with_the_uri_is_misdirected() {
        let port = echo_upstream().await;
        let addr = secret_rule_proxy(port).await;
        let mismatch = format!(
            "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"
        );
        let answer = send(addr, &mismatch).await;
        assert_eq!(status(&answer), 421, "{answer}");
        // Agreeing: forwarded, with the host the policy checked.
        let agree = format!(
            "GET http://127.0.0.1:{port}/p HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        let answer = send(addr, &agree).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.contains("GET /p HTTP/1.1"), "{answer}");
        // The absolute URI alone: the upstream gets it as the Host.
        let bare = format!("GET http://127.0.0.1:{port}/q HTTP/1.1\r\nConnection: close\r\n\r\n");
        let answer = send(addr, &bare).await;
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.1:{port}")),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn plain_http_never_carries_a_rule_header() {
        let port = echo_upstream().await;
        let addr = secret_rule_proxy(port).await;
        let get = format!("GET /p HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let answer = send(addr, &get).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("x-secret"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_idle_ones_time_out() {
        // HEADER_TIMEOUT / 300 = 200 ms.
        let (addr, ctx) = proxy(serde_json::json!({}), 300).await;
        let mut held = Vec::new();
        for _ in 0..crate::limits::CONNECTIONS_PER_SANDBOX + 20 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            ctx.connections.held_by(CLIENT),
            crate::limits::CONNECTIONS_PER_SANDBOX
        );
        // The ones past the cap were closed at once (end of file)...
        let mut closed = 0;
        for stream in held.iter_mut().rev().take(20) {
            let mut buf = [0u8; 1];
            let read =
                tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
            if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                closed += 1;
            }
        }
        assert_eq!(closed, 20);
        // ...and the idle ones after the header timeout, which frees the
        // sandbox's share.
        let mut first = held.remove(0);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ctx.connections.held_by(CLIENT), 0);
    }
}
