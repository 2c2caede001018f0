//! TLS for the API, the console and service hosts (`--tls-cert`,
//! `--tls-key`): rustls with the certificate chain and key from PEM files,
//! read again on SIGHUP (a renewed certificate applies to new connections;
//! a bad one is logged and the old one kept). One certificate serves every
//! name, so a wildcard certificate for the service domain
//! (`*.sandboxes.example.com` plus the API's own name) covers every service
//! host. The accept loop (`gateway::fastpath`) does the handshake; TLS
//! connections are then served by hyper (HTTP/2 by ALPN, or HTTP/1.1).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate chain {path}: {source}")]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("reading the private key {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The current server configuration, replaced on reload.
pub struct Acceptor {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Acceptor {
    /// Load the files; fails when they do not make a configuration.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files.cert, &files.key)?;
        Ok(Self {
            files,
            current: RwLock::new(config),
        })
    }

    /// Read the files again; on failure the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files.cert, &self.files.key)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(())
    }

    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The server side of a handshake on `stream`, bounded in time.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}

/// Reload `acceptor` on every SIGHUP until the process exits.
pub fn reload_on_sighup(acceptor: Arc<Acceptor>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match acceptor.reload() {
                Ok(()) => {
                    tracing::info!(cert = %acceptor.files.cert.display(), "TLS certificate reloaded")
                }
                Err(err) => {
                    tracing::error!(error = %err, "TLS reload failed; the previous certificate stays")
                }
            }
        }
    }))
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> TlsFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.cert.pem()).unwrap();
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn loads_a_pair_refuses_garbage_and_keeps_the_old_config_on_a_bad_reload() {
        let dir = tempdir();
        let files = write_pair(&dir, &["*.svc.test", "localhost"]);
        let acceptor = Acceptor::load(files.clone()).unwrap();
        let before = acceptor.config();
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(acceptor.reload().is_err());
        assert!(
            Arc::ptr_eq(&before, &acceptor.config()),
            "a failed reload replaced the config"
        );
        assert!(matches!(
            Acceptor::load(files.clone()),
            Err(TlsError::NoCertificate(_))
        ));
        write_pair(&dir, &["localhost"]);
        acceptor.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &acceptor.config()));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sandpit-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
