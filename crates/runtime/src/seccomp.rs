//! The sandbox's seccomp profile: an allow-list, Docker's default one.
//!
//! Every syscall not named here fails with `ENOSYS`, so a syscall added by a
//! newer kernel fails closed, the way a libc expects of a kernel that lacks
//! it (glibc falls back from `clone3`, `fchmodat2`, `statmount`, ... to older
//! calls). The list is Docker's default allow-list (moby's
//! `profiles/seccomp/default.json`, x86-64 names) minus `name_to_handle_at`
//! (the "shocker" file-handle escape) and `clock_adjtime`, plus what Docker
//! allows for the capabilities a sandbox keeps (`chroot`) and on kernels
//! since 4.8 (`ptrace`, `process_vm_readv`, `process_vm_writev`). Calls that
//! are dangerous, or need a capability a sandbox lacks, fail with `EPERM`, as
//! if the capability was missing ([`DENIED`]); `clone` with a namespace
//! flag too. `socket` and `socketpair` take only the address families a
//! sandbox needs ([`FAMILIES`]: unix, IPv4, IPv6, netlink) and fail with
//! `EAFNOSUPPORT` for the others (`AF_VSOCK` reaches the hypervisor past
//! every firewall rule; `AF_ALG`, `AF_KEY`, `AF_PACKET` and the rarely used
//! families are kernel attack surface). `personality` takes only the values
//! Docker allows.
//!
//! The filter covers the x86-64 and x32 ABIs only: a 32-bit (i386) syscall
//! kills the process. The i386 ABI multiplexes every socket call through
//! `socketcall`, whose arguments are in memory out of a filter's reach, so
//! the address-family check could not hold there.
//!
//! Arguments are compared on their low 32 bits where the kernel reads an
//! `int` (a family of `0x1_0000_0028` is `AF_VSOCK` to the kernel).

use std::ffi::{c_char, c_int, CString};
use std::os::fd::OwnedFd;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use oci_spec::OciSpecError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("invalid seccomp profile")]
    Profile(#[from] OciSpecError),
    #[error("the profile has a rule the compiler does not take: {0}")]
    Unsupported(String),
    #[error("libseccomp failed to compile the profile")]
    Compile(#[from] libseccomp::error::SeccompError),
    #[error("failed to hold the compiled filter in memory")]
    Memfd(#[source] nix::Error),
}

/// Syscalls allowed with any arguments (x86-64 names).
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chroot",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// Syscalls that fail with `EPERM`: they need a capability a sandbox does
/// not have, or are kernel interfaces with a record of privilege escalations.
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
    "sethostname",
    "setdomainname",
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
    "fanotify_init",
    // Other processes (CAP_SYS_PTRACE in Docker's profile).
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    // NUMA memory policy (CAP_SYS_NICE in Docker's profile).
    "get_mempolicy",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "mbind",
    "migrate_pages",
    "move_pages",
    // Host-wide state.
    "syslog",
    "vhangup",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    // File handles bypass path-based checks (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
];

/// Address families `socket` accepts: `AF_UNIX`, `AF_INET`, `AF_INET6`,
/// `AF_NETLINK` (`ip`, `getaddrinfo`'s `AI_ADDRCONFIG`).
pub const FAMILIES: &[u32] = &[
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
    libc::AF_NETLINK as u32,
];

/// Address families `socketpair` accepts.
pub const PAIR_FAMILIES: &[u32] = &[libc::AF_UNIX as u32];

/// `personality` values allowed (Docker's): `PER_LINUX`, `UNAME26`,
/// `PER_LINUX32`, both, and the query `0xffffffff`.
pub const PERSONALITIES: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

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

/// The low 32 bits: what the kernel reads of an `int` or `unsigned int`.
const LOW32: u64 = 0xffff_ffff;

/// The profile every sandbox gets.
pub fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = vec![
        rule(&known(ALLOWED), Action::Allow, None),
        rule(&known(DENIED), Action::Errno(libc::EPERM), None),
    ];
    let any_namespace = NAMESPACE_FLAGS.iter().fold(0, |all, flag| all | flag);
    syscalls.push(rule(
        &["clone"],
        Action::Allow,
        Some(masked(any_namespace, 0)?),
    ));
    for &flag in NAMESPACE_FLAGS {
        let arg = masked(flag, flag)?;
        syscalls.push(rule(&["clone"], Action::Errno(libc::EPERM), Some(arg)));
    }
    syscalls.extend(only("socket", FAMILIES, libc::EAFNOSUPPORT)?);
    syscalls.extend(only("socketpair", PAIR_FAMILIES, libc::EAFNOSUPPORT)?);
    syscalls.extend(only("personality", PERSONALITIES, libc::EPERM)?);
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(u32::try_from(libc::ENOSYS).ok());
    seccomp.set_architectures(Some(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX32]));
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}

/// [`profile`] compiled to a classic BPF program (`struct sock_filter`s)
/// in a sealed memfd: the runtime hands it to each sandbox's agent, which
/// installs it before anything else (`sandpit agent --seccomp-fd`), instead
/// of libcontainer compiling the profile with libseccomp in every init (5 ms
/// of CPU per start, 13 % of a burst's; docs/benchmarks.md). libseccomp
/// makes the same program either way: this is what its load would install.
pub fn compiled() -> Result<OwnedFd, SeccompError> {
    let filter = filter(&profile()?)?;
    let memfd = memfd_create(
        c"sandpit-seccomp",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(SeccompError::Memfd)?;
    filter.export_bpf(&memfd)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&memfd),
        FcntlArg::F_ADD_SEALS(seals),
    )
    .map_err(SeccompError::Memfd)?;
    Ok(memfd)
}

/// libseccomp's filter for `profile`, built the way libcontainer builds it
/// (`value_two` is the mask of a masked comparison), for the actions and
/// operators [`profile`] uses.
fn filter(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default)?;
    for &arch in profile.architectures().iter().flatten() {
        match arch {
            Arch::ScmpArchX86_64 => {}
            Arch::ScmpArchX32 => {
                ctx.add_arch(ScmpArch::X32)?;
            }
            other => return Err(SeccompError::Unsupported(format!("{other:?}"))),
        }
    }
    for syscall in profile.syscalls().iter().flatten() {
        let act = action(syscall.action(), syscall.errno_ret())?;
        let compare: Vec<ScmpArgCompare> = syscall
            .args()
            .iter()
            .flatten()
            .map(|arg| match arg.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => Ok(ScmpArgCompare::new(
                    arg.index() as u32,
                    ScmpCompareOp::MaskedEqual(arg.value_two().unwrap_or(0)),
                    arg.value(),
                )),
                other => Err(SeccompError::Unsupported(format!("{other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        for name in syscall.names() {
            let nr = ScmpSyscall::from_name(name)?;
            ctx.add_rule_conditional(act, nr, &compare)?;
        }
    }
    Ok(ctx)
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    match action {
        LinuxSeccompAction::ScmpActAllow => Ok(ScmpAction::Allow),
        LinuxSeccompAction::ScmpActErrno => Ok(ScmpAction::Errno(
            errno
                .and_then(|e| i32::try_from(e).ok())
                .unwrap_or(libc::EPERM),
        )),
        other => Err(SeccompError::Unsupported(format!("{other:?}"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(i32),
}

fn rule(names: &[&str], action: Action, arg: Option<LinuxSeccompArg>) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|n| n.to_string()).collect());
    match action {
        Action::Allow => {
            syscall.set_action(LinuxSeccompAction::ScmpActAllow);
        }
        Action::Errno(errno) => {
            syscall.set_action(LinuxSeccompAction::ScmpActErrno);
            syscall.set_errno_ret(u32::try_from(errno).ok());
        }
    }
    syscall.set_args(arg.map(|a| vec![a]));
    syscall
}

/// Matches when the first argument, masked with `mask`, equals `value`.
/// libcontainer reads `value_two` as the mask and `value` as the datum
/// (runc reads them the other way round); the filter test below runs the
/// profile through libcontainer, so a change there fails it.
fn masked(mask: u64, value: u64) -> Result<LinuxSeccompArg, OciSpecError> {
    LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(value)
        .value_two(mask)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
}

/// Rules that allow `name` when the low 32 bits of its first argument are
/// one of `allowed` and fail it with `errno` for every other value. The
/// rules never overlap (libseccomp refuses, or lets an unconditional rule
/// win, when two rules of different actions match one call): the other
/// values are covered by aligned blocks, one masked comparison each.
fn only(name: &str, allowed: &[u32], errno: i32) -> Result<Vec<LinuxSyscall>, OciSpecError> {
    let mut rules = Vec::new();
    for &value in allowed {
        let arg = masked(LOW32, u64::from(value))?;
        rules.push(rule(&[name], Action::Allow, Some(arg)));
    }
    for (mask, value) in complement_blocks(allowed) {
        rules.push(rule(
            &[name],
            Action::Errno(errno),
            Some(masked(mask, value)?),
        ));
    }
    Ok(rules)
}

/// Aligned power-of-two blocks `(mask, start)` covering every 32-bit value
/// except `allowed`.
fn complement_blocks(allowed: &[u32]) -> Vec<(u64, u64)> {
    let mut points: Vec<u64> = allowed.iter().map(|&v| u64::from(v)).collect();
    points.sort_unstable();
    points.dedup();
    let mut blocks = Vec::new();
    let mut next = 0u64;
    for point in points.into_iter().chain(std::iter::once(LOW32 + 1)) {
        if point > next {
            blocks.extend(aligned_blocks(next, point - 1));
        }
        next = point + 1;
    }
    blocks
}

/// Splits `lo..=hi` (within 32 bits) into aligned power-of-two blocks.
fn aligned_blocks(mut lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut blocks = Vec::new();
    while lo <= hi {
        let mut size = 1u64 << lo.trailing_zeros().min(32);
        while lo + size - 1 > hi {
            size >>= 1;
        }
        blocks.push((LOW32 & !(size - 1), lo));
        lo += size;
    }
    blocks
}

/// `names` that the linked libseccomp knows for x86-64. libcontainer skips
/// (with a warning at every start) a name libseccomp cannot resolve, and an
/// unknown syscall is denied by the default action anyway.
fn known<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names.iter().copied().filter(|n| resolves(n)).collect()
}

extern "C" {
    /// From libseccomp (linked through libcontainer's `libseccomp-sys`):
    /// the native syscall number of `name`, negative when unknown.
    fn seccomp_syscall_resolve_name(name: *const c_char) -> c_int;
}

fn resolves(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a valid NUL-terminated string that outlives the
    // call; libseccomp only reads it and keeps no pointer to it.
    unsafe { seccomp_syscall_resolve_name(name.as_ptr()) >= 0 }
}

#[cfg(test)]
mod tests;
