//! The OCI spec of a gVisor sandbox: the libcontainer one ([`crate::oci`]),
//! adjusted for runsc.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Spec};

use super::AGENT_DIR;

/// Mounts runsc does not take from the spec: gVisor has no POSIX message
/// queue file system in this version.
const DROPPED_MOUNTS: &[&str] = &["/dev/mqueue"];

/// Adjusts `spec` for runsc: the network namespace at `netns` is joined
/// (not created), no user or cgroup namespace of the host kernel, no
/// seccomp, masked paths or sysctls (the Sentry serves syscalls, `/proc` and
/// `/sys` itself; IPv6 is switched off in `netns` by its holder), and the
/// helper-side directory `agent_dir` is bound at [`AGENT_DIR`].
pub fn adapt(mut spec: Spec, netns: &Path, agent_dir: &Path) -> Spec {
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces(netns)));
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
        linux.set_seccomp(None);
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        linux.set_sysctl(None);
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| {
        !DROPPED_MOUNTS
            .iter()
            .any(|d| m.destination() == Path::new(d))
    });
    // Before the agent's own bind, which stays last.
    let at = mounts.len().saturating_sub(1);
    mounts.insert(at, agent_dir_mount(agent_dir));
    spec.set_mounts(Some(mounts));
    spec
}

fn namespaces(netns: &Path) -> Vec<LinuxNamespace> {
    use LinuxNamespaceType::*;
    [Pid, Mount, Ipc, Uts, Network]
        .into_iter()
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            if typ == Network {
                ns.set_path(Some(netns.to_path_buf()));
            }
            ns
        })
        .collect()
}

fn agent_dir_mount(source: &Path) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(AGENT_DIR));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(
        ["rbind", "nosuid", "nodev", "noexec"]
            .map(String::from)
            .to_vec(),
    ));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Spec {
        let mut spec = Spec::default();
        spec.set_linux(Some(oci_spec::runtime::Linux::default()));
        let mut agent = Mount::default();
        agent.set_destination("/.sandpit/sandpit".into());
        let mut mqueue = Mount::default();
        mqueue.set_destination("/dev/mqueue".into());
        let mut proc = Mount::default();
        proc.set_destination("/proc".into());
        spec.set_mounts(Some(vec![proc, mqueue, agent]));
        spec
    }

    #[test]
    fn joins_the_holders_namespace_without_seccomp_or_userns() {
        let spec = adapt(
            base(),
            Path::new("/proc/42/ns/net"),
            Path::new("/s/mnt/agent"),
        );
        let linux = spec.linux().clone().unwrap();
        let ns = linux.namespaces().clone().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(net.path().clone().unwrap(), Path::new("/proc/42/ns/net"));
        assert!(!ns.iter().any(|n| matches!(
            n.typ(),
            LinuxNamespaceType::User | LinuxNamespaceType::Cgroup
        )));
        assert!(linux.seccomp().is_none());
        assert!(linux.uid_mappings().is_none());
        assert!(linux.sysctl().is_none());
    }

    #[test]
    fn binds_the_agent_dir_and_keeps_the_agent_last() {
        let spec = adapt(
            base(),
            Path::new("/proc/42/ns/net"),
            Path::new("/s/mnt/agent"),
        );
        let dests: Vec<_> = spec
            .mounts()
            .clone()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        let dests: Vec<_> = dests.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(dests, ["/proc", AGENT_DIR, "/.sandpit/sandpit"]);
    }
}
