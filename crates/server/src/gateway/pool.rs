//! Keep-alive connections to sandbox ports, reused across requests.
//!
//! Plain (non-upgrade) requests to an [`Upstream::Netns`](super::relay::Upstream)
//! go through one pooled hyper client whose connector opens sockets inside
//! the sandbox's network namespace; the pool key is the authority
//! `p{pid}:{port}`, so connections are never shared between sandboxes or
//! ports. A new connection costs a `setns` pair, a TCP handshake and an
//! accept in the service; a pooled one costs none of these.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How long an idle pooled connection is kept.
const IDLE: Duration = Duration::from_secs(30);

/// Connects `http://p{pid}:{port}` to `127.0.0.1:port` in `pid`'s netns.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetnsConnector;

fn parse(uri: &Uri) -> std::io::Result<(i32, u16)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pool address");
    let pid = uri
        .host()
        .and_then(|h| h.strip_prefix('p'))
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let port = uri.port_u16().ok_or_else(bad)?;
    Ok((pid, port))
}

impl tower::Service<Uri> for NetnsConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let (pid, port) = parse(&uri)?;
            Ok(TokioIo::new(super::netns::connect(pid, port).await?))
        })
    }
}

/// The process-wide pooled client.
pub fn client() -> &'static Client<NetnsConnector, Body> {
    static CLIENT: OnceLock<Client<NetnsConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(256)
            .build(NetnsConnector)
    })
}

/// The pool URI of `path_and_query` on `port` of `pid`.
pub fn uri(pid: i32, port: u16, path_and_query: &str) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme("http")
        .authority(format!("p{pid}:{port}"))
        .path_and_query(path_and_query)
        .build()
}
