//! Resolving and connecting on a sandbox's behalf.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::policy::{Denial, Policy};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Denied(Denial),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Dialer {
    resolve: HashMap<String, SocketAddr>,
}

impl Dialer {
    pub fn new(resolve: HashMap<String, SocketAddr>) -> Self {
        Self { resolve }
    }

    /// Connect to `host:port` (or `ip:port` when there is no host name) as
    /// `policy` allows. Overridden names go where the override says.
    pub async fn dial(
        &self,
        policy: &Policy,
        host: Option<&str>,
        ip: Option<IpAddr>,
        port: u16,
    ) -> Result<TcpStream, DialError> {
        let addr = match (host, ip) {
            (Some(host), _) => self.resolve(policy, host, port).await?,
            (None, Some(ip)) => {
                policy.dial_allowed(ip, port).map_err(DialError::Denied)?;
                SocketAddr::new(ip, port)
            }
            (None, None) => return Err(DialError::Resolve("(no destination)".into())),
        };
        connect(addr).await
    }

    /// Where the proxy connects for `host:port`: the override (trusted
    /// operator configuration), else the name's first address if `policy`
    /// lets the proxy dial it.
    pub async fn resolve(
        &self,
        policy: &Policy,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, DialError> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addr) = self.resolve.get(&key) {
            return Ok(*addr);
        }
        let addr = match key.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((key.as_str(), port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| DialError::Resolve(host.to_owned()))?,
        };
        policy
            .dial_allowed(addr.ip(), addr.port())
            .map_err(DialError::Denied)?;
        Ok(addr)
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, DialError> {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
    let stream = match connecting.await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(DialError::Connect { addr, source }),
        Err(_) => {
            return Err(DialError::Connect {
                addr,
                source: std::io::ErrorKind::TimedOut.into(),
            })
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
