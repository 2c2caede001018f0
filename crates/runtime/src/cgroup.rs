//! The sandbox's cgroup: where it lives, which limits it gets, and how
//! leftovers are swept.
//!
//! libcontainer (through libcgroups) creates, fills and removes the cgroup;
//! this module decides its path (`/sandpit/<id>` under every hierarchy, v1 or
//! v2, never through systemd) and its resources, and finds the ones a crash
//! left behind.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use libcgroups::common::CgroupSetup;
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources};

use crate::mountinfo;
use crate::spec::Limits;

/// Parent of every sandbox cgroup, relative to each hierarchy's root.
pub const PARENT: &str = "sandpit";

/// CFS period; the quota is a share of it.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup path libcontainer gets for a sandbox.
pub fn path(id: &str) -> PathBuf {
    Path::new("/").join(PARENT).join(id)
}

/// Looks up, once for this process, where each v1 controller is mounted,
/// so the processes libcontainer forks for a start (and its deletes here)
/// inherit the answers instead of reading `mountinfo` 13 times each (the
/// lookup is cached per process by the patched libcgroups in `vendor/`).
/// Nothing to do on a cgroup v2 host.
pub fn warm_up() {
    if matches!(
        libcgroups::common::get_cgroup_setup(),
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
    ) {
        let _ = libcgroups::v1::manager::Manager::new(&path("warm-up"));
    }
}

/// Resources for `limits`. A zero limit is left unset. `swap_accounting`
/// says whether memory+swap can be limited; when it can, it is set to the
/// memory limit so a sandbox cannot escape its limit into swap.
pub fn resources(limits: &Limits, swap_accounting: bool) -> LinuxResources {
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![deny_all_devices()]));
    if let Ok(memory) = i64::try_from(limits.memory_bytes) {
        if memory > 0 {
            let mut mem = LinuxMemory::default();
            mem.set_limit(Some(memory));
            mem.set_swap(swap_accounting.then_some(memory));
            resources.set_memory(Some(mem));
        }
    }
    if let Ok(quota) = i64::try_from(limits.cpu_millis.saturating_mul(CPU_PERIOD_US / 1000)) {
        if quota > 0 {
            let mut cpu = LinuxCpu::default();
            cpu.set_quota(Some(quota));
            cpu.set_period(Some(CPU_PERIOD_US));
            resources.set_cpu(Some(cpu));
        }
    }
    if let Ok(pids) = i64::try_from(limits.pids) {
        if pids > 0 {
            let mut limit = LinuxPids::default();
            limit.set_limit(pids);
            resources.set_pids(Some(limit));
        }
    }
    resources
}

/// Deny every device; libcgroups then allows the default set (null, zero,
/// full, random, urandom, tty, pts, ...).
fn deny_all_devices() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false);
    rule.set_access(Some("rwm".into()));
    rule
}

/// Whether this host accounts swap per cgroup (v1 `memory.memsw.*`, v2
/// `memory.swap.max`). Setting a swap limit where it is not accounted fails.
pub fn swap_accounting() -> bool {
    let mounts = mountinfo::read_self().unwrap_or_default();
    match libcgroups::common::get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => v2_swap_accounting(&mounts),
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid) => v1_memory_mount(&mounts)
            .is_some_and(|root| root.join("memory.memsw.limit_in_bytes").exists()),
        Err(_) => false,
    }
}

fn v1_memory_mount(mounts: &[mountinfo::MountEntry]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))
        .map(|m| m.mount_point.clone())
}

/// On v2 the root cgroup has no `memory.swap.max`; look at our own cgroup and
/// at the sandbox parent.
fn v2_swap_accounting(mounts: &[mountinfo::MountEntry]) -> bool {
    let Some(root) = mounts.iter().find(|m| m.fs_type == "cgroup2") else {
        return false;
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    let candidates = [
        root.mount_point.join(own.trim_start_matches('/')),
        root.mount_point.join(PARENT),
    ];
    candidates
        .iter()
        .any(|dir| dir.join("memory.swap.max").exists())
}

/// Mount points of every cgroup hierarchy (v1 controllers, named v1
/// hierarchies, v2), read once per process: they do not move while Sandpit
/// runs, and `/proc/self/mountinfo` of the runtime helpers lists every
/// sandbox's mounts (~7 each), so reading it on every start and stop made
/// each one cost more the more sandboxes ran.
pub fn hierarchies() -> Vec<PathBuf> {
    static FOUND: OnceLock<Vec<PathBuf>> = OnceLock::new();
    if let Some(found) = FOUND.get() {
        return found.clone();
    }
    let found = read_hierarchies();
    if found.is_empty() {
        return found;
    }
    FOUND.get_or_init(|| found).clone()
}

fn read_hierarchies() -> Vec<PathBuf> {
    let mounts = mountinfo::read_self().unwrap_or_default();
    let mut seen = HashSet::new();
    mounts
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Directories of sandbox `id` that exist, one per hierarchy at most.
pub fn existing_dirs(id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(PARENT).join(id))
        .filter(|d| d.is_dir())
        .collect()
}

/// Ids with a cgroup directory under any hierarchy.
pub fn sandbox_ids() -> HashSet<String> {
    let mut ids = HashSet::new();
    for hierarchy in hierarchies() {
        let Ok(entries) = fs::read_dir(hierarchy.join(PARENT)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                ids.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    ids
}

/// Kills every process of sandbox `id`'s cgroups and removes them.
pub fn remove(id: &str) -> io::Result<()> {
    let mut result = Ok(());
    for dir in existing_dirs(id) {
        if let Err(err) = remove_tree(&dir, Duration::from_secs(5)) {
            result = Err(err);
        }
    }
    result
}

/// Freezes every process of running sandbox `id` (`frozen`), waiting until
/// the freezer reports them frozen, or thaws them. Through libcgroups, so v1
/// (`freezer.state`) and v2 (`cgroup.freeze`) both work. A sandbox without a
/// cgroup (not running) is an error, so no cgroup is created for it.
pub fn set_frozen(id: &str, frozen: bool) -> Result<(), String> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager, FreezerState};
    if existing_dirs(id).is_empty() {
        return Err(format!("sandbox {id} has no cgroup"));
    }
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: path(id),
        systemd_cgroup: false,
        container_name: id.to_owned(),
    })
    .map_err(|e| e.to_string())?;
    let state = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    manager.freeze(state).map_err(|e| e.to_string())
}

/// Removes a cgroup directory and its children, killing what runs there.
fn remove_tree(dir: &Path, timeout: Duration) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), timeout)?;
        }
    }
    thaw(dir);
    let deadline = Instant::now() + timeout;
    loop {
        kill_all(dir);
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(5)),
        }
    }
}

/// A frozen v1 cgroup does not act on SIGKILL until thawed.
fn thaw(dir: &Path) {
    let state = dir.join("freezer.state");
    if state.exists() {
        let _ = fs::write(state, "THAWED");
    }
}

fn kill_all(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mounts) and a v1 hierarchy, like the runtime's other
    /// tests here. After the warm-up, a lookup does not read `mountinfo`
    /// (the patched libcgroups in `vendor/`): a forked child that unmounts
    /// the pids hierarchy in a mount namespace of its own still finds it
    /// where it was. A fork, because libcgroups reads `/proc/self`, the
    /// thread group leader's, and the child is a single thread.
    #[test]
    fn v1_mount_points_are_looked_up_once_per_process() {
        use libcgroups::v1::util::get_subsystem_mount_point;
        use libcgroups::v1::ControllerType;
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let v1 = matches!(
            libcgroups::common::get_cgroup_setup(),
            Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
        );
        assert!(v1, "this host has no cgroup v1 hierarchy to test with");
        warm_up();
        let pids = get_subsystem_mount_point(&ControllerType::Pids).unwrap();
        let in_child = || -> Result<bool, String> {
            let err = |e: nix::Error| e.to_string();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(err)?;
            let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
            mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(err)?;
            umount2(&pids, MntFlags::MNT_DETACH).map_err(err)?;
            let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
            if mounts.contains(&format!(" {} ", pids.display())) {
                return Err("still mounted".into());
            }
            Ok(get_subsystem_mount_point(&ControllerType::Pids).ok() == Some(pids.clone()))
        };
        // SAFETY: the child only makes system calls, reads a file and looks
        // up the cache (glibc's malloc is reset for the child at fork), then
        // leaves with `_exit`, never returning into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match std::panic::catch_unwind(in_child) {
                    Ok(Ok(true)) => 0,
                    Ok(Ok(false)) => 1,
                    _ => 2,
                };
                // SAFETY: ends the forked child at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                let code = match status {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("child: {other:?}"),
                };
                assert_eq!(code, 0, "1: looked up again (not found), 2: setup failed");
            }
        }
    }

    #[test]
    fn path_is_under_the_sandpit_parent() {
        assert_eq!(path("abc"), PathBuf::from("/sandpit/abc"));
    }

    #[test]
    fn limits_become_resources() {
        let limits = Limits {
            cpu_millis: 1500,
            memory_bytes: 256 << 20,
            pids: 128,
        };
        let r = resources(&limits, true);
        let mem = r.memory().unwrap();
        assert_eq!(mem.limit(), Some(256 << 20));
        assert_eq!(mem.swap(), Some(256 << 20));
        let cpu = r.cpu().clone().unwrap();
        assert_eq!(cpu.quota(), Some(150_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(r.pids().unwrap().limit(), 128);
        let devices = r.devices().clone().unwrap();
        assert!(!devices[0].allow());
    }

    #[test]
    fn no_swap_limit_without_accounting_and_zero_means_unlimited() {
        let limits = Limits {
            cpu_millis: 0,
            memory_bytes: 1 << 30,
            pids: 0,
        };
        let r = resources(&limits, false);
        assert_eq!(r.memory().unwrap().swap(), None);
        assert!(r.cpu().is_none());
        assert!(r.pids().is_none());
    }
}
