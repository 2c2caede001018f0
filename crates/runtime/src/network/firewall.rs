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

/// The ruleset, with the table created first so the delete always succeeds.
pub fn ruleset() -> String {
    format!(
        r#"table inet sandpit {{}}
delete table inet sandpit
table inet sandpit {{
	chain input {{
		type filter hook input priority filter; policy accept;
		iifname "{p}*" ct state established,related accept
		iifname "{p}*" reject
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
pub fn apply() -> Result<(), FirewallError> {
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
            .write_all(ruleset().as_bytes())
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
        let rules = ruleset();
        assert!(rules.starts_with("table inet sandpit {}\ndelete table inet sandpit\n"));
        assert!(rules.contains(r#"iifname "spv*" ct state established,related accept"#));
        assert!(rules.contains(r#"iifname "spv*" reject"#));
        assert!(rules.contains(r#"oifname "spv*" reject"#));
    }
}
