//! The OCI runtime spec (config.json) libcontainer builds a sandbox from.
//!
//! Everything here is a pure function of the sandbox spec and the paths the
//! helper prepared, so which mounts, namespaces, capabilities and limits a
//! sandbox gets is unit-tested without root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    get_default_maskedpaths, get_default_readonly_paths, Capability, Linux, LinuxCapabilities,
    LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, PosixRlimitBuilder,
    PosixRlimitType, Process, Root, Spec, User,
};
use thiserror::Error;

use crate::rootfs::EtcFiles;
use crate::spec::SandboxSpec;
use crate::{cgroup, seccomp};

/// Where the agent binary appears inside the sandbox.
pub const AGENT_PATH: &str = "/.sandpit/sandpit";
/// The agent survives a memory-cgroup OOM unless it is the only choice; it
/// resets the commands it starts to 0.
pub const AGENT_OOM_SCORE_ADJ: i32 = -998;
/// The largest open-file limit (`RLIMIT_NOFILE`, soft = hard) a sandbox
/// process gets; no process in a sandbox may raise it (no
/// `CAP_SYS_RESOURCE`).
pub const NOFILE_LIMIT: u64 = 65_536;
/// The smallest: the traditional default.
pub const MIN_NOFILE: u64 = 1024;
/// Open files one sandbox may hold across its processes. The limit is per
/// process, so each gets this divided by the sandbox's pids limit (between
/// [`MIN_NOFILE`] and [`NOFILE_LIMIT`]): 4096 at the default 1024 pids.
/// Every open file is also charged to the sandbox's memory cgroup.
pub const SANDBOX_FILES: u64 = 1 << 22;

/// The open-file limit of every process in a sandbox with `pids` tasks at
/// most (0: unlimited), never above `ceiling` (what the host allows).
pub fn nofile(pids: u64, ceiling: u64) -> u64 {
    let share = match pids {
        0 => MIN_NOFILE,
        n => SANDBOX_FILES / n,
    };
    share.clamp(MIN_NOFILE, NOFILE_LIMIT).min(ceiling)
}

/// Docker's default capabilities minus `NET_RAW` (raw sockets, spoofing),
/// `MKNOD` (device nodes) and `AUDIT_WRITE` (the host's audit log; audit
/// messages from a pid namespace other than the host's are refused anyway):
/// enough for the agent, as root, to switch users and manage files it does
/// not own.
pub const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
];

#[derive(Debug, Error)]
pub enum OciError {
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    #[error("invalid OCI spec")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// A bind mount as the container sees it, after the helper resolved every
/// [`crate::MountSpec`] to a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// What the spec is built from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub sandbox: &'a SandboxSpec,
    /// The mounted overlay root.
    pub rootfs: &'a Path,
    /// The sandbox's extra mounts, resolved, in order.
    pub binds: &'a [BindMount],
    /// Where the agent binary is bound from (the sandbox spec's
    /// `agent_binary`, or the same file seen through an overlay that hides
    /// its host path).
    pub agent: &'a Path,
    pub etc: &'a EtcFiles,
    /// The host accounts swap per cgroup (see [`cgroup::swap_accounting`]).
    pub swap_accounting: bool,
    /// The kernel has IPv6 (so it must be switched off in the sandbox).
    pub ipv6: bool,
    /// The agent's oom score ([`AGENT_OOM_SCORE_ADJ`] where the host
    /// allows it).
    pub oom_score_adj: Option<i32>,
    /// The highest open-file limit the host allows ([`NOFILE_LIMIT`] where
    /// it can); see [`nofile`].
    pub nofile: u64,
    /// The agent installs the seccomp filter itself, from
    /// [`crate::agent_socket::FILTER_FD`] (`--seccomp-fd`), instead of the
    /// spec carrying the profile for the runtime to compile.
    pub agent_seccomp: bool,
}

/// Builds the OCI spec for one sandbox.
pub fn build(inputs: &Inputs<'_>) -> Result<Spec, OciError> {
    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    let mut root = Root::default();
    root.set_path(inputs.rootfs.to_path_buf());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    spec.set_hostname(Some(inputs.sandbox.hostname.clone()));
    spec.set_mounts(Some(mounts(inputs)));
    spec.set_process(Some(process(inputs)?));
    spec.set_linux(Some(linux(inputs)?));
    spec.set_annotations(None);
    Ok(spec)
}

fn mounts(inputs: &Inputs<'_>) -> Vec<Mount> {
    let mut list = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    list.extend(inputs.binds.iter().map(bind));
    list.extend(inputs.etc.mounts().iter().map(|(source, destination)| {
        bind(&BindMount {
            source: source.to_path_buf(),
            destination: destination.to_string(),
            readonly: false,
        })
    }));
    // Last, so no other mount can shadow the agent.
    list.push(bind(&BindMount {
        source: inputs.agent.to_path_buf(),
        destination: AGENT_PATH.into(),
        readonly: true,
    }));
    list
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.into()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn bind(b: &BindMount) -> Mount {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if b.readonly {
        options.push("ro");
    }
    let mut m = mount(&b.destination, "bind", "", &options);
    m.set_source(Some(b.source.clone()));
    m
}

fn process(inputs: &Inputs<'_>) -> Result<Process, OciError> {
    let sandbox = inputs.sandbox;
    let mut process = Process::default();
    let mut args = vec![AGENT_PATH.to_string()];
    args.extend(sandbox.agent_args.iter().cloned());
    if inputs.agent_seccomp {
        let fd = crate::agent_socket::FILTER_FD.to_string();
        args.extend(["--seccomp-fd".to_string(), fd]);
    }
    process.set_args(Some(args));
    process.set_env(Some(env(&sandbox.env)?));
    process.set_cwd(PathBuf::from(&sandbox.workdir));
    process.set_user(User::default());
    process.set_terminal(Some(false));
    process.set_capabilities(Some(capabilities()));
    process.set_no_new_privileges(Some(true));
    process.set_oom_score_adj(inputs.oom_score_adj);
    let limit = nofile(sandbox.limits.pids, inputs.nofile);
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(limit)
        .hard(limit)
        .build()?;
    process.set_rlimits(Some(vec![nofile]));
    Ok(process)
}

fn env(vars: &[(String, String)]) -> Result<Vec<String>, OciError> {
    vars.iter()
        .map(|(k, v)| match k.is_empty() || k.contains(['=', '\0']) {
            true => Err(OciError::EnvName(k.clone())),
            false => Ok(format!("{k}={v}")),
        })
        .collect()
}

fn capabilities() -> LinuxCapabilities {
    let set: oci_spec::runtime::Capabilities = CAPABILITIES.iter().copied().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(Default::default()));
    caps.set_ambient(Some(Default::default()));
    caps
}

fn linux(inputs: &Inputs<'_>) -> Result<Linux, OciError> {
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces(inputs.sandbox.userns_base.is_some())));
    if let Some(base) = inputs.sandbox.userns_base {
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(base)
            .size(crate::idmap::IDS_PER_SANDBOX)
            .build()?;
        linux.set_uid_mappings(Some(vec![map]));
        linux.set_gid_mappings(Some(vec![map]));
    }
    linux.set_cgroups_path(Some(cgroup::path(&inputs.sandbox.id)));
    linux.set_resources(Some(cgroup::resources(
        &inputs.sandbox.limits,
        inputs.swap_accounting,
    )));
    if !inputs.agent_seccomp {
        linux.set_seccomp(Some(seccomp::profile()?));
    }
    let mut masked = get_default_maskedpaths();
    masked.push("/sys/devices/virtual/powercap".into());
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(get_default_readonly_paths()));
    linux.set_sysctl(inputs.ipv6.then(ipv6_off));
    Ok(linux)
}

/// The sandbox's namespaces; a user namespace only when `user` (it must be
/// first, so the others belong to it).
fn namespaces(user: bool) -> Vec<LinuxNamespace> {
    use LinuxNamespaceType::*;
    let first = user.then_some(User);
    first
        .into_iter()
        .chain([Pid, Mount, Ipc, Uts, Network, Cgroup])
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            ns
        })
        .collect()
}

fn ipv6_off() -> HashMap<String, String> {
    ["all", "default"]
        .into_iter()
        .map(|scope| {
            (
                format!("net.ipv6.conf.{scope}.disable_ipv6"),
                "1".to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Limits, SandboxSpec};

    fn sandbox() -> SandboxSpec {
        SandboxSpec {
            id: "0b6e".into(),
            state_dir: "/data/0b6e".into(),
            agent_log: true,
            layers: vec!["/images/base".into()],
            mounts: vec![],
            agent_binary: "/opt/sandpit-agent".into(),
            agent_args: vec!["agent".into(), "--listen-fd".into(), "3".into()],
            agent_socket: "/run/sandpit/0b6e.sock".into(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("A".into(), "b=c".into()),
            ],
            workdir: "/home/user".into(),
            hostname: "box".into(),
            limits: Limits {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                pids: 32,
            },
            fs_capacity_bytes: 0,
            net_slot: 3,
            userns_base: None,
            isolation: Default::default(),
        }
    }

    fn etc() -> EtcFiles {
        EtcFiles {
            hosts: "/data/0b6e/etc/hosts".into(),
            hostname: "/data/0b6e/etc/hostname".into(),
            resolv_conf: "/data/0b6e/etc/resolv.conf".into(),
        }
    }

    fn built(binds: &[BindMount]) -> Spec {
        let sandbox = sandbox();
        let etc = etc();
        let inputs = Inputs {
            sandbox: &sandbox,
            rootfs: Path::new("/data/0b6e/rootfs"),
            binds,
            agent: Path::new("/opt/sandpit-agent"),
            etc: &etc,
            swap_accounting: true,
            ipv6: true,
            oom_score_adj: Some(AGENT_OOM_SCORE_ADJ),
            nofile: NOFILE_LIMIT,
            agent_seccomp: true,
        };
        build(&inputs).unwrap()
    }

    fn destinations(spec: &Spec) -> Vec<String> {
        let mounts = spec.mounts().clone().unwrap();
        mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    #[test]
    fn runs_the_agent_as_root_with_a_reduced_capability_set() {
        let spec = built(&[]);
        let process = spec.process().clone().unwrap();
        assert_eq!(
            process.args().clone().unwrap(),
            [
                "/.sandpit/sandpit",
                "agent",
                "--listen-fd",
                "3",
                "--seccomp-fd",
                "4"
            ]
        );
        // The agent installs the compiled filter: the spec has none.
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
        assert_eq!(
            process.env().clone().unwrap(),
            ["PATH=/usr/bin:/bin", "A=b=c"]
        );
        assert_eq!(process.cwd(), Path::new("/home/user"));
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(process.oom_score_adj(), Some(-998));
        let caps = process.capabilities().clone().unwrap();
        let bounding = caps.bounding().clone().unwrap();
        assert_eq!(bounding.len(), 11);
        assert!(!bounding.contains(&Capability::AuditWrite));
        assert!(bounding.contains(&Capability::Setuid));
        assert!(!bounding.contains(&Capability::NetRaw));
        assert!(!bounding.contains(&Capability::Mknod));
        assert!(!bounding.contains(&Capability::SysAdmin));
        assert_eq!(caps.ambient().clone().unwrap().len(), 0);
        let rlimit = process.rlimits().clone().unwrap()[0];
        // 32 pids: the per-process share of the sandbox's files is capped.
        assert_eq!((rlimit.soft(), rlimit.hard()), (NOFILE_LIMIT, NOFILE_LIMIT));
    }

    #[test]
    fn open_files_are_bounded_per_sandbox() {
        assert_eq!(nofile(1024, NOFILE_LIMIT), 4096);
        assert_eq!(nofile(32, NOFILE_LIMIT), NOFILE_LIMIT);
        assert_eq!(nofile(1 << 20, NOFILE_LIMIT), MIN_NOFILE);
        assert_eq!(nofile(0, NOFILE_LIMIT), MIN_NOFILE);
        assert_eq!(nofile(1024, 2048), 2048);
        for pids in [64, 256, 1024, 4096] {
            assert!(pids * nofile(pids, NOFILE_LIMIT) <= SANDBOX_FILES, "{pids}");
        }
    }

    #[test]
    fn a_userns_base_adds_a_user_namespace_mapping_65536_ids() {
        let mut sandbox = sandbox();
        sandbox.userns_base = Some(165_536);
        let etc = etc();
        let inputs = Inputs {
            sandbox: &sandbox,
            rootfs: Path::new("/data/0b6e/rootfs"),
            binds: &[],
            agent: Path::new("/opt/sandpit-agent"),
            etc: &etc,
            swap_accounting: true,
            ipv6: true,
            oom_score_adj: None,
            nofile: NOFILE_LIMIT,
            agent_seccomp: false,
        };
        let linux = build(&inputs).unwrap().linux().clone().unwrap();
        // Without the agent installing it, the spec carries the profile.
        assert!(linux.seccomp().is_some());
        let namespaces = linux.namespaces().clone().unwrap();
        assert_eq!(namespaces[0].typ(), LinuxNamespaceType::User);
        assert_eq!(namespaces.len(), 7);
        for maps in [linux.uid_mappings(), linux.gid_mappings()] {
            let map = maps.clone().unwrap()[0];
            assert_eq!(
                (map.container_id(), map.host_id(), map.size()),
                (0, 165_536, 65_536)
            );
        }
        let caps = build(&inputs).unwrap().process().clone().unwrap();
        let bounding = caps
            .capabilities()
            .clone()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(!bounding.contains(&Capability::SysAdmin));
    }

    #[test]
    fn namespaces_exclude_the_user_namespace() {
        let spec = built(&[]);
        let linux = spec.linux().clone().unwrap();
        let types: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(types.len(), 6);
        assert!(!types.contains(&LinuxNamespaceType::User));
        assert!(types.contains(&LinuxNamespaceType::Network));
        assert_eq!(
            linux.cgroups_path().clone().unwrap(),
            Path::new("/sandpit/0b6e")
        );
        assert_eq!(spec.hostname().clone().unwrap(), "box");
        let sysctl = linux.sysctl().clone().unwrap();
        assert_eq!(sysctl["net.ipv6.conf.all.disable_ipv6"], "1");
        assert!(linux
            .masked_paths()
            .clone()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .clone()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
    }

    #[test]
    fn mounts_come_in_order_with_the_agent_last_and_read_only() {
        let usr = BindMount {
            source: "/data/0b6e/mnt/0".into(),
            destination: "/usr".into(),
            readonly: true,
        };
        let spec = built(&[usr]);
        let dests = destinations(&spec);
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/usr",
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/.sandpit/sandpit",
            ]
        );
        let mounts = spec.mounts().clone().unwrap();
        let agent = mounts.last().unwrap();
        assert_eq!(
            agent.source().clone().unwrap(),
            Path::new("/opt/sandpit-agent")
        );
        assert!(agent.options().clone().unwrap().contains(&"ro".to_string()));
        let sys = &mounts[5];
        assert!(sys.options().clone().unwrap().contains(&"ro".to_string()));
        let hosts = &mounts[7];
        assert!(!hosts.options().clone().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn rejects_malformed_environment_names() {
        let vars = [("BAD=NAME".to_string(), "x".to_string())];
        assert!(matches!(env(&vars), Err(OciError::EnvName(_))));
    }
}
