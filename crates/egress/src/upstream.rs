//! TLS towards the real hosts: verified against the host's trust store
//! plus the operator's extra roots (`--egress-upstream-ca FILE`), and the
//! one-shot requests the proxy makes on its own behalf (callbacks, token
//! endpoints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use crate::dial::DialError;
use crate::{Context, Policy};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot read CA file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file {0} holds no certificate")]
    Empty(PathBuf),
    #[error(
        "no trusted roots: the host's trust store is empty and no --egress-upstream-ca was given"
    )]
    NoRoots,
    #[error("cannot build the upstream TLS configuration")]
    Tls(#[from] rustls::Error),
}

/// Why a connection or request the proxy makes upstream failed (a 502's
/// reason, or a callback's or token endpoint's).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("{0}")]
    Dial(#[from] DialError),
    #[error("{0}")]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("TLS to {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// The one crypto provider the proxy uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| UpstreamError::Read {
            path: path.to_owned(),
            source,
        })?;
    match certs.is_empty() {
        true => Err(UpstreamError::Empty(path.to_owned())),
        false => Ok(certs),
    }
}

/// The client configuration for upstream connections (HTTP/1.1).
pub fn client_config(extra: &[PathBuf]) -> Result<Arc<ClientConfig>, UpstreamError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "egress: skipping part of the host trust store");
    }
    roots.add_parsable_certificates(native.certs);
    for path in extra {
        for cert in read_roots(path)? {
            roots.add(cert)?;
        }
    }
    if roots.is_empty() {
        return Err(UpstreamError::NoRoots);
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verified TLS to `host` over `tcp` (the upstream trust store).
pub(crate) async fn connect_tls<L>(
    ctx: &Context<L>,
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, RequestError> {
    let name = ServerName::try_from(host.to_owned())?;
    tokio_rustls::TlsConnector::from(ctx.upstream_tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|source| RequestError::Tls {
            host: host.to_owned(),
            source,
        })
}

/// Send one request to `url` (http or https, verified TLS) on the proxy's
/// own behalf — a callback, a token endpoint — on a new connection. The
/// sandbox's allow and deny lists do not apply; reserved addresses are
/// still refused unless `--egress-resolve` names the host.
pub(crate) async fn request_once<L>(
    ctx: &Context<L>,
    url: &Uri,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, RequestError> {
    let host = url.host().unwrap_or_default();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = ctx
        .dialer
        .dial(&Policy::default(), Some(host), None, port)
        .await?;
    match https {
        true => send(TokioIo::new(connect_tls(ctx, tcp, host).await?), request).await,
        false => send(TokioIo::new(tcp), request).await,
    }
}

async fn send<I>(io: I, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, RequestError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(request).await?)
}
