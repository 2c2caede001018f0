//! Sandpit's certificate authority: signs the leaf certificates the proxy
//! shows a sandbox when it intercepts TLS.
//!
//! Generated once, at the first start, into a directory of the data dir that
//! no sandbox can see: `ca.key` (PKCS#8 PEM, 0600) and `ca.crt`. Sandboxes
//! trust `ca.crt` through a bundle mounted at their system trust store path.
//! Leaf certificates are made on demand, one per host name, and cached.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

const CA_NAME: &str = "Sandpit egress CA";
/// The most leaf configurations kept; the cache is cleared when full.
const MAX_LEAVES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed")]
    Generate(#[from] rcgen::Error),
    #[error("the stored CA key is unusable")]
    Key(#[source] rcgen::Error),
    #[error("cannot build a TLS configuration")]
    Tls(#[from] rustls::Error),
}

/// The CA and its cache of per-host TLS server configurations.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Sandpit");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Write `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(text.as_bytes()).map_err(io_error(path))
}

impl Authority {
    /// Load the CA from `dir`, creating it (and `dir`, 0700) the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.crt");
        if !key_path.exists() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
            let _ = fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            // Certificate first: a key without its certificate is regenerated.
            let _ = fs::remove_file(&cert_path);
            fs::write(&cert_path, cert.pem()).map_err(io_error(&cert_path))?;
            write_private(&key_path, &key.serialize_pem())?;
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(CaError::Key)?;
        let cert_der = pem_to_der(&cert_pem).ok_or_else(|| CaError::Io {
            path: cert_path.clone(),
            source: std::io::Error::other("not a PEM certificate"),
        })?;
        Ok(Self {
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
            cert_der,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (PEM), for sandboxes' trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server configuration presenting a leaf certificate for `host`
    /// (HTTP/1.1 only), made once per host.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(config) = self.leaves.lock().expect("leaf cache").get(&host) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.make_config(&host)?);
        let mut leaves = self.leaves.lock().expect("leaf cache");
        if leaves.len() >= MAX_LEAVES {
            leaves.clear();
        }
        leaves.insert(host, config.clone());
        Ok(config)
    }

    fn make_config(&self, host: &str) -> Result<ServerConfig, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, host.to_owned());
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&key, &self.issuer)?;
        let chain = vec![leaf.der().clone(), self.cert_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(crate::upstream::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The first certificate of a PEM text, as DER.
fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sandpit-ca-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = Authority::load_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Authority::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        assert!(second.server_config("api.example.test").is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
