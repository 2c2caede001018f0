//! What every sandbox gets so its traffic works through the egress proxy:
//! Sandpit's CA in the system trust store, the variables that point common
//! clients at it, and `HTTP(S)_PROXY` for clients that want an explicit
//! proxy (the proxy answers `CONNECT` and absolute-URI requests on the
//! sentinel address, port 80, which the firewall redirects to it).

use std::path::Path;

use sandpit_api::proxy_config::ProxyConfig;
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

/// The `env_vars` of the enabled rules of a stored `proxy_config` (e.g. the
/// dummy credentials `aws_auth(env_vars=...)` gives tools that refuse to
/// run without some): plaintext, set for every command; later rules win.
/// Applied when the sandbox boots.
pub fn rule_variables(proxy_config: Option<&str>) -> Vec<(String, String)> {
    let Some(config) = proxy_config.and_then(|t| serde_json::from_str::<ProxyConfig>(t).ok())
    else {
        return Vec::new();
    };
    config
        .enabled_rules()
        .flat_map(|rule| rule.env_vars.iter().flatten())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// For a sandbox with an `access_delegation` grant: the LangSmith SDKs'
/// endpoint, Sandpit's API by the name the egress proxy answers for it
/// (`crate::delegation`). No key: the proxy adds the credential. Applied
/// when the sandbox boots; `run_config.env_vars` may override.
pub fn delegation_variables(extra: &str) -> Vec<(String, String)> {
    if crate::delegation::Grant::of_extra(extra).is_none() {
        return Vec::new();
    }
    let endpoint = format!("http://{}", crate::delegation::HOST);
    ["LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT"]
        .map(|k| (k.to_owned(), endpoint.clone()))
        .into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_rules_give_their_env_vars() {
        let config = r#"{"rules": [
            {"name": "aws", "type": "aws", "env_vars": {"AWS_ACCESS_KEY_ID": "dummy", "A": "1"}},
            {"name": "off", "enabled": false, "env_vars": {"OFF": "x"}},
            {"name": "later", "match_hosts": ["h"], "env_vars": {"A": "2"}}
        ]}"#;
        let vars = rule_variables(Some(config));
        assert_eq!(
            vars,
            [("A", "1"), ("AWS_ACCESS_KEY_ID", "dummy"), ("A", "2")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(rule_variables(None).is_empty());
        assert!(rule_variables(Some("not json")).is_empty());
    }

    #[test]
    fn a_grant_points_the_sdks_at_the_api_name_and_nothing_else_does() {
        let with =
            r#"{"access_delegation": {"mode": "EXPLICIT", "permissions": ["sandboxes:read"]}}"#;
        let vars = delegation_variables(with);
        assert!(vars.contains(&(
            "LANGSMITH_ENDPOINT".into(),
            "http://sandpit.internal".into()
        )));
        assert!(vars.iter().all(|(k, _)| !k.contains("KEY")));
        assert!(delegation_variables(r#"{"isolation": "namespaces"}"#).is_empty());
        assert!(delegation_variables("not json").is_empty());
    }
}
