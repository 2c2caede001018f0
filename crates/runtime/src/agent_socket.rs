//! The agent's listening socket: bound on the host, handed to the agent as
//! fd 3 (and its compiled seccomp filter as fd 4).
//!
//! The server connects to a unix socket path on the host; the agent inherits
//! the already-listening socket, so the path never appears inside the
//! sandbox and connections queue up even before the agent runs.
//! libcontainer passes fds 3.. of the calling process on to the init
//! (`with_preserved_fds`), so the helper keeps fds 3 and 4 reserved and
//! lends them to one sandbox at a time, around `build()`.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};
use nix::unistd::dup2;
use thiserror::Error;

/// The fd the agent finds its listener on.
pub const AGENT_FD: RawFd = 3;
/// The fd the agent finds its seccomp filter on (see
/// [`crate::seccomp::compiled`]).
pub const FILTER_FD: RawFd = 4;
/// How many fds from [`AGENT_FD`] on the init inherits.
pub const INHERITED_FDS: i32 = 2;
/// `sun_path` holds 108 bytes, NUL included.
pub const MAX_PATH: usize = 107;

#[derive(Debug, Error)]
pub enum AgentSocketError {
    #[error("{0:?} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("failed to bind the agent socket at {path:?}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to place the agent's fds on {AGENT_FD} and {FILTER_FD}")]
    Fd(#[source] io::Error),
}

/// Where the agent sockets of the runtime whose state is in `state_dir`
/// go: `<state dir>/run/sockets`, in the runtime's tmpfs (see
/// `local::run_dir`), so a start's `bind` makes no inode on the host's
/// disk (on a journal-less ext4 a new inode costs a burst of creates about
/// 0.2 ms of CPU each). The runtime makes the directory when it starts.
pub fn dir_in(state_dir: &Path) -> PathBuf {
    crate::local::run_dir::path(state_dir).join("sockets")
}

/// Binds a listener at `path` (replacing a stale socket), mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, AgentSocketError> {
    remove_stale(path)?;
    let bind_error = |source| AgentSocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Removes the socket at `path` if there is one; other files are refused.
pub fn remove_stale(path: &Path) -> Result<(), AgentSocketError> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = fs::remove_file(path);
            Ok(())
        }
        Ok(_) => Err(AgentSocketError::NotASocket(path.to_path_buf())),
    }
}

/// Keeps fds 3 and 4 occupied (by `/dev/null`) so nothing else lands
/// there, and lends them to a listener and a filter on demand.
#[derive(Debug)]
pub struct InheritedFds {
    placeholder: OwnedFd,
}

impl InheritedFds {
    /// Reserves fds 3 and 4 for the life of the process.
    pub fn reserve() -> Result<Self, AgentSocketError> {
        // `/dev/null` may itself open on fd 3: keep a copy well above it and
        // close the original before fd 3 is filled.
        let raw = {
            let devnull = File::open("/dev/null").map_err(AgentSocketError::Fd)?;
            fcntl(devnull.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))
                .map_err(|e| AgentSocketError::Fd(e.into()))?
        };
        // SAFETY: fcntl just returned this new fd and nothing else owns it.
        let placeholder = unsafe { OwnedFd::from_raw_fd(raw) };
        let fds = Self { placeholder };
        fds.put_back()?;
        Ok(fds)
    }

    /// Runs `f` with `listener` on fd 3 and `filter` on fd 4 (both
    /// inheritable), then puts the placeholders back.
    pub fn lend<T>(
        &self,
        listener: BorrowedFd<'_>,
        filter: BorrowedFd<'_>,
        f: impl FnOnce() -> T,
    ) -> Result<T, AgentSocketError> {
        for (fd, at) in [(listener, AGENT_FD), (filter, FILTER_FD)] {
            dup2(fd.as_raw_fd(), at).map_err(|e| AgentSocketError::Fd(e.into()))?;
        }
        let out = f();
        self.put_back()?;
        Ok(out)
    }

    fn put_back(&self) -> Result<(), AgentSocketError> {
        for at in [AGENT_FD, FILTER_FD] {
            dup2(self.placeholder.as_fd().as_raw_fd(), at)
                .map_err(|e| AgentSocketError::Fd(e.into()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn binds_private_sockets_and_replaces_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        drop(bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn refuses_to_delete_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious");
        fs::write(&path, "data").unwrap();
        assert!(matches!(bind(&path), Err(AgentSocketError::NotASocket(_))));
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
    }
}
