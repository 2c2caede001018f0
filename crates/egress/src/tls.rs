//! HTTPS: policy by SNI, then the TLS stream passes through untouched.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dial::Dialer;
use crate::{meaningful_ip, original_destination, Lookup};

/// The most ClientHello bytes read before giving up on finding the SNI.
const MAX_HELLO: usize = 64 * 1024;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A fatal TLS alert record: `access_denied` (49).
const ACCESS_DENIED: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49];

pub async fn serve<L: Lookup>(listener: TcpListener, lookup: Arc<L>, dialer: Arc<Dialer>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(err) => {
                tracing::warn!(error = %err, "egress tls: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let lookup = lookup.clone();
        let dialer = dialer.clone();
        tokio::spawn(async move {
            if let Err(reason) = handle(stream, peer, &*lookup, &dialer).await {
                tracing::debug!(%peer, %reason, "egress tls: refused");
            }
        });
    }
}

/// Read the ClientHello; return the bytes read and its SNI, if any.
async fn read_hello(stream: &mut TcpStream) -> Result<(Vec<u8>, Option<String>), String> {
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
    mut stream: TcpStream,
    peer: SocketAddr,
    lookup: &L,
    dialer: &Dialer,
) -> Result<(), String> {
    let Some(policy) = lookup.policy(peer.ip()).await else {
        return Err("unknown source".into());
    };
    let dst = original_destination(&stream);
    let ip: Option<IpAddr> = meaningful_ip(dst);
    let port = dst.map_or(443, |d| d.port());
    let (hello, sni) = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream))
        .await
        .map_err(|_| "no ClientHello in time".to_owned())??;
    let verdict = match (&sni, ip) {
        (None, None) => Err("no SNI and no address".to_owned()),
        _ => policy.check(sni.as_deref(), ip).map_err(|d| d.to_string()),
    };
    let upstream = match verdict {
        Ok(()) => dialer
            .dial(&policy, sni.as_deref(), ip, port)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let mut upstream = match upstream {
        Ok(u) => u,
        Err(reason) => {
            let _ = stream.write_all(&ACCESS_DENIED).await;
            let _ = stream.shutdown().await;
            return Err(format!("{}: {reason}", sni.as_deref().unwrap_or("?")));
        }
    };
    upstream
        .write_all(&hello)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
    Ok(())
}
