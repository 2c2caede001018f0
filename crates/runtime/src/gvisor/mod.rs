//! gVisor as an isolation level (issue 15 part 2).
//!
//! A `gvisor` sandbox is built from the same prepared pieces as a
//! `namespaces` one (overlay root, `/etc` tmpfs, volumes, veth, cgroup), but
//! its processes run on gVisor's user-space kernel (`runsc`, found on
//! `PATH`) instead of the host's: every syscall of sandboxed code is served
//! by the Sentry, itself confined by its own seccomp filter, and files come
//! through the gofer. What differs from the libcontainer path:
//!
//! - the network namespace is made first by a holder process
//!   ([`netns::Holder`]), wired with the veth as usual, and named to runsc in
//!   the OCI spec; runsc runs with `--network=host`, so gVisor uses the
//!   kernel's network stack *of that namespace* (hostinet): the firewall,
//!   the egress redirects, the gateway's sockets to `127.0.0.1:<port>` and
//!   tunnels work unchanged;
//! - the agent cannot inherit its listener (runsc passes no extra fds), so it
//!   binds `unix:/.sandpit-agent/agent.sock` in a small tmpfs that runsc
//!   exposes as a host socket (`--host-uds=create`), and a [`relay`] process
//!   accepts on the usual host socket and forwards each connection to it;
//! - no user namespace of the host kernel (gVisor has its own), no OCI
//!   seccomp (the Sentry implements syscalls itself).

pub mod netns;
pub mod oci;
pub mod relay;
pub mod runsc;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a sandbox's processes are isolated from the host kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Linux namespaces, a cgroup, dropped capabilities, seccomp (and a user
    /// namespace where enabled): sandboxed code talks to the host kernel.
    #[default]
    Namespaces,
    /// gVisor (`runsc`): sandboxed code talks to gVisor's kernel.
    Gvisor,
}

impl Isolation {
    pub const ALL: [Isolation; 2] = [Isolation::Namespaces, Isolation::Gvisor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespaces => "namespaces",
            Self::Gvisor => "gvisor",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| format!("isolation must be \"namespaces\" or \"gvisor\", got {s:?}"))
    }
}

/// Where the agent's socket directory appears inside a gVisor sandbox.
pub const AGENT_DIR: &str = "/.sandpit-agent";
/// The agent's socket in [`AGENT_DIR`] (and in the helper-side tmpfs).
pub const AGENT_SOCKET_NAME: &str = "agent.sock";

/// The agent's arguments under gVisor: `--listen-fd <n>` becomes
/// `--listen unix:<AGENT_DIR>/<AGENT_SOCKET_NAME>` (added when absent).
pub fn agent_args(args: &[String]) -> Vec<String> {
    let listen = [
        "--listen".to_owned(),
        format!("unix:{AGENT_DIR}/{AGENT_SOCKET_NAME}"),
    ];
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--listen-fd" => {
                rest.next();
            }
            a if a.starts_with("--listen-fd=") => {}
            _ => out.push(arg.clone()),
        }
    }
    // After the subcommand (`agent`), when there is one.
    let at = usize::from(out.first().is_some_and(|a| !a.starts_with('-')));
    out.splice(at..at, listen);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_parses_and_prints_its_wire_names() {
        for i in Isolation::ALL {
            assert_eq!(i.as_str().parse::<Isolation>().unwrap(), i);
            let json = serde_json::to_string(&i).unwrap();
            assert_eq!(json, format!("\"{i}\""));
        }
        let err = "kata".parse::<Isolation>().unwrap_err();
        assert!(err.contains("\"kata\""), "{err}");
        assert_eq!(Isolation::default(), Isolation::Namespaces);
    }

    #[test]
    fn the_agent_listens_in_its_directory() {
        let given = ["agent", "--listen-fd", "3", "--workdir", "/w"].map(String::from);
        let args = agent_args(&given);
        assert_eq!(
            args,
            [
                "agent",
                "--listen",
                "unix:/.sandpit-agent/agent.sock",
                "--workdir",
                "/w"
            ]
        );
        let bare = agent_args(&["--workdir".into(), "/w".into()]);
        assert_eq!(bare[..2], ["--listen", "unix:/.sandpit-agent/agent.sock"]);
    }
}
