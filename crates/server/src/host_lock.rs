//! One `sandpit serve` per host.
//!
//! Much of what a server manages is host-wide: the cgroup parent, the `spv*`
//! links, the nftables table and the egress ports. A second server's
//! start-up sweep would tear down the first one's sandboxes, so `serve`
//! takes an exclusive `flock` on [`DEFAULT_PATH`] before it touches
//! anything host-wide and holds it until the process exits (the kernel
//! drops it then, even after `kill -9`). The file names the holder — pid,
//! data dir, listen address — so a refused start can say who runs.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the lock lives: `/run` is per boot, so a stale file never
/// outlives the host's processes (the lock itself is what counts).
pub const DEFAULT_PATH: &str = "/run/sandpit.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum HostLockError {
    #[error(
        "another sandpit serve is running on this host ({holder}); \
         stop it first: one server per host (it manages host-wide cgroups, links and firewall rules)"
    )]
    Held { holder: String },
    #[error("cannot use the host lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct HostLock {
    file: File,
    path: PathBuf,
}

impl HostLock {
    /// Takes the lock at `path` for this process, serving `data_dir` on
    /// `listen`, or says who holds it.
    pub fn acquire(path: &Path, data_dir: &Path, listen: &str) -> Result<Self, HostLockError> {
        let io = |source| HostLockError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(HostLockError::Held {
                    holder: describe(&holder),
                });
            }
            Err(TryLockError::Error(err)) => return Err(io(err)),
        }
        let mut lock = Self {
            file,
            path: path.to_owned(),
        };
        lock.record(data_dir, listen).map_err(io)?;
        Ok(lock)
    }

    /// Rewrites the holder's description (e.g. once the listen address is
    /// known).
    pub fn record(&mut self, data_dir: &Path, listen: &str) -> std::io::Result<()> {
        let text = format!(
            "pid={}\ndata_dir={}\nlisten={listen}\n",
            std::process::id(),
            data_dir.display()
        );
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// "pid 12, data dir /x, listening on 127.0.0.1:8080" from the lock file.
fn describe(contents: &str) -> String {
    let field = |name: &str| {
        contents
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("unknown")
    };
    format!(
        "pid {}, data dir {}, listening on {}",
        field("pid"),
        field("data_dir"),
        field("listen")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sandpit-host-lock-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("sandpit.lock")
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_description() {
        let path = temp_path("second");
        let mut first =
            HostLock::acquire(&path, Path::new("/data/one"), "127.0.0.1:0").expect("first");
        first
            .record(Path::new("/data/one"), "127.0.0.1:8080")
            .expect("record");
        // A second open file description conflicts, as another process's would.
        let err = HostLock::acquire(&path, Path::new("/data/two"), "127.0.0.1:9090")
            .expect_err("second must be refused");
        let message = err.to_string();
        let pid = std::process::id();
        assert!(
            message.contains(&format!(
                "pid {pid}, data dir /data/one, listening on 127.0.0.1:8080"
            )),
            "{message}"
        );
        drop(first);
        let again = HostLock::acquire(&path, Path::new("/data/two"), "127.0.0.1:9090")
            .expect("free after the first is dropped");
        let contents = std::fs::read_to_string(again.path()).expect("read");
        assert_eq!(
            contents,
            format!("pid={pid}\ndata_dir=/data/two\nlisten=127.0.0.1:9090\n")
        );
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn describe_tolerates_garbage() {
        assert_eq!(
            describe("junk"),
            "pid unknown, data dir unknown, listening on unknown"
        );
    }
}
