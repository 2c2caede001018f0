//! HTTPS: policy by SNI, then interception when a rule names the host
//! ([`crate::intercept`]), else the TLS stream passes through untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ca::CaError;
use crate::dial::DialError;
use crate::limits::{scaled, RELAY_IDLE_TIMEOUT};
use crate::live::LivePolicy;
use crate::prefixed::Prefixed;
use crate::relay::Passthrough;
use crate::{intercept, meaningful_ip, original_destination, Context, Denial, Lookup};

/// The most ClientHello bytes read before giving up on finding the SNI.
const MAX_HELLO: usize = 64 * 1024;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A fatal TLS alert record: `access_denied` (49).
const ACCESS_DENIED: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49];

/// Why a TLS connection from a sandbox was refused or ended early: logged,
/// never sent (the sandbox sees an alert or a closed connection).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("unknown source")]
    UnknownSource,
    #[error("no ClientHello in time")]
    HelloTimeout,
    #[error("closed before the ClientHello")]
    ClosedBeforeHello,
    #[error("ClientHello too large")]
    HelloTooLarge,
    #[error("not TLS: {0}")]
    NotTls(rustls::Error),
    #[error("the sandbox is gone")]
    Gone,
    #[error("no SNI and no address")]
    NoDestination,
    #[error("{host}: {denial}")]
    Denied { host: String, denial: Denial },
    #[error("{host}: {source}")]
    Dial { host: String, source: DialError },
    #[error("cut by a policy change: {0}")]
    Revoked(String),
    #[error("no TLS handshake from the sandbox in time")]
    HandshakeTimeout,
    #[error("TLS from the sandbox failed: {0}")]
    Handshake(std::io::Error),
    #[error("no certificate for the host: {0}")]
    Certificate(#[from] CaError),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn serve<L: Lookup>(listener: TcpListener, ctx: Arc<Context<L>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(err) => {
                tracing::warn!(error = %err, "egress tls: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the sandbox's cap the connection is closed at once.
        let Some(slot) = ctx.connections.acquire(peer.ip()) else {
            tracing::debug!(%peer, "egress tls: connection cap reached; closed");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(reason) = handle(stream, peer, ctx).await {
                tracing::debug!(%peer, %reason, "egress tls: refused");
            }
        });
    }
}

/// Read the ClientHello; return the bytes read and its SNI, if any.
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Vec<u8>, Option<String>), StreamError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(StreamError::ClosedBeforeHello);
        }
        seen.extend_from_slice(&buf[..n]);
        acceptor.read_tls(&mut &buf[..n])?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok((seen, sni));
            }
            Ok(None) if seen.len() < MAX_HELLO => continue,
            Ok(None) => return Err(StreamError::HelloTooLarge),
            Err((err, _)) => return Err(StreamError::NotTls(err)),
        }
    }
}

async fn handle<L: Lookup>(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context<L>>,
) -> Result<(), StreamError> {
    let Some(live) = LivePolicy::fetch(ctx.lookup.clone(), peer.ip()).await else {
        return Err(StreamError::UnknownSource);
    };
    let dst = original_destination(&stream);
    let target = Target {
        ip: meaningful_ip(dst),
        port: dst.map_or(443, |d| d.port()),
        name: None,
    };
    handle_stream(stream, live, target, ctx).await
}

/// Where a TLS stream was headed before the ClientHello says more.
pub(crate) struct Target {
    /// The address the sandbox dialed, unless it was the sentinel.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// The host of a `CONNECT`, used when the ClientHello has no SNI.
    pub name: Option<String>,
}

/// Policy by SNI, then interception (a rule names the host) or a
/// pass-through of the untouched TLS stream.
pub(crate) async fn handle_stream<S, L>(
    mut stream: S,
    live: Arc<LivePolicy<L>>,
    target: Target,
    ctx: Arc<Context<L>>,
) -> Result<(), StreamError>
where
    S: Passthrough,
    L: Lookup,
{
    let (hello, sni) = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream))
        .await
        .map_err(|_| StreamError::HelloTimeout)??;
    let host = sni.or(target.name);
    let ip = target.ip;
    let policy = live.current().await.ok_or(StreamError::Gone)?;
    let named = || host.as_deref().unwrap_or("?").to_owned();
    let verdict = match (&host, ip) {
        (None, None) => Err(StreamError::NoDestination),
        _ => policy
            .check_port(host.as_deref(), ip, target.port)
            .map_err(|denial| StreamError::Denied {
                host: named(),
                denial,
            }),
    };
    if let (Ok(()), Some(name)) = (&verdict, &host) {
        if policy.rules.intercepts(name) {
            crate::stats::global().verdict(crate::stats::Verdict::Intercepted);
            let stream = Prefixed::new(hello, stream);
            let upstream = intercept::Upstream::new(name.clone(), ip, target.port);
            return intercept::serve(stream, upstream, live, ctx).await;
        }
    }
    crate::stats::global().verdict(match verdict {
        Ok(()) => crate::stats::Verdict::Allowed,
        Err(_) => crate::stats::Verdict::Denied,
    });
    let upstream = match verdict {
        Ok(()) => ctx
            .dialer
            .dial(&policy, host.as_deref(), ip, target.port)
            .await
            .map_err(|source| StreamError::Dial {
                host: named(),
                source,
            }),
        Err(e) => Err(e),
    };
    let mut upstream = match upstream {
        Ok(u) => u,
        Err(refused) => {
            let _ = stream.write_all(&ACCESS_DENIED).await;
            let _ = stream.shutdown().await;
            return Err(refused);
        }
    };
    upstream.write_all(&hello).await?;
    // The proxy cannot see the requests of a passed-through stream, so a
    // policy change that denies its host ends it.
    let idle = scaled(RELAY_IDLE_TIMEOUT, ctx.time_scale);
    tokio::select! {
        _ = stream.relay(upstream, idle) => Ok(()),
        why = live.revoked(host.as_deref(), ip, target.port) => Err(StreamError::Revoked(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_without_a_client_hello_says_why() {
        let mut closed: &[u8] = b"";
        let err = read_hello(&mut closed).await.unwrap_err();
        assert!(matches!(err, StreamError::ClosedBeforeHello), "{err}");
        let mut http: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let err = read_hello(&mut http).await.unwrap_err();
        assert!(matches!(err, StreamError::NotTls(_)), "{err}");
        assert!(err.to_string().starts_with("not TLS: "), "{err}");
    }
}
