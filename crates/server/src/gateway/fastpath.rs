//! The service fast path: plain HTTP/1.1 requests for a sandbox service,
//! relayed within the client connection's own task.
//!
//! Every accepted connection starts here. While its requests are HTTP/1.1
//! service requests with a valid token and a body of known length, this
//! loop rewrites each head (path, credentials, hop-by-hop headers; see
//! [`h1`]) and relays it to a keep-alive connection into the sandbox that
//! belongs to this client connection, then relays the response back the
//! same way: one task, no pool, no request or response objects.
//!
//! At the first request it does not take — an API call, `/_svc/auth`, an
//! upgrade, a chunked upload, HTTP/2, a missing or bad token, a service that
//! does not answer — it hands the connection, with every byte it has read
//! and not relayed, to hyper and axum (through [`Handoff`], an
//! [`axum::serve::Listener`]), which serve it from there. Every error
//! response and every other protocol feature so keeps one implementation.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use sandpit_egress::prefixed::Prefixed;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::forwarding;
use super::h1::{self, Chunked, Framing, Head};
use super::service;
use crate::error::ApiError;
use crate::state::AppState;

/// Read buffer per side; grown when a head needs more.
const BUF: usize = 16 << 10;
/// How long a client may take to finish a request head it has started.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection the fast path handed to hyper.
pub type Accepted = (Conn, SocketAddr);

/// A connection hyper serves: cleartext (with the bytes the fast path read)
/// or TLS (`--tls-cert`; the fast path takes cleartext only).
pub enum Conn {
    Plain(Prefixed<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections hyper serves, as an [`axum::serve::Listener`].
pub struct Handoff {
    connections: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handoff {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> Accepted {
        match self.connections.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accept connections on `listener`, each starting on the fast path (or,
/// with `tls`, going to hyper after the handshake). Returns what hyper is
/// to serve and the accept loop's task.
pub fn listen(
    listener: TcpListener,
    state: AppState,
    tls: Option<std::sync::Arc<crate::tls::Acceptor>>,
) -> std::io::Result<(Handoff, JoinHandle<()>)> {
    let local = listener.local_addr()?;
    let (tx, connections) = mpsc::channel(64);
    let accept = tokio::spawn(async move {
        super::grants::preload(&state.store).await;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of fds and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY a response written in pieces waits for the
            // client's delayed ACK: ~40 ms stalls.
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
            match &tls {
                Some(tls) => tokio::spawn(handshake(tls.clone(), stream, peer, tx.clone())),
                None => tokio::spawn(connection(stream, peer, state.clone(), tx.clone())),
            };
        }
    });
    Ok((Handoff { connections, local }, accept))
}

/// The TLS handshake of a connection, then hyper serves it.
async fn handshake(
    tls: std::sync::Arc<crate::tls::Acceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    handoff: mpsc::Sender<Accepted>,
) {
    match tls.accept(stream).await {
        Ok(io) => {
            let _ = handoff.send((Conn::Tls(Box::new(io)), peer)).await;
        }
        Err(err) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
    }
}

/// A keep-alive connection into a sandbox, owned by one client connection.
struct Upstream {
    pid: i32,
    port: u16,
    io: TcpStream,
    buf: BytesMut,
    /// Has carried an exchange before (so may have been closed meanwhile).
    reused: bool,
}

/// One request the fast path relays.
struct Exchange {
    id: String,
    pid: i32,
    port: u16,
    /// The rewritten head.
    head: Vec<u8>,
    /// `Content-Security-Policy` for the response (path forms).
    csp: Option<&'static str>,
    /// Length of the client's head in its buffer.
    head_len: usize,
    body: u64,
    head_request: bool,
    close: bool,
}

/// How an exchange ended.
enum Outcome {
    KeepAlive,
    Close,
    /// Nothing was consumed or sent: hyper takes the connection as it is.
    HandOff,
}

async fn connection(
    mut client: TcpStream,
    peer: SocketAddr,
    state: AppState,
    handoff: mpsc::Sender<Accepted>,
) {
    let mut buf = BytesMut::with_capacity(BUF);
    let mut upstream = None;
    loop {
        let request = loop {
            match h1::request(&buf) {
                Head::Done(request) => break Some(request),
                Head::Other => break None,
                Head::Partial => match read_request(&mut client, &mut buf).await {
                    Ok(0) if buf.is_empty() => return,
                    Ok(0) => break None,
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        };
        let outcome = match request.and_then(|r| plan(&state, r)) {
            Some(exchange) => relay(&state, &mut client, &mut buf, &mut upstream, exchange).await,
            None => Outcome::HandOff,
        };
        match outcome {
            Outcome::KeepAlive => continue,
            Outcome::Close => return,
            Outcome::HandOff => {
                let io = Prefixed::new(buf.to_vec(), client);
                let _ = handoff.send((Conn::Plain(io), peer)).await;
                return;
            }
        }
    }
}

/// Read the next bytes of a request: waiting for one is unbounded (an idle
/// keep-alive connection), finishing a head that has begun is not.
async fn read_request(client: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.is_empty() {
        return read_more(client, buf).await;
    }
    tokio::time::timeout(HEAD_TIMEOUT, read_more(client, buf))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

/// Read into `buf`, making room first; Ok(0) at end of stream.
async fn read_more<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < BUF / 4 {
        buf.reserve(BUF);
    }
    io.read_buf(buf).await
}

/// Whether `request` is one the fast path takes, and where it goes.
fn plan(state: &AppState, request: h1::Request) -> Option<Exchange> {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target.as_str(), None),
    };
    let target = service::target_for(&state.config, request.host.as_deref(), path)?;
    if target.is_token_exchange() {
        return None;
    }
    let token = forwarding::presented(target.token_source(), || {
        request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
    })?;
    let claims = service::check(state, &target, token).ok()?;
    let pid = state.sandboxes.live_pid(&claims.tid, &target.id)?;
    Some(Exchange {
        head_request: request.method == "HEAD",
        head: request.head_for(&target.path, query),
        csp: target.is_path_form().then_some(forwarding::PATH_FORM_CSP),
        id: target.id,
        pid,
        port: target.port,
        head_len: request.len,
        body: request.body,
        close: request.close,
    })
}

/// Relay one exchange. Hands off (consuming nothing) when the service
/// cannot be reached at all.
async fn relay(
    state: &AppState,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    slot: &mut Option<Upstream>,
    exchange: Exchange,
) -> Outcome {
    let _active = state.sandboxes.connection(&exchange.id);
    if slot
        .as_ref()
        .is_some_and(|u| (u.pid, u.port) != (exchange.pid, exchange.port))
    {
        *slot = None;
    }
    if slot.is_none() {
        match super::netns::connect(exchange.pid, exchange.port).await {
            Ok(io) => *slot = Some(fresh(exchange.pid, exchange.port, io)),
            Err(_) => return Outcome::HandOff,
        }
    }
    // From here on the request is ours.
    buf.advance(exchange.head_len);
    let buffered = exchange.body.min(buf.len() as u64) as usize;
    let mut request = exchange.head;
    request.extend_from_slice(&buf[..buffered]);
    buf.advance(buffered);
    let rest = exchange.body - buffered as u64;

    let mut attempt = 0;
    let response = loop {
        let Some(upstream) = slot.as_mut() else {
            return Outcome::Close;
        };
        let sent = send(upstream, client, buf, &request, rest).await;
        let answered = match sent {
            Ok(()) => read_head(upstream, exchange.head_request, exchange.csp).await,
            Err(Failure::Client) => return Outcome::Close,
            Err(err) => Err(err),
        };
        match answered {
            Ok(response) => break response,
            // A kept-alive connection the service closed meanwhile: once
            // more on a new one, if the whole request is still at hand.
            Err(Failure::Closed) if upstream.reused && rest == 0 && attempt == 0 => {
                attempt += 1;
                match super::netns::connect(exchange.pid, exchange.port).await {
                    Ok(io) => *slot = Some(fresh(exchange.pid, exchange.port, io)),
                    Err(_) => return bad_gateway(client, slot).await,
                }
            }
            Err(Failure::Client) => return Outcome::Close,
            Err(_) => return bad_gateway(client, slot).await,
        }
    };
    let Some(upstream) = slot.as_mut() else {
        return Outcome::Close;
    };
    upstream.reused = true;
    let length = match response.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    crate::metrics::global().fast_service_request(exchange.body, length);
    if response_body(upstream, client, response.head, response.framing)
        .await
        .is_err()
    {
        *slot = None;
        return Outcome::Close;
    }
    // Bytes after the response, or a service that said close: the
    // connection cannot carry another exchange.
    if response.upstream_close || !upstream.buf.is_empty() {
        *slot = None;
    }
    if exchange.close || response.framing == Framing::UntilClose {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

fn fresh(pid: i32, port: u16, io: TcpStream) -> Upstream {
    Upstream {
        pid,
        port,
        io,
        buf: BytesMut::with_capacity(BUF),
        reused: false,
    }
}

/// Which side of an exchange failed.
#[derive(Debug)]
enum Failure {
    /// The client went away.
    Client,
    /// The service closed or reset before answering.
    Closed,
    /// The service answered something that is not HTTP/1.1.
    Malformed,
}

/// Send the request head (with the body bytes already read) and the rest of
/// the body, `rest` bytes, from the client.
async fn send(
    upstream: &mut Upstream,
    client: &mut TcpStream,
    buf: &mut BytesMut,
    request: &[u8],
    rest: u64,
) -> Result<(), Failure> {
    upstream
        .io
        .write_all(request)
        .await
        .map_err(|_| Failure::Closed)?;
    copy_exact(client, &mut upstream.io, buf, rest).await
}

/// Copy exactly `n` bytes from `from` to `to`, reading through `buf` (empty
/// on entry: the caller sent what it held).
async fn copy_exact(
    from: &mut TcpStream,
    to: &mut TcpStream,
    buf: &mut BytesMut,
    mut n: u64,
) -> Result<(), Failure> {
    while n > 0 {
        if buf.is_empty() && read_more(from, buf).await.map_err(|_| Failure::Client)? == 0 {
            return Err(Failure::Client);
        }
        let take = n.min(buf.len() as u64) as usize;
        to.write_all(&buf[..take])
            .await
            .map_err(|_| Failure::Closed)?;
        buf.advance(take);
        n -= take as u64;
    }
    Ok(())
}

/// Read the service's response head. Informational heads (103 Early Hints;
/// a request without `Expect` or `Upgrade` gets no other) are skipped.
async fn read_head(
    upstream: &mut Upstream,
    head_request: bool,
    csp: Option<&str>,
) -> Result<h1::Response, Failure> {
    let mut received = false;
    loop {
        match h1::response(&upstream.buf, head_request, csp) {
            Ok(Some(response)) if (100..200).contains(&response.status) => {
                if response.status == 101 {
                    return Err(Failure::Malformed);
                }
                upstream.buf.advance(response.len);
                continue;
            }
            Ok(Some(response)) => {
                upstream.buf.advance(response.len);
                return Ok(response);
            }
            Ok(None) => {}
            Err(h1::Malformed) => return Err(Failure::Malformed),
        }
        match read_more(&mut upstream.io, &mut upstream.buf).await {
            Ok(0) | Err(_) if !received => return Err(Failure::Closed),
            Ok(0) | Err(_) => return Err(Failure::Malformed),
            Ok(_) => received = true,
        }
    }
}

/// Send `head` and the body that follows it in `upstream` to the client.
async fn response_body(
    upstream: &mut Upstream,
    client: &mut TcpStream,
    head: Vec<u8>,
    framing: Framing,
) -> Result<(), Failure> {
    let mut out = head;
    let mut scanner = Chunked::default();
    let mut left = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    loop {
        let available = &upstream.buf[..];
        let take = match framing {
            Framing::Empty => 0,
            Framing::Length(_) => left.min(available.len() as u64) as usize,
            Framing::Chunked => match scanner.feed(available).map_err(|_| Failure::Malformed)? {
                Some(end) => {
                    left = 0;
                    end
                }
                None => available.len(),
            },
            Framing::UntilClose => available.len(),
        };
        out.extend_from_slice(&available[..take]);
        upstream.buf.advance(take);
        if let Framing::Length(_) = framing {
            left -= take as u64;
        }
        if !out.is_empty() {
            client.write_all(&out).await.map_err(|_| Failure::Client)?;
            out.clear();
        }
        if left == 0 {
            return Ok(());
        }
        let read = read_more(&mut upstream.io, &mut upstream.buf).await;
        match read {
            Ok(0) | Err(_) if framing == Framing::UntilClose => return Ok(()),
            Ok(0) | Err(_) => return Err(Failure::Closed),
            Ok(_) => {}
        }
    }
}

/// Answer the exchange with the gateway's 502 and end the connection.
async fn bad_gateway(client: &mut TcpStream, slot: &mut Option<Upstream>) -> Outcome {
    *slot = None;
    let response = axum::response::IntoResponse::into_response(ApiError::Upstream(
        "Service is not reachable".into(),
    ));
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = client.write_all(&out).await;
    Outcome::Close
}
