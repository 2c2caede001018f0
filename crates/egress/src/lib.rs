//! Sandpit's egress proxy: the only way out of a sandbox.
//!
//! The runtime's firewall redirects a sandbox's DNS (UDP 53), HTTP (TCP 80)
//! and HTTPS (TCP 443) to three listeners of this crate and rejects every
//! other packet a sandbox sends to the host or beyond. Then:
//!
//! - [`dns`] answers A queries for names the sandbox's policy allows with one
//!   fixed address ([`SENTINEL`]), or with an alias of the name when a
//!   [`direct`] route takes its HTTPS around the proxy, and refuses the rest
//!   (NXDOMAIN); AAAA gets no answer (IPv6 is off). The sandbox never learns
//!   real addresses.
//! - [`tls`] reads the ClientHello's SNI, checks the policy, and passes the
//!   TLS stream through to the host named there, which the proxy resolves
//!   and dials itself ([`relay`]: `splice(2)` between the two sockets); refused connections get a TLS `access_denied` alert.
//!   When a `proxy_config.rules` entry names the host ([`inject`]),
//!   [`intercept`] terminates TLS instead with a leaf certificate from
//!   Sandpit's CA ([`ca`]), sets the rule's headers on each request (and
//!   signs it for `aws` rules, [`sigv4`], or sets a Google bearer token for
//!   `gcp` rules, [`gcp`]) and forwards it over verified TLS ([`upstream`]).
//! - [`http`] checks each request's `Host` (or absolute URI) and port and
//!   forwards it (never with a rule's header: plain HTTP is clear text), or
//!   answers 403 (421 when the URI and `Host` disagree); it also serves
//!   `CONNECT host:443` for clients that use `HTTPS_PROXY`.
//!
//! Every listener caps what one sandbox may hold ([`limits`]): open
//! connections, DNS queries in flight, and how long a connection may idle.
//!
//! **Invariant:** header values and secrets are never logged.
//!
//! Which sandbox a connection comes from is told by its source address
//! (each sandbox has its own veth /30); [`Lookup`] maps it to the sandbox's
//! [`Policy`]. Resolution honours `--egress-resolve HOST=IP:PORT` overrides
//! (operator configuration, trusted) and otherwise refuses private and
//! reserved addresses unless the policy names them ([`policy`]).

pub mod ca;
pub mod callback;
pub mod delegate;
pub mod dial;
pub mod direct;
pub mod dns;
pub mod gcp;
pub mod http;
pub mod inject;
pub mod intercept;
pub mod limits;
mod live;
pub mod policy;
pub mod prefixed;
pub mod relay;
pub mod sigv4;
pub mod stats;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

pub use ca::Authority;
pub use policy::{Denial, Policy, PolicyError};

/// The address every allowed name resolves to inside a sandbox: connections
/// to it on 80/443 reach the proxy, which dials the real host by name.
pub const SENTINEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// What the proxy needs to know about sandboxes.
pub trait Lookup: Send + Sync + 'static {
    /// The policy of the sandbox at a source address (with its tenant).
    fn policy(&self, source: IpAddr) -> impl Future<Output = Option<Policy>> + Send;
    /// The value of a tenant's workspace secret, read when a request needs it.
    fn secret(&self, tenant: &str, name: &str) -> impl Future<Output = Option<String>> + Send;
    /// The `X-LangSmith-Signature-JWT` of a callback to `aud` whose body
    /// has SHA-256 `body_sha256` (hex).
    fn sign_callback(&self, aud: &str, body_sha256: &str) -> Option<String>;
    /// A count of policy changes (any sandbox's): open connections read
    /// their policy again when it moves, so an update applies to them too.
    fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The `access_delegation` grant of the sandbox `policy` is of, with a
    /// fresh token ([`delegate`]); none: the sandbox may not call the API.
    fn delegation(&self, _policy: &Policy) -> impl Future<Output = Option<delegate::Grant>> + Send {
        async { None }
    }
}

/// What every listener shares.
pub struct Context<L> {
    pub lookup: Arc<L>,
    pub dialer: Arc<dial::Dialer>,
    /// Direct routes (when the firewall takes them).
    pub direct: Option<Arc<direct::Direct>>,
    pub ca: Arc<Authority>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Callback answers, cached for their `ttl_seconds`.
    pub callbacks: callback::Cache,
    /// Google access tokens of `gcp` rules, cached until near expiry.
    pub gcp_tokens: gcp::TokenCache,
    /// Divides callback TTLs and the idle timeouts (tests'
    /// `--test-time-scale`; 1 in production).
    pub time_scale: u32,
    /// Open connections per sandbox and in total ([`limits`]).
    pub connections: Arc<limits::Limit>,
    /// DNS queries in flight per sandbox and in total.
    pub dns_queries: Arc<limits::Limit>,
}

/// Ports the proxy listens on (the firewall redirects to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub tls: u16,
    pub http: u16,
    pub dns: u16,
}

#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub ports: Ports,
    /// Where to connect for a host name instead of resolving it.
    pub resolve: HashMap<String, SocketAddr>,
    /// Signs the certificates of intercepted hosts.
    pub ca: Arc<Authority>,
    /// PEM files of extra roots trusted upstream (`--egress-upstream-ca`).
    pub upstream_ca: Vec<PathBuf>,
    /// Divides callback cache TTLs (1 in production).
    pub time_scale: u32,
    /// Where direct routes are written; none: everything goes through the
    /// proxy.
    pub direct: Option<Arc<dyn direct::DirectTable>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the egress listeners")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
}

/// Why an `--egress-resolve` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("'{0}' is not HOST=IP:PORT")]
    NotHostAddress(String),
    #[error("'{addr}' is not IP:PORT: {source}")]
    NotIpPort {
        addr: String,
        source: std::net::AddrParseError,
    },
}

/// Parse `HOST=IP:PORT` (`--egress-resolve`).
pub fn parse_resolve(spec: &str) -> Result<(String, SocketAddr), ResolveError> {
    let (host, addr) = spec
        .split_once('=')
        .ok_or_else(|| ResolveError::NotHostAddress(spec.to_owned()))?;
    let addr = addr.parse().map_err(|source| ResolveError::NotIpPort {
        addr: addr.to_owned(),
        source,
    })?;
    Ok((host.trim_end_matches('.').to_ascii_lowercase(), addr))
}

/// The running proxy; dropping it stops the listeners.
pub struct Egress {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Egress {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Bind the three listeners on all addresses (the firewall only lets
/// sandbox veths reach them) and serve until the returned handle drops.
pub async fn start<L: Lookup>(config: EgressConfig, lookup: Arc<L>) -> Result<Egress, StartError> {
    let any = IpAddr::from([0, 0, 0, 0]);
    let dialer = Arc::new(dial::Dialer::new(config.resolve));
    let direct = config.direct.map(|table| {
        let changes = lookup.policy_changes();
        Arc::new(direct::Direct::new(table, dialer.clone(), changes))
    });
    let ctx = Arc::new(Context {
        lookup: lookup.clone(),
        dialer,
        direct: direct.clone(),
        ca: config.ca,
        upstream_tls: upstream::client_config(&config.upstream_ca)?,
        callbacks: callback::Cache::default(),
        gcp_tokens: gcp::TokenCache::default(),
        time_scale: config.time_scale,
        connections: limits::Limit::new(
            limits::CONNECTIONS_PER_SANDBOX,
            limits::connections_total(limits::nofile_soft()),
        ),
        dns_queries: limits::Limit::new(limits::DNS_QUERIES_PER_SANDBOX, limits::DNS_QUERIES_TOTAL),
    });
    let tls = tokio::net::TcpListener::bind((any, config.ports.tls)).await?;
    let http = tokio::net::TcpListener::bind((any, config.ports.http)).await?;
    let dns = tokio::net::UdpSocket::bind((any, config.ports.dns)).await?;
    let mut tasks = vec![
        tokio::spawn(tls::serve(tls, ctx.clone())),
        tokio::spawn(http::serve(http, ctx.clone())),
        tokio::spawn(dns::serve(dns, ctx)),
    ];
    if let Some(direct) = direct {
        tasks.push(tokio::spawn(direct.watch(lookup)));
    }
    Ok(Egress { tasks })
}

/// The address a redirected connection was originally sent to. `None`
/// for a connection sent to the proxy itself (an explicit-proxy client,
/// e.g. a pod through a Service: conntrack may still know it, with the
/// listener's own address), whose request names where it goes.
pub(crate) fn original_destination(stream: &tokio::net::TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt::OriginalDst};
    let raw = getsockopt(stream, OriginalDst).ok()?;
    let ip = Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr));
    let dst = SocketAddr::from((ip, u16::from_be(raw.sin_port)));
    (stream.local_addr().ok() != Some(dst)).then_some(dst)
}

/// The destination IP worth checking: none when the sandbox dialed the
/// sentinel or an alias (the name in SNI/Host is what counts then).
pub(crate) fn meaningful_ip(dst: Option<SocketAddr>) -> Option<IpAddr> {
    dst.map(|d| d.ip()).filter(|ip| !direct::is_alias(*ip))
}

/// A [`Lookup`] for unit tests: fixed policies by source address.
#[cfg(test)]
pub(crate) struct Policies(pub HashMap<IpAddr, Policy>);

#[cfg(test)]
impl Lookup for Policies {
    async fn policy(&self, source: IpAddr) -> Option<Policy> {
        self.0.get(&source).cloned()
    }
    async fn secret(&self, _tenant: &str, _name: &str) -> Option<String> {
        None
    }
    fn sign_callback(&self, _aud: &str, _body_sha256: &str) -> Option<String> {
        None
    }
    fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

/// A [`Context`] for unit tests: no overrides, no direct routes, a fresh
/// CA in a temporary directory.
#[cfg(test)]
pub(crate) fn test_context<L: Lookup>(lookup: Arc<L>, time_scale: u32) -> Arc<Context<L>> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sandpit-egress-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let ca = Authority::load_or_create(&dir).expect("test CA");
    let _ = std::fs::remove_dir_all(&dir);
    Arc::new(Context {
        lookup,
        dialer: Arc::new(dial::Dialer::new(HashMap::new())),
        direct: None,
        ca: Arc::new(ca),
        upstream_tls: upstream::client_config(&[]).expect("host trust store"),
        callbacks: callback::Cache::default(),
        gcp_tokens: gcp::TokenCache::default(),
        time_scale,
        connections: limits::Limit::new(limits::CONNECTIONS_PER_SANDBOX, 4096),
        dns_queries: limits::Limit::new(limits::DNS_QUERIES_PER_SANDBOX, 4096),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides_parse() {
        assert_eq!(
            parse_resolve("API.Example.test=127.0.0.1:8443"),
            Ok(("api.example.test".into(), "127.0.0.1:8443".parse().unwrap()))
        );
        assert!(parse_resolve("nohost").is_err());
        assert!(parse_resolve("h=1.2.3.4").is_err());
    }
}
