//! What this host lets sandboxes have, probed once when the helper starts.

use std::fs;
use std::path::Path;

use nix::sys::resource::{getrlimit, Resource};

use crate::cgroup;
use crate::oci::{AGENT_OOM_SCORE_ADJ, NOFILE_LIMIT};

/// `CAP_SYS_RESOURCE`: needed to lower an oom score below its floor and to
/// raise a hard rlimit.
const CAP_SYS_RESOURCE: u32 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Memory+swap can be limited per cgroup.
    pub swap_accounting: bool,
    /// The kernel has IPv6 (which the sandbox then switches off).
    pub ipv6: bool,
    /// The agent's oom score, when the helper may set it.
    pub agent_oom_score_adj: Option<i32>,
    /// The sandbox's open-file limit.
    pub nofile: u64,
    /// Sandboxes can have a user namespace with idmapped mounts.
    pub userns: bool,
}

impl HostFacts {
    /// `state_dir`: where the idmapped-mount probe may make directories.
    pub fn probe(state_dir: &Path) -> Self {
        let sys_resource = has_capability(CAP_SYS_RESOURCE);
        if !sys_resource {
            tracing::warn!("no CAP_SYS_RESOURCE: the agent keeps oom_score_adj 0 and the helper's open-file limit");
        }
        Self {
            swap_accounting: cgroup::swap_accounting(),
            ipv6: Path::new("/proc/sys/net/ipv6").exists(),
            agent_oom_score_adj: sys_resource.then_some(AGENT_OOM_SCORE_ADJ),
            nofile: nofile_limit(sys_resource),
            userns: userns(state_dir),
        }
    }
}

/// Without `CAP_SYS_RESOURCE` the limit cannot go above our own hard limit;
/// with it, not above `fs.nr_open`.
fn nofile_limit(sys_resource: bool) -> u64 {
    let ceiling = match sys_resource {
        true => read_u64("/proc/sys/fs/nr_open"),
        false => getrlimit(Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(_, hard)| hard),
    };
    ceiling.map_or(NOFILE_LIMIT, |c| c.min(NOFILE_LIMIT))
}

fn userns(state_dir: &Path) -> bool {
    match crate::idmap::probe(state_dir) {
        Ok(()) => true,
        Err(err) => {
            let err = crate::error::chain(&err);
            tracing::warn!(error = %err, "user namespaces with idmapped mounts are unavailable");
            false
        }
    }
}

fn read_u64(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether capability `bit` is in this process's effective set.
pub fn has_capability(bit: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:"));
    let mask = effective
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << bit) != 0
}
