//! The sandbox's seccomp profile: allow by default, deny a list.
//!
//! Why a deny-list and not Docker's allow-list: sandboxes run arbitrary
//! user programs (compilers, language runtimes, databases, browsers) and an
//! allow-list breaks whatever uses a syscall newer than the list (`clone3`,
//! `faccessat2`, `epoll_pwait2`, `landlock_*`, ...), which is hard to debug
//! from inside. The real boundary is namespaces, a dropped capability set and
//! `no_new_privileges`; this filter removes the syscalls that are dangerous
//! even without capabilities, or whose capability checks have had holes
//! (kernel keyring, BPF, perf, userfaultfd, io_uring, file handles), and
//! namespace creation, which would re-open the attack surface of user
//! namespaces. Denied calls fail with `EPERM`, as if a capability was
//! missing, except `clone3`: it fails with `ENOSYS` so glibc falls back to
//! `clone`, whose flags this filter can inspect (`clone3` passes them in
//! memory, out of a filter's reach).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use oci_spec::OciSpecError;

/// Syscalls denied outright with `EPERM`.
pub const DENIED: &[&str] = &[
    // Mounting and namespaces.
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "setns",
    "unshare",
    // Swap, reboot, kernel modules and kexec.
    "swapon",
    "swapoff",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    // Kernel interfaces with a record of privilege escalations.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    // Host-wide state.
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "stime",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "vm86",
    "vm86old",
    // File handles bypass path-based checks (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
];

/// `clone` flags that create namespaces. `CLONE_NEWTIME` is absent: `clone`
/// cannot take it (its bit is part of the exit signal there).
pub const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The profile every sandbox gets.
pub fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = vec![
        errno(DENIED, libc::EPERM, None),
        errno(&["clone3"], libc::ENOSYS, None),
    ];
    for &flag in NAMESPACE_FLAGS {
        syscalls.push(errno(&["clone"], libc::EPERM, Some(flag_set(flag)?)));
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}

/// Matches when bit `flag` of the first argument is set.
fn flag_set(flag: u64) -> Result<LinuxSeccompArg, OciSpecError> {
    LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(flag)
        .value_two(flag)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
}

fn errno(names: &[&str], errno: i32, arg: Option<LinuxSeccompArg>) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|n| n.to_string()).collect());
    syscall.set_action(LinuxSeccompAction::ScmpActErrno);
    syscall.set_errno_ret(u32::try_from(errno).ok());
    syscall.set_args(arg.map(|a| vec![a]));
    syscall
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_for(profile: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        let all = profile.syscalls().clone().unwrap_or_default();
        all.into_iter()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn allows_by_default_and_denies_the_list() {
        let p = profile().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "open_by_handle_at",
        ] {
            let rules = rules_for(&p, name);
            assert_eq!(rules.len(), 1, "{name}");
            assert_eq!(rules[0].errno_ret(), Some(libc::EPERM as u32));
        }
    }

    #[test]
    fn clone3_reports_enosys_so_libc_falls_back() {
        let rules = rules_for(&profile().unwrap(), "clone3");
        assert_eq!(rules[0].errno_ret(), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn clone_is_denied_once_per_namespace_flag() {
        let rules = rules_for(&profile().unwrap(), "clone");
        assert_eq!(rules.len(), NAMESPACE_FLAGS.len());
        let arg = rules[0].args().clone().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), arg.value_two().unwrap());
    }
}
