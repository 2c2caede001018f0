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

/// Conntrack mark of connections the egress redirect let in. It lives in
/// the host's conntrack table, out of a sandbox's reach, and covers every
/// packet of the flow: a resolver's back-to-back A and AAAA queries share
/// one UDP flow before any reply makes it "established".
const EGRESS_MARK: &str = "0x5a9d0001";

/// The ruleset, with the table created first so the delete always succeeds.
pub fn ruleset(egress: Option<EgressPorts>) -> String {
    let (nat, accept) = match egress {
        Some(ports) => (
            format!(
                r#"	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		iifname "{p}*" udp dport 53 ct mark set {m} redirect to :{dns}
		iifname "{p}*" tcp dport 53 reject with tcp reset
		iifname "{p}*" tcp dport 80 ct mark set {m} redirect to :{http}
		iifname "{p}*" tcp dport 443 ct mark set {m} redirect to :{tls}
	}}
"#,
                p = HOST_PREFIX,
                m = EGRESS_MARK,
                dns = ports.dns,
                http = ports.http,
                tls = ports.tls,
            ),
            format!("\t\tiifname \"{HOST_PREFIX}*\" ct mark {EGRESS_MARK} accept\n"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"table inet sandpit {{}}
delete table inet sandpit
table inet sandpit {{
{nat}	chain input {{
		type filter hook input priority filter; policy accept;
		iifname "{p}*" ct state established,related accept
{accept}		iifname "{p}*" reject
	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
		iifname "{p}*" reject
		oifname "{p}*" reject
	}}
}}
"#,
        p = HOST_PREFIX
    )
}

/// Installs (or replaces) the ruleset.
pub fn apply(egress: Option<EgressPorts>) -> Result<(), FirewallError> {
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
            .write_all(ruleset(egress).as_bytes())
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
        assert!(rules.contains("udp dport 53 ct mark set 0x5a9d0001 redirect to :15053"));
        assert!(rules.contains("tcp dport 80 ct mark set 0x5a9d0001 redirect to :15080"));
        assert!(rules.contains("tcp dport 443 ct mark set 0x5a9d0001 redirect to :15443"));
        let accept = rules.find("ct mark 0x5a9d0001 accept").unwrap();
        let reject = rules.find("iifname \"spv*\" reject").unwrap();
        assert!(accept < reject, "the accept must come before the reject");
        assert!("1,2".parse::<EgressPorts>().is_err());
    }
}
