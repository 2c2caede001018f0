//! TLS towards the real hosts: verified against the host's trust store
//! plus the operator's extra roots (`--egress-upstream-ca FILE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

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
