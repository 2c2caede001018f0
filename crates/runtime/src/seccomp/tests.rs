//! The profile's rules, and the filter libcontainer builds from them run in
//! a child process.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use oci_spec::runtime::Capability;

use super::*;
use crate::oci::CAPABILITIES;

/// Every x86-64 syscall of Linux 6.18 that Docker's default profile
/// (moby `profiles/seccomp/default.json`, 2024, without `io_uring_*` as
/// upstream since Docker 25) blocks for a container with Docker's default
/// capabilities: the syscall table minus the unconditional allow-list,
/// minus `chroot` (allowed for `CAP_SYS_CHROOT`, a default capability) and
/// `ptrace`/`process_vm_readv`/`process_vm_writev` (allowed on kernels since
/// 4.8). `socket`, `personality` and `clone`, which Docker allows for some
/// arguments only, are checked by [`argument_rules_match_or_exceed_docker`].
const DOCKER_BLOCKED: &[&str] = &[
    "_sysctl",
    "acct",
    "add_key",
    "afs_syscall",
    "bpf",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "file_getattr",
    "file_setattr",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "getpmsg",
    "getxattrat",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "listmount",
    "listxattrat",
    "lookup_dcookie",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "mbind",
    "migrate_pages",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "mseal",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "open_tree_attr",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "putpmsg",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "removexattrat",
    "request_key",
    "security",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "setxattrat",
    "statmount",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "tuxcall",
    "umount2",
    "unshare",
    "uretprobe",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vserver",
];

/// Docker's capability-gated rules: a syscall in a group is allowed only
/// when the container has the capability.
const DOCKER_CAP_GATED: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "clock_settime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Names with an unconditional allow rule in `profile`.
fn allowed_outright(profile: &LinuxSeccomp) -> BTreeSet<String> {
    let rules = profile.syscalls().clone().unwrap_or_default();
    rules
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

/// Names with an allow rule for some arguments.
fn allowed_for_some_arguments(profile: &LinuxSeccomp) -> BTreeSet<String> {
    let rules = profile.syscalls().clone().unwrap_or_default();
    rules
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_some())
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

fn rules_for(profile: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
    let all = profile.syscalls().clone().unwrap_or_default();
    all.into_iter()
        .filter(|s| s.names().iter().any(|n| n == name))
        .collect()
}

#[test]
fn denies_by_default_with_enosys() {
    let p = profile().unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret(), Some(libc::ENOSYS as u32));
    assert_eq!(
        p.architectures().clone().unwrap(),
        [Arch::ScmpArchX86_64, Arch::ScmpArchX32]
    );
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
        assert_eq!(rules[0].errno_ret(), Some(libc::EPERM as u32), "{name}");
    }
}

#[test]
fn every_syscall_docker_blocks_is_blocked() {
    let p = profile().unwrap();
    let outright = allowed_outright(&p);
    let conditional = allowed_for_some_arguments(&p);
    for name in DOCKER_BLOCKED {
        assert!(!outright.contains(*name), "{name} is allowed");
        assert!(
            !conditional.contains(*name),
            "{name} is allowed for some arguments"
        );
    }
    // What Docker allows only with a capability is blocked here unless the
    // sandbox keeps that capability (`chroot`: CAP_SYS_CHROOT).
    for (cap, names) in DOCKER_CAP_GATED {
        let kept = CAPABILITIES.contains(cap);
        for name in *names {
            let allowed = outright.contains(*name) || conditional.contains(*name);
            let also_ungated = DOCKER_CAP_GATED
                .iter()
                .any(|(c, n)| c != cap && CAPABILITIES.contains(c) && n.contains(name));
            assert_eq!(allowed, kept || also_ungated, "{name} ({cap:?})");
        }
    }
    // Beyond Docker: file handles and the kernel clock.
    for name in ["name_to_handle_at", "clock_adjtime", "io_uring_setup"] {
        assert!(!outright.contains(name), "{name}");
    }
}

#[test]
fn argument_rules_match_or_exceed_docker() {
    let p = profile().unwrap();
    let conditional = allowed_for_some_arguments(&p);
    let expected: BTreeSet<String> = ["clone", "socket", "socketpair", "personality"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(conditional, expected);
    assert!(!FAMILIES.contains(&(libc::AF_VSOCK as u32)));
    assert_eq!(PERSONALITIES, [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
    let clone = rules_for(&p, "clone");
    assert_eq!(clone.len(), NAMESPACE_FLAGS.len() + 1);
}

/// Which rule of `only(_, allowed, _)` matches each probe: exactly one.
#[test]
fn value_rules_cover_every_value_once() {
    for allowed in [FAMILIES, PAIR_FAMILIES, PERSONALITIES] {
        let blocks = complement_blocks(allowed);
        let mut probes: Vec<u64> = vec![0, 1, 2, 3, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff];
        for &v in allowed {
            let v = u64::from(v);
            probes.extend([v, v.wrapping_sub(1) & LOW32, (v + 1) & LOW32, v | 1 << 32]);
        }
        probes.extend((0..64).map(|n| (n * 0x0400_0001) & LOW32));
        for probe in probes {
            let low = probe & LOW32;
            let allows = allowed.iter().any(|&v| u64::from(v) == low);
            let denials = blocks.iter().filter(|(m, v)| probe & m == *v).count();
            assert_eq!(
                (allows, denials),
                (allows, usize::from(!allows)),
                "{probe:#x} in {allowed:x?}"
            );
        }
    }
}

/// The outcome of one call in the filtered child: the return value or
/// `-errno`.
fn call(nr: libc::c_long, args: [libc::c_long; 5]) -> i64 {
    // SAFETY: raw syscalls with scalar or null arguments; none of them
    // writes through a pointer the child does not own.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4]) };
    match ret {
        -1 => -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
        n => {
            if nr == libc::SYS_socket || nr == libc::SYS_socketpair {
                // SAFETY: closing the descriptor this call just created.
                unsafe { libc::close(n as i32) };
            }
            n
        }
    }
}

/// (what, syscall, arguments, expected: `Ok` or `Err(errno)`).
type Check = (
    &'static str,
    libc::c_long,
    [libc::c_long; 5],
    Result<(), i32>,
);

fn checks() -> Vec<Check> {
    use libc::*;
    let vsock = AF_VSOCK as c_long;
    let stream = SOCK_STREAM as c_long;
    vec![
        (
            "socket inet",
            SYS_socket,
            [AF_INET as c_long, stream, 0, 0, 0],
            Ok(()),
        ),
        (
            "socket unix",
            SYS_socket,
            [AF_UNIX as c_long, stream, 0, 0, 0],
            Ok(()),
        ),
        (
            "socket netlink",
            SYS_socket,
            [AF_NETLINK as c_long, SOCK_RAW as c_long, 0, 0, 0],
            Ok(()),
        ),
        (
            "socket vsock",
            SYS_socket,
            [vsock, stream, 0, 0, 0],
            Err(EAFNOSUPPORT),
        ),
        (
            "socket vsock, high bits set",
            SYS_socket,
            [vsock | 1 << 32, stream, 0, 0, 0],
            Err(EAFNOSUPPORT),
        ),
        (
            "socket packet",
            SYS_socket,
            [AF_PACKET as c_long, SOCK_DGRAM as c_long, 0, 0, 0],
            Err(EAFNOSUPPORT),
        ),
        (
            "socket alg",
            SYS_socket,
            [AF_ALG as c_long, SOCK_SEQPACKET as c_long, 0, 0, 0],
            Err(EAFNOSUPPORT),
        ),
        (
            "socketpair inet",
            SYS_socketpair,
            [AF_INET as c_long, stream, 0, 0, 0],
            Err(EAFNOSUPPORT),
        ),
        (
            "personality query",
            SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0],
            Ok(()),
        ),
        (
            "personality ADDR_NO_RANDOMIZE",
            SYS_personality,
            [ADDR_NO_RANDOMIZE as c_long, 0, 0, 0, 0],
            Err(EPERM),
        ),
        ("kcmp", SYS_kcmp, [0, 0, 0, 0, 0], Err(EPERM)),
        (
            "pidfd_getfd",
            SYS_pidfd_getfd,
            [-1, -1, 0, 0, 0],
            Err(EPERM),
        ),
        ("syslog", SYS_syslog, [10, 0, 0, 0, 0], Err(EPERM)),
        (
            "get_mempolicy",
            SYS_get_mempolicy,
            [0, 0, 0, 0, 0],
            Err(EPERM),
        ),
        (
            "set_mempolicy",
            SYS_set_mempolicy,
            [0, 0, 0, 0, 0],
            Err(EPERM),
        ),
        ("mbind", SYS_mbind, [0, 0, 0, 0, 0], Err(EPERM)),
        (
            "migrate_pages",
            SYS_migrate_pages,
            [0, 0, 0, 0, 0],
            Err(EPERM),
        ),
        ("move_pages", SYS_move_pages, [0, 0, 0, 0, 0], Err(EPERM)),
        (
            "fanotify_init",
            SYS_fanotify_init,
            [0, 0, 0, 0, 0],
            Err(EPERM),
        ),
        ("unshare", SYS_unshare, [0, 0, 0, 0, 0], Err(EPERM)),
        (
            "name_to_handle_at",
            SYS_name_to_handle_at,
            [-1, 0, 0, 0, 0],
            Err(EPERM),
        ),
        (
            "io_uring_setup",
            SYS_io_uring_setup,
            [0, 0, 0, 0, 0],
            Err(EPERM),
        ),
        ("clone3", SYS_clone3, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("statmount", 457, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("listmount", 458, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("mseal", 462, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("open_tree_attr", 467, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("uselib", SYS_uselib, [0, 0, 0, 0, 0], Err(ENOSYS)),
        ("ustat", SYS_ustat, [0, 0, 0, 0, 0], Err(ENOSYS)),
    ]
}

/// Forks a child that installs the compiled profile ([`compiled`]) with the
/// agent's own code, runs `body` and writes its report to a pipe; returns the
/// report and how the child ended.
fn in_filtered_child(body: fn() -> String) -> (String, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let program = {
        use std::os::unix::fs::FileExt;
        let memfd = std::fs::File::from(compiled().unwrap());
        let mut bytes = vec![0u8; memfd.metadata().unwrap().len() as usize];
        memfd.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    };
    // SAFETY: the child only loads the filter, makes syscalls and writes to
    // the pipe before `_exit`; glibc's fork keeps malloc usable in it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(read);
        // SAFETY: prctl with scalar arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let report = match sandpit_agent::seccomp::install(&program) {
            Ok(()) => body(),
            Err(err) => format!("loading the filter failed: {err}"),
        };
        let mut pipe = std::fs::File::from(write);
        let _ = pipe.write_all(report.as_bytes());
        drop(pipe);
        // SAFETY: ends the forked child without running the parent's exit
        // handlers.
        unsafe { libc::_exit(0) };
    }
    drop(write);
    let mut report = String::new();
    std::fs::File::from(read)
        .read_to_string(&mut report)
        .unwrap();
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    (report, status)
}

#[test]
fn filter_blocks_and_allows_in_a_real_process() {
    let (report, status) = in_filtered_child(|| {
        let mut failures = String::new();
        for (what, nr, args, expected) in checks() {
            let got = call(nr, args);
            let ok = match expected {
                Ok(()) => got >= 0,
                Err(errno) => got == -i64::from(errno),
            };
            if !ok {
                failures.push_str(&format!("{what}: got {got}, expected {expected:?}\n"));
            }
        }
        // Namespaces through clone fail; a plain fork works.
        let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
        // SAFETY: clone with a null stack behaves like fork; a child that
        // should not exist leaves at once.
        let ns = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if ns == 0 {
            // SAFETY: leaves the unexpected child.
            unsafe { libc::_exit(0) };
        }
        if ns != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            failures.push_str(&format!("clone(CLONE_NEWUSER) returned {ns}\n"));
        }
        // SAFETY: fork in a single-threaded child; the grandchild leaves
        // at once.
        match unsafe { libc::fork() } {
            // SAFETY: the grandchild leaves without running any handler.
            0 => unsafe { libc::_exit(0) },
            -1 => failures.push_str("fork failed\n"),
            child => {
                let mut status = 0;
                // SAFETY: waits for the grandchild just forked.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
        failures
    });
    assert_eq!(status, 0, "child ended with {status:#x}: {report}");
    assert_eq!(report, "", "unexpected outcomes");
}

#[test]
fn i386_syscalls_kill_the_process() {
    let (report, status) = in_filtered_child(|| {
        // SAFETY: `int 0x80` getpid (20 in the i386 table); the registers
        // the compat entry may change are declared clobbered.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inlateout("eax") 20u32 => _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack)
            );
        }
        "survived an i386 syscall".to_string()
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
        "status {status:#x}: {report}"
    );
}

#[test]
fn every_rule_name_resolves() {
    // A name libseccomp cannot resolve would silently not be filtered.
    for name in DENIED.iter().chain(ALLOWED) {
        if !resolves(name) {
            eprintln!("libseccomp does not know {name}; the default action covers it");
        }
    }
    for name in ["mount", "socket", "clone", "personality", "kcmp", "syslog"] {
        assert!(resolves(name), "{name}");
    }
    assert!(!resolves("no_such_syscall"));
}

#[test]
fn the_compiled_filter_is_what_libseccomp_would_load() {
    // Not an empty or truncated program: a whole number of instructions,
    // and more than the handful a trivial filter has.
    use std::os::unix::fs::FileExt;
    let memfd = std::fs::File::from(compiled().unwrap());
    let len = memfd.metadata().unwrap().len();
    assert!(len % 8 == 0 && len / 8 > 100, "{len} bytes");
    // Sealed: nobody holding the descriptor can change it.
    assert!(memfd.write_at(b"x", 0).is_err());
}
