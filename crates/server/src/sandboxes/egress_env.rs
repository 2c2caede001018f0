//! What every sandbox gets so its traffic works through the egress proxy:
//! Sandpit's CA in the system trust store, the variables that point common
//! clients at it, and `HTTP(S)_PROXY` for clients that want an explicit
//! proxy (the proxy answers `CONNECT` and absolute-URI requests on the
//! sentinel address, port 80, which the firewall redirects to it).

use std::path::Path;

use sandpit_runtime::MountSpec;

/// The Debian/Ubuntu/Alpine path of the system trust bundle.
pub const TRUST_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The explicit-proxy address: the sentinel on port 80.
const PROXY: &str = "http://198.18.0.1:80";

/// The host's roots plus Sandpit's CA, read-only over the image's bundle.
pub fn trust_store_mount(bundle: &Path) -> MountSpec {
    MountSpec::Bind {
        source: bundle.to_path_buf(),
        destination: TRUST_STORE.into(),
        readonly: true,
    }
}

/// Environment variables (a sandbox's `run_config.env_vars` may override).
pub fn variables() -> [(&'static str, &'static str); 11] {
    [
        ("SSL_CERT_FILE", TRUST_STORE),
        ("REQUESTS_CA_BUNDLE", TRUST_STORE),
        ("CURL_CA_BUNDLE", TRUST_STORE),
        ("NODE_EXTRA_CA_CERTS", TRUST_STORE),
        ("GIT_SSL_CAINFO", TRUST_STORE),
        ("HTTP_PROXY", PROXY),
        ("HTTPS_PROXY", PROXY),
        ("http_proxy", PROXY),
        ("https_proxy", PROXY),
        ("NO_PROXY", "localhost,127.0.0.1,::1"),
        ("no_proxy", "localhost,127.0.0.1,::1"),
    ]
}
