//! Egress policy: `proxy_config.access_control` of a sandbox.
//!
//! Entries are exact domains (`api.example.com`), globs (`*.example.com`:
//! `*` matches any run of characters, dots included, so it matches every
//! subdomain but not the bare domain), IP addresses, CIDRs, and `~regex`
//! (matched case-insensitively against the host name). A destination is
//! denied when a `deny_list` entry matches its host name or address; when an
//! `allow_list` is given, it must also match one of its entries.
//!
//! An entry may name a port (`api.example.com:8080`, `127.0.0.1:8080`,
//! `[::1]:8080`; not a `~regex`): it then matches that port only. Without a
//! port an allow entry (and the default policy, with no allow list)
//! reaches ports 80 and 443 only; any other port needs an allow entry that
//! names it. A deny entry without a port denies every port.
//!
//! Private, loopback, link-local (cloud metadata included), CGNAT and other
//! special-purpose addresses are refused after resolution unless an IP or
//! CIDR entry of the allow list names them explicitly (see [`Policy::dial_allowed`]).

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use sandpit_api::proxy_config::{ParseError, ProxyConfig};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not the shape of a `proxy_config` (a JSON type is wrong).
    #[error(transparent)]
    Shape(#[from] ParseError),
    #[error("invalid access_control entry '{}': {}", .0.entry, .0.reason)]
    BadEntry(#[from] EntryError),
    #[error(transparent)]
    Rules(#[from] crate::inject::RulesError),
}

/// Why an access-list, `no_proxy` or `match_hosts` entry is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("'{entry}': {reason}")]
pub struct EntryError {
    pub entry: String,
    pub reason: String,
}

/// `^glob$` where `*` matches any run of characters and `?` one.
pub(crate) fn glob_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Glob(Regex),
    Ip(IpAddr),
    Cidr(IpNet),
    Regex(Regex),
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Pattern {
    pub fn parse(entry: &str) -> Result<Self, EntryError> {
        let bad = |reason: String| EntryError {
            entry: entry.to_owned(),
            reason,
        };
        let entry_trimmed = entry.trim();
        if entry_trimmed.is_empty() {
            return Err(bad("empty".into()));
        }
        if let Some(re) = entry_trimmed.strip_prefix('~') {
            return Regex::new(&format!("(?i){re}"))
                .map(Pattern::Regex)
                .map_err(|e| bad(e.to_string()));
        }
        if let Ok(ip) = entry_trimmed.parse::<IpAddr>() {
            return Ok(Pattern::Ip(ip));
        }
        if entry_trimmed.contains('/') {
            return entry_trimmed
                .parse::<IpNet>()
                .map(|n| Pattern::Cidr(n.trunc()))
                .map_err(|e| bad(e.to_string()));
        }
        let host = normalize_host(entry_trimmed);
        let valid = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?'));
        if !valid {
            return Err(bad("not a host name, glob, IP, CIDR or ~regex".into()));
        }
        if host.contains(['*', '?']) {
            return glob_regex(&host)
                .map(Pattern::Glob)
                .map_err(|e| bad(e.to_string()));
        }
        Ok(Pattern::Exact(host))
    }

    pub(crate) fn matches(&self, host: Option<&str>, ip: Option<IpAddr>) -> bool {
        match (self, host, ip) {
            (Pattern::Exact(h), Some(host), _) => *h == normalize_host(host),
            (Pattern::Glob(re), Some(host), _) => re.is_match(&normalize_host(host)),
            (Pattern::Regex(re), Some(host), _) => re.is_match(&normalize_host(host)),
            (Pattern::Ip(p), _, Some(ip)) => *p == ip,
            (Pattern::Cidr(net), _, Some(ip)) => net.contains(&ip),
            // A host name that is an address literal matches IP entries too.
            (Pattern::Ip(_) | Pattern::Cidr(_), Some(host), None) => host
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.matches(None, Some(ip))),
            _ => false,
        }
    }
}

/// An access-list entry: a pattern, and the one port it is for, if any.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pattern: Pattern,
    pub port: Option<u16>,
}

/// The ports an entry without a port (and the default policy) reaches.
pub const STANDARD_PORTS: [u16; 2] = [80, 443];

impl Entry {
    /// `PATTERN` or `PATTERN:PORT` (`[IPv6]:PORT`); a `~regex` has no port.
    pub fn parse(entry: &str) -> Result<Self, EntryError> {
        let trimmed = entry.trim();
        let whole = |pattern| Self {
            pattern,
            port: None,
        };
        if trimmed.starts_with('~') || trimmed.parse::<IpAddr>().is_ok() {
            return Pattern::parse(trimmed).map(whole);
        }
        let Some((pattern, port)) = trimmed.rsplit_once(':') else {
            return Pattern::parse(trimmed).map(whole);
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| EntryError {
                entry: entry.to_owned(),
                reason: format!("'{port}' is not a port"),
            })?;
        let pattern = pattern
            .strip_prefix('[')
            .and_then(|p| p.strip_suffix(']'))
            .unwrap_or(pattern);
        Ok(Self {
            pattern: Pattern::parse(pattern)?,
            port: Some(port),
        })
    }

    /// Whether this allow entry lets `port` through (`None`: some port).
    fn allows_port(&self, port: Option<u16>) -> bool {
        match (self.port, port) {
            (_, None) => true,
            (None, Some(p)) => STANDARD_PORTS.contains(&p),
            (Some(mine), Some(p)) => mine == p,
        }
    }

    /// Whether this deny entry covers `port` (`None`: the name as a
    /// whole, which only an entry without a port denies).
    fn denies_port(&self, port: Option<u16>) -> bool {
        match (self.port, port) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(p)) => mine == p,
        }
    }
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    DenyList(String),
    NotAllowed,
    PrivateAddress(IpAddr),
    /// A port no allow entry names (only 80 and 443 need none).
    Port(u16),
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::DenyList(what) => write!(f, "{what} is on the deny list"),
            Denial::NotAllowed => f.write_str("destination is not on the allow list"),
            Denial::PrivateAddress(ip) => write!(f, "{ip} is a private or reserved address"),
            Denial::Port(port) => write!(
                f,
                "port {port} is not allowed (only 80 and 443 unless an allow_list entry names the port)"
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
    /// Header injection (`rules`, `no_proxy`).
    pub rules: std::sync::Arc<crate::inject::Rules>,
    /// The tenant whose workspace secrets the rules may use.
    pub tenant: Option<String>,
    /// The sandbox this policy is of (named to callbacks).
    pub sandbox: Option<String>,
}

fn entries(list: Option<&Vec<String>>) -> Result<Vec<Entry>, EntryError> {
    list.into_iter()
        .flatten()
        .map(|e| Entry::parse(e))
        .collect()
}

impl Policy {
    /// The validated policy of a `proxy_config` (none: allow all public
    /// destinations).
    pub fn from_config(config: Option<&ProxyConfig>) -> Result<Self, PolicyError> {
        let Some(config) = config else {
            return Ok(Policy::default());
        };
        let access = config.access_control.as_ref();
        Ok(Policy {
            allow: entries(access.and_then(|a| a.allow_list.as_ref()))?,
            deny: entries(access.and_then(|a| a.deny_list.as_ref()))?,
            rules: std::sync::Arc::new(crate::inject::Rules::from_config(config)?),
            tenant: None,
            sandbox: None,
        })
    }

    /// The policy of a stored `proxy_config` as JSON: parsed into the wire
    /// type, then validated.
    pub fn from_proxy_config(config: Option<&Value>) -> Result<Self, PolicyError> {
        let config = config
            .filter(|c| !c.is_null())
            .map(ProxyConfig::from_value)
            .transpose()?;
        Self::from_config(config.as_ref())
    }

    /// The same policy, using `tenant`'s workspace secrets.
    pub fn for_tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_owned());
        self
    }

    /// The same policy, of sandbox `id`.
    pub fn for_sandbox(mut self, id: &str) -> Self {
        self.sandbox = Some(id.to_owned());
        self
    }

    /// Whether every name is allowed (no allow or deny list): then the
    /// policy has nothing to say about a TLS stream's SNI.
    pub fn permits_every_name(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// May the sandbox reach `host` (a name, if known) at `ip` (if known)
    /// on `port`?
    pub fn check_port(
        &self,
        host: Option<&str>,
        ip: Option<IpAddr>,
        port: u16,
    ) -> Result<(), Denial> {
        self.check_at(host, ip, Some(port))
    }

    /// May the sandbox reach `host` on some port? (Whether its name
    /// resolves: a deny entry naming one port does not hide it.)
    pub fn check_name(&self, host: &str) -> Result<(), Denial> {
        self.check_at(Some(host), None, None)
    }

    fn check_at(
        &self,
        host: Option<&str>,
        ip: Option<IpAddr>,
        port: Option<u16>,
    ) -> Result<(), Denial> {
        let denied = |e: &Entry| e.denies_port(port) && e.pattern.matches(host, ip);
        if self.deny.iter().any(denied) {
            let what = host.map(str::to_owned).or(ip.map(|i| i.to_string()));
            return Err(Denial::DenyList(what.unwrap_or_default()));
        }
        let allowed = |e: &Entry| e.allows_port(port) && e.pattern.matches(host, ip);
        let standard = port.is_none_or(|p| STANDARD_PORTS.contains(&p));
        if self.allow.is_empty() && !standard {
            return Err(Denial::Port(port.unwrap_or_default()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(allowed) {
            let other_port = self.allow.iter().any(|e| e.pattern.matches(host, ip));
            return Err(match (other_port, port) {
                (true, Some(port)) => Denial::Port(port),
                _ => Denial::NotAllowed,
            });
        }
        Ok(())
    }

    /// May the proxy connect to `ip` (the resolved address) on `port`?
    /// Reserved ranges only when an IP/CIDR allow entry names them (and
    /// the port), and the deny list applies to addresses too.
    pub fn dial_allowed(&self, ip: IpAddr, port: u16) -> Result<(), Denial> {
        let port = Some(port);
        if self
            .deny
            .iter()
            .any(|e| e.denies_port(port) && e.pattern.matches(None, Some(ip)))
        {
            return Err(Denial::DenyList(ip.to_string()));
        }
        if is_reserved(ip) {
            let named = self.allow.iter().any(|e| {
                matches!(e.pattern, Pattern::Ip(_) | Pattern::Cidr(_))
                    && e.allows_port(port)
                    && e.pattern.matches(None, Some(ip))
            });
            if !named {
                return Err(Denial::PrivateAddress(ip));
            }
        }
        Ok(())
    }
}

/// Addresses a sandbox must not reach by default.
pub fn is_reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_reserved(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy::from_proxy_config(Some(&json!({
            "access_control": {"allow_list": allow, "deny_list": deny}
        })))
        .unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn no_access_control_allows_public_destinations() {
        let p = Policy::from_proxy_config(Some(&json!({"rules": []}))).unwrap();
        assert!(p.check_port(Some("example.com"), None, 443).is_ok());
        assert!(Policy::from_proxy_config(None)
            .unwrap()
            .check_port(None, ip("1.1.1.1"), 443)
            .is_ok());
    }

    #[test]
    fn each_entry_kind_matches_what_it_says() {
        let p = policy(
            &[
                "api.example.com",
                "*.svc.test",
                "203.0.113.7",
                "198.51.100.0/24",
                "~^v[0-9]+\\.models\\.test$",
            ],
            &[],
        );
        assert!(p.check_port(Some("API.example.com."), None, 443).is_ok());
        assert!(p.check_port(Some("other.example.com"), None, 443).is_err());
        assert!(p.check_port(Some("a.svc.test"), None, 443).is_ok());
        assert!(p.check_port(Some("a.b.svc.test"), None, 443).is_ok());
        assert!(p.check_port(Some("svc.test"), None, 443).is_err());
        assert!(p.check_port(None, ip("203.0.113.7"), 443).is_ok());
        assert!(p.check_port(Some("203.0.113.7"), None, 443).is_ok());
        assert!(p.check_port(None, ip("203.0.113.8"), 443).is_err());
        assert!(p.check_port(None, ip("198.51.100.200"), 443).is_ok());
        assert!(p.check_port(Some("v2.models.test"), None, 443).is_ok());
        assert!(p.check_port(Some("vx.models.test"), None, 443).is_err());
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(&["*.example.com"], &["secret.example.com", "10.0.0.0/8"]);
        assert_eq!(
            p.check_port(Some("secret.example.com"), None, 443),
            Err(Denial::DenyList("secret.example.com".into()))
        );
        assert!(p.check_port(Some("ok.example.com"), None, 443).is_ok());
        assert!(p.dial_allowed("10.1.2.3".parse().unwrap(), 443).is_err());
        let only_deny = policy(&[], &["*.bad.test"]);
        assert!(only_deny.check_port(Some("x.bad.test"), None, 443).is_err());
        assert!(only_deny.check_port(Some("good.test"), None, 443).is_ok());
    }

    #[test]
    fn reserved_addresses_need_an_explicit_ip_entry() {
        let p = policy(&[], &[]);
        for addr in [
            "127.0.0.1",
            "10.200.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                p.dial_allowed(addr.parse().unwrap(), 443).is_err(),
                "{addr}"
            );
        }
        assert!(p
            .dial_allowed("93.184.216.34".parse().unwrap(), 443)
            .is_ok());
        let lan = policy(&["192.168.1.0/24"], &[]);
        assert!(lan
            .dial_allowed("192.168.1.9".parse().unwrap(), 443)
            .is_ok());
        let by_name = policy(&["metadata.internal"], &[]);
        assert!(by_name
            .dial_allowed("169.254.169.254".parse().unwrap(), 443)
            .is_err());
    }

    #[test]
    fn only_80_and_443_unless_an_allow_entry_names_the_port() {
        // The default policy: any public name, standard ports only.
        let open = Policy::default();
        assert!(open.check_port(Some("a.test"), None, 80).is_ok());
        assert!(open.check_port(Some("a.test"), None, 443).is_ok());
        assert_eq!(
            open.check_port(Some("a.test"), None, 8080),
            Err(Denial::Port(8080))
        );
        // An address allowed without a port: still 80 only (the finding:
        // `Host: 127.0.0.1:<port>` reached any host port).
        let lo = policy(&["127.0.0.1"], &[]);
        assert!(lo.check_port(Some("127.0.0.1"), None, 80).is_ok());
        assert!(lo.dial_allowed("127.0.0.1".parse().unwrap(), 80).is_ok());
        assert_eq!(
            lo.check_port(Some("127.0.0.1"), None, 22),
            Err(Denial::Port(22))
        );
        assert!(lo.dial_allowed("127.0.0.1".parse().unwrap(), 22).is_err());
        // Entries that name a port match that port only.
        let ported = policy(&["127.0.0.1:8080", "api.test:8443", "[::1]:9000"], &[]);
        assert!(ported.check_port(Some("127.0.0.1"), None, 8080).is_ok());
        assert!(ported
            .dial_allowed("127.0.0.1".parse().unwrap(), 8080)
            .is_ok());
        assert!(ported.check_port(Some("127.0.0.1"), None, 80).is_err());
        assert!(ported
            .dial_allowed("127.0.0.1".parse().unwrap(), 80)
            .is_err());
        assert!(ported.check_port(Some("api.test"), None, 8443).is_ok());
        assert!(ported.check_port(Some("api.test"), None, 443).is_err());
        assert!(ported.check_port(None, ip("::1"), 9000).is_ok());
        // Its name resolves (DNS does not know the port).
        assert!(ported.check_name("api.test").is_ok());
        assert!(ported.check_name("other.test").is_err());
        // A deny entry with a port denies that port, not the name.
        let deny = policy(&[], &["api.test:80", "gone.test"]);
        assert!(deny.check_port(Some("api.test"), None, 80).is_err());
        assert!(deny.check_port(Some("api.test"), None, 443).is_ok());
        assert!(deny.check_name("api.test").is_ok());
        assert!(deny.check_name("gone.test").is_err());
        assert!(deny.check_port(Some("gone.test"), None, 443).is_err());
    }

    #[test]
    fn bad_entries_are_rejected_with_the_entry() {
        for entry in [
            "",
            "~(unclosed",
            "10.0.0.0/33",
            "bad host!",
            "a b",
            "a.test:x",
            "a.test:0",
            "a.test:99999",
            ":80",
        ] {
            let err = Policy::from_proxy_config(Some(
                &json!({"access_control": {"allow_list": [entry]}}),
            ))
            .unwrap_err();
            assert!(matches!(err, PolicyError::BadEntry(_)), "{entry}: {err:?}");
        }
        let err = Policy::from_proxy_config(Some(&json!({"access_control": {"deny_list": "x"}})))
            .unwrap_err();
        assert!(matches!(err, PolicyError::Shape(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("proxy_config.access_control.deny_list: "),
            "{err}"
        );
    }
}
