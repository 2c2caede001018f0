//! Turning a freshly spawned process into the runtime helper.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::dup2;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("the runtime helper must be single-threaded, it has {0} threads")]
    Threads(usize),
    #[error("failed to read the thread count")]
    Status(#[source] io::Error),
    #[error("failed to create a private mount namespace (is this root?)")]
    MountNamespace(#[source] nix::Error),
    #[error("failed to join the mount namespace {0}")]
    JoinMounts(String, #[source] io::Error),
    #[error("failed to set up signal handling")]
    Signals(#[source] nix::Error),
    #[error("failed to move the request pipes off stdin and stdout")]
    Stdio(#[source] io::Error),
}

/// The request and reply pipes, moved off fds 0 and 1 (close-on-exec), so
/// that no child (an init between fork and exec, `nft`) inherits them and no
/// stray print corrupts the protocol: fd 0 becomes `/dev/null`, fd 1 a copy
/// of stderr.
pub fn take_stdio() -> Result<(File, File), SetupError> {
    let requests = private_copy(0)?;
    let replies = private_copy(1)?;
    let devnull = File::open("/dev/null").map_err(SetupError::Stdio)?;
    dup2(devnull.as_raw_fd(), 0).map_err(|e| SetupError::Stdio(e.into()))?;
    dup2(2, 1).map_err(|e| SetupError::Stdio(e.into()))?;
    Ok((requests, replies))
}

fn private_copy(fd: RawFd) -> Result<File, SetupError> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(|e| SetupError::Stdio(e.into()))?;
    // SAFETY: fcntl just returned this new fd and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// Prepares this process: checks it is single-threaded (libcontainer forks
/// with clone3 and changes the process-wide working directory), moves it into
/// a private mount namespace so its overlay mounts never appear on the host
/// (the one helper `join` made, if given, so that helpers working in
/// parallel see each other's mounts), and sets up signals.
pub fn prepare(join: Option<u32>) -> Result<(), SetupError> {
    single_threaded()?;
    match join {
        Some(pid) => join_mounts(pid)?,
        None => private_mounts()?,
    }
    signals()?;
    umask(Mode::from_bits_truncate(0o022));
    let _ = std::env::set_current_dir("/");
    Ok(())
}

fn single_threaded() -> Result<(), SetupError> {
    let status = fs::read_to_string("/proc/self/status").map_err(SetupError::Status)?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    match threads {
        1 => Ok(()),
        n => Err(SetupError::Threads(n)),
    }
}

/// Containers' mount namespaces are cloned from this one.
fn private_mounts() -> Result<(), SetupError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(SetupError::MountNamespace)?;
    let flags = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(SetupError::MountNamespace)
}

/// Enters the mount namespace of process `pid` (another helper).
fn join_mounts(pid: u32) -> Result<(), SetupError> {
    let path = format!("/proc/{pid}/ns/mnt");
    let ns = File::open(&path).map_err(|e| SetupError::JoinMounts(path.clone(), e))?;
    setns(ns, CloneFlags::CLONE_NEWNS).map_err(|e| SetupError::JoinMounts(path, e.into()))
}

extern "C" fn ignore(_: libc::c_int) {}

/// The kernel's `struct sigaction` (x86_64 and arm64 layout), used through
/// the raw syscall: glibc's wrapper refuses signals 32 and 33, which it
/// reserves, yet they can arrive ignored from whoever started us.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Resets every ignored signal to its default. Ignored dispositions survive
/// exec, so they would otherwise leak into every sandbox (a shell's
/// background job ignores SIGQUIT, for example).
fn reset_ignored_signals() {
    let mask_size = std::mem::size_of::<u64>();
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction::default();
        let none = std::ptr::null::<KernelSigaction>();
        // SAFETY: with a null new action, rt_sigaction only writes the current
        // action into `old`, a valid kernel sigaction of the size the kernel
        // expects; `mask_size` is the kernel's sigset size.
        let read = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                none,
                &raw mut old,
                mask_size,
            )
        };
        if read == 0 && old.handler == libc::SIG_IGN {
            let default = KernelSigaction {
                handler: libc::SIG_DFL,
                ..Default::default()
            };
            let no_old = std::ptr::null_mut::<KernelSigaction>();
            // SAFETY: `default` is a valid kernel sigaction (SIG_DFL needs no
            // restorer); the old action is not requested.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &raw const default,
                    no_old,
                    mask_size,
                )
            };
        }
    }
}

/// Ctrl-C in a terminal signals the whole process group; the server must get
/// to stop its sandboxes first, so the helper survives SIGINT and SIGTERM
/// and exits when its stdin closes. A caught signal (not `SIG_IGN`) is reset
/// by exec, inherited ignored signals and SIGPIPE (Rust ignores it) go back
/// to their defaults, so the sandbox's init starts with default
/// dispositions and an empty mask.
fn signals() -> Result<(), SetupError> {
    reset_ignored_signals();
    let caught = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for (signal, action) in [
        (Signal::SIGINT, &caught),
        (Signal::SIGTERM, &caught),
        (Signal::SIGPIPE, &default),
        (Signal::SIGCHLD, &default),
    ] {
        // SAFETY: `ignore` is async-signal-safe (it does nothing), and no
        // other thread exists that could race on the disposition.
        unsafe { sigaction(signal, action) }.map_err(SetupError::Signals)?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(SetupError::Signals)
}
