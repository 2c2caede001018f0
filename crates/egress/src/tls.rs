//! HTTPS: policy by SNI, then interception when a rule names the host
//! ([`crate::intercept`]), else the TLS stream passes through untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::limits::{scaled, RELAY_IDLE_TIMEOUT};
use crate::live::LivePolicy;
use crate::prefixed::Prefixed;
use crate::relay::Passthrough;
use crate::{intercept, meaningful_ip, original_destination, Context, Lookup};

/// The most ClientHello bytes read before giving up on finding the SNI.
const MAX_HELLO: usize = 64 * 1024;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A fatal TLS alert record: `access_denied` (49).
const ACCESS_DENIED: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49];

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
) -> Result<(Vec<u8>, Option<String>), String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the ClientHello".into());
        }
        seen.extend_from_slice(&buf[..n]);
        acceptor
            .read_tls(&mut &buf[..n])
            .map_err(|e| e.to_string())?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok((seen, sni));
            }
            Ok(None) if seen.len() < MAX_HELLO => continue,
            Ok(None) => return Err("ClientHello too large".into()),
            Err((err, _)) => return Err(format!("not TLS: {err}")),
        }
    }
}

async fn handle<L: Lookup>(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context<L>>,
) -> Result<(), String> {
    let Some(live) = LivePolicy::fetch(ctx.lookup.clone(), peer.ip()).await else {
        return Err("unknown source".into());
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
) -> Result<(), String>
where
    S: Passthrough,
    L: Lookup,
{
    let (hello, sni) = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream))
        .await
        .map_err(|_| "no ClientHello in time".to_owned())??;
    let host = sni.or(target.name);
    let ip = target.ip;
    let policy = live.current().await.ok_or("the sandbox is gone")?;
    let verdict = match (&host, ip) {
        (None, None) => Err("no SNI and no address".to_owned()),
        _ => policy
            .check_port(host.as_deref(), ip, target.port)
            .map_err(|d| d.to_string()),
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
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let mut upstream = match upstream {
        Ok(u) => u,
        Err(reason) => {
            let _ = stream.write_all(&ACCESS_DENIED).await;
            let _ = stream.shutdown().await;
            return Err(format!("{}: {reason}", host.as_deref().unwrap_or("?")));
        }
    };
    upstream
        .write_all(&hello)
        .await
        .map_err(|e| e.to_string())?;
    // The proxy cannot see the requests of a passed-through stream, so a
    // policy change that denies its host ends it.
    let idle = scaled(RELAY_IDLE_TIMEOUT, ctx.time_scale);
    tokio::select! {
        _ = stream.relay(upstream, idle) => Ok(()),
        why = live.revoked(host.as_deref(), ip, target.port) => Err(format!("cut by a policy change: {why}")),
    }
}
