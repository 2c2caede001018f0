//! Turning a freshly spawned process into the runtime helper.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
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
/// a private mount namespace so its overlay mounts never appear on the host,
/// and sets up signals.
pub fn prepare() -> Result<(), SetupError> {
    single_threaded()?;
    private_mounts()?;
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

extern "C" fn ignore(_: libc::c_int) {}

/// Ctrl-C in a terminal signals the whole process group; the server must get
/// to stop its sandboxes first, so the helper survives SIGINT and SIGTERM
/// and exits when its stdin closes. A caught signal (not `SIG_IGN`) is reset
/// by exec, and SIGPIPE goes back to its default (Rust ignores it), so the
/// sandbox's init starts with default dispositions and an empty mask.
fn signals() -> Result<(), SetupError> {
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
