//! The host firewall that keeps sandboxes off host ports and off each other.
//!
//! One `inet sandpit` nftables table, replaced atomically whenever the helper
//! starts: traffic entering the host from a sandbox's veth (`spv*`) is
//! rejected unless it answers a connection the host opened, and nothing is
//! forwarded to or from a veth, so a sandbox reaches neither the host's
//! services (on any of its addresses) nor another sandbox, nor the outside
//! (an egress proxy will open that later). Rejecting rather than dropping
//! makes a blocked connect fail at once instead of after a timeout.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use super::HOST_PREFIX;

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("nft not found (install nftables)")]
    NftMissing,
    #[error("failed to run nft")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected the sandpit ruleset: {0}")]
    Rejected(String),
}

/// Where the egress proxy listens on the host: sandbox DNS (UDP 53), HTTP
/// (TCP 80) and HTTPS (TCP 443) are redirected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressPorts {
    pub tls: u16,
    pub http: u16,
    pub dns: u16,
}

impl std::fmt::Display for EgressPorts {
    /// `TLS,HTTP,DNS`, as `--egress-ports` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.tls, self.http, self.dns)
    }
}

impl std::str::FromStr for EgressPorts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ports: Vec<u16> = s
            .split(',')
            .map(|p| p.trim().parse::<u16>().map_err(|e| format!("'{p}': {e}")))
            .collect::<Result<_, _>>()?;
        match ports.as_slice() {
            [tls, http, dns] => Ok(Self {
                tls: *tls,
                http: *http,
                dns: *dns,
            }),
            _ => Err(format!("'{s}' is not TLS,HTTP,DNS")),
        }
    }
}

/// Conntrack mark of connections the egress redirect let in (HTTP and
/// HTTPS). It lives in the host's conntrack table, out of a sandbox's
/// reach, and covers every packet of the flow.
///
/// DNS is not tracked at all: every query may come from a new source
/// port, and one sandbox sending thousands of them would fill the
/// host-wide conntrack table (new flows are then dropped host-wide). So
/// the `dns_in` chain (raw priority, before conntrack) marks UDP 53 from
/// a veth `notrack` and rewrites its port to the proxy's DNS port
/// (stateless: a redirect would need conntrack), the `input` chain lets
/// exactly those untracked packets in, and `dns_out` rewrites the
/// answer's source port back to 53. The sandbox's resolver is the host
/// end of its veth, so the answer comes from the address it asked.
const EGRESS_MARK: &str = "0x5a9d0001";
/// Conntrack mark of connections on a direct route ([`DirectRoute`]).
const DIRECT_MARK: &str = "0x5a9d0002";
/// The set of `sandbox address . alias` pairs with a direct route, checked
/// on every packet of a direct connection: removing a pair cuts its open
/// connections too.
const DIRECT_KEYS: &str = "direct_keys";
/// `sandbox address . alias` → `target address . port`.
const DIRECT_NAT: &str = "direct_nat";

/// A route that takes a sandbox's HTTPS to one host around the egress
/// proxy: TCP 443 from `sandbox` to `alias` (the address Sandpit's DNS
/// answered for the host's name) is sent by NAT to `target`. The egress
/// crate decides when that is allowed; this only writes it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirectRoute {
    pub sandbox: Ipv4Addr,
    pub alias: Ipv4Addr,
    pub target: SocketAddrV4,
}

/// The ruleset, with the table created first so the delete always succeeds.
pub fn ruleset(egress: Option<EgressPorts>) -> String {
    let p = HOST_PREFIX;
    let (nat, direct, accept, forward) = match egress {
        Some(ports) => (
            format!(
                r#"	set {DIRECT_KEYS} {{
		type ipv4_addr . ipv4_addr;
	}}
	map {DIRECT_NAT} {{
		type ipv4_addr . ipv4_addr : ipv4_addr . inet_service;
	}}
	chain dns_in {{
		type filter hook prerouting priority raw; policy accept;
		iifname "{p}*" udp dport 53 notrack udp dport set {dns}
	}}
	chain dns_out {{
		type filter hook output priority raw; policy accept;
		oifname "{p}*" udp sport {dns} notrack udp sport set 53
	}}
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		iifname "{p}*" tcp dport 53 reject with tcp reset
		iifname "{p}*" tcp dport 80 ct mark set {m} redirect to :{http}
		iifname "{p}*" tcp dport 443 ip saddr . ip daddr @{DIRECT_KEYS} ct mark set {d} dnat ip to ip saddr . ip daddr map @{DIRECT_NAT}
		iifname "{p}*" tcp dport 443 ct mark set {m} redirect to :{tls}
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ct mark {d} oifname != "{p}*" masquerade
	}}
"#,
                m = EGRESS_MARK,
                d = DIRECT_MARK,
                dns = ports.dns,
                http = ports.http,
                tls = ports.tls,
            ),
            format!(
                "\t\tiifname \"{p}*\" ct mark {DIRECT_MARK} ip saddr . ct original ip daddr @{DIRECT_KEYS} accept\n\
                 \t\tiifname \"{p}*\" ct mark {DIRECT_MARK} reject with tcp reset\n"
            ),
            format!(
                "\t\tiifname \"{p}*\" ct mark {EGRESS_MARK} accept\n\
                 \t\tiifname \"{p}*\" ct state untracked udp dport {} accept\n",
                ports.dns
            ),
            format!("\t\toifname \"{p}*\" ct mark {DIRECT_MARK} ct state established accept\n"),
        ),
        None => Default::default(),
    };
    format!(
        r#"table inet sandpit {{}}
delete table inet sandpit
table inet sandpit {{
{nat}	chain input {{
		type filter hook input priority filter; policy accept;
{direct}		iifname "{p}*" ct state established,related accept
{accept}		iifname "{p}*" reject
	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
{direct}{forward}		iifname "{p}*" reject
		oifname "{p}*" reject
	}}
}}
"#
    )
}

/// Installs (or replaces) the ruleset.
pub fn apply(egress: Option<EgressPorts>) -> Result<(), FirewallError> {
    run(&ruleset(egress))
}

/// Adds and removes direct routes, in one transaction. Removing a route
/// ends its open connections (their next packet is answered with a reset).
pub fn update_direct(add: &[DirectRoute], remove: &[DirectRoute]) -> Result<(), FirewallError> {
    run(&direct_script(add, remove))
}

fn direct_script(add: &[DirectRoute], remove: &[DirectRoute]) -> String {
    let mut script = String::new();
    for r in remove {
        let key = format!("{} . {}", r.sandbox, r.alias);
        script += &format!("delete element inet sandpit {DIRECT_KEYS} {{ {key} }}\n");
        script += &format!("delete element inet sandpit {DIRECT_NAT} {{ {key} }}\n");
    }
    for r in add {
        let key = format!("{} . {}", r.sandbox, r.alias);
        let target = format!("{} . {}", r.target.ip(), r.target.port());
        script += &format!("add element inet sandpit {DIRECT_NAT} {{ {key} : {target} }}\n");
        script += &format!("add element inet sandpit {DIRECT_KEYS} {{ {key} }}\n");
    }
    script
}

/// Runs an `nft` script as one transaction.
fn run(script: &str) -> Result<(), FirewallError> {
    let nft = find_nft().ok_or(FirewallError::NftMissing)?;
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(FirewallError::Spawn)?;
    match output.status.success() {
        true => Ok(()),
        false => Err(FirewallError::Rejected(
            String::from_utf8_lossy(&output.stderr).trim().into(),
        )),
    }
}

fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_replaces_the_table_and_matches_sandbox_veths() {
        let rules = ruleset(None);
        assert!(rules.starts_with("table inet sandpit {}\ndelete table inet sandpit\n"));
        assert!(rules.contains(r#"iifname "spv*" ct state established,related accept"#));
        assert!(rules.contains(r#"iifname "spv*" reject"#));
        assert!(rules.contains(r#"oifname "spv*" reject"#));
        assert!(!rules.contains("redirect"));
    }

    #[test]
    fn egress_redirects_dns_http_and_https_and_lets_only_those_in() {
        let ports: EgressPorts = "15443,15080,15053".parse().unwrap();
        assert_eq!(ports.to_string(), "15443,15080,15053");
        let rules = ruleset(Some(ports));
        // DNS stays out of conntrack: rewritten statelessly both ways.
        assert!(rules.contains("udp dport 53 notrack udp dport set 15053"));
        assert!(rules.contains("oifname \"spv*\" udp sport 15053 notrack udp sport set 53"));
        assert!(!rules.contains("redirect to :15053"));
        let raw = rules
            .find("type filter hook prerouting priority raw")
            .unwrap();
        assert!(raw < rules.find("udp dport 53 notrack").unwrap());
        let untracked = rules
            .find("ct state untracked udp dport 15053 accept")
            .unwrap();
        let reject = rules.find("iifname \"spv*\" reject").unwrap();
        assert!(untracked < reject);
        assert!(rules.contains("tcp dport 80 ct mark set 0x5a9d0001 redirect to :15080"));
        assert!(rules.contains("tcp dport 443 ct mark set 0x5a9d0001 redirect to :15443"));
        let accept = rules.find("ct mark 0x5a9d0001 accept").unwrap();
        let reject = rules.find("iifname \"spv*\" reject").unwrap();
        assert!(accept < reject, "the accept must come before the reject");
        assert!("1,2".parse::<EgressPorts>().is_err());
    }

    #[test]
    fn direct_routes_nat_only_their_pairs_and_are_checked_on_every_packet() {
        let rules = ruleset(Some("15443,15080,15053".parse().unwrap()));
        let direct = rules
            .find("ip saddr . ip daddr @direct_keys ct mark set 0x5a9d0002 dnat ip to ip saddr . ip daddr map @direct_nat")
            .unwrap();
        let redirect = rules.find("tcp dport 443 ct mark set 0x5a9d0001").unwrap();
        assert!(direct < redirect, "a direct route goes before the proxy");
        // Input and forward both check the pair before anything accepts.
        let checks: Vec<_> = rules
            .match_indices("ct mark 0x5a9d0002 ip saddr . ct original ip daddr @direct_keys accept")
            .collect();
        assert_eq!(checks.len(), 2);
        assert!(checks[0].0 < rules.find("ct state established,related accept").unwrap());
        assert!(rules.contains("ct mark 0x5a9d0002 oifname != \"spv*\" masquerade"));
        assert!(!ruleset(None).contains("direct"));
    }

    #[test]
    fn direct_updates_remove_before_they_add() {
        let route = DirectRoute {
            sandbox: "10.200.0.2".parse().unwrap(),
            alias: "198.18.0.7".parse().unwrap(),
            target: "10.253.254.1:8443".parse().unwrap(),
        };
        let script = direct_script(&[route], &[route]);
        assert_eq!(
            script,
            "delete element inet sandpit direct_keys { 10.200.0.2 . 198.18.0.7 }\n\
             delete element inet sandpit direct_nat { 10.200.0.2 . 198.18.0.7 }\n\
             add element inet sandpit direct_nat { 10.200.0.2 . 198.18.0.7 : 10.253.254.1 . 8443 }\n\
             add element inet sandpit direct_keys { 10.200.0.2 . 198.18.0.7 }\n"
        );
    }
}
