//! The runtime's state that describes running processes only — the
//! records, libcontainer's state, the bundles, the agents' sockets — kept
//! in a tmpfs at `<state dir>/run`, as runc keeps its state in `/run`.
//!
//! Why: a start wrote eight or so new files and directories there (a record
//! saved three times through a temporary file, libcontainer's directory and
//! two files), and on a journal-less ext4 each new inode costs about 0.2 ms
//! of CPU in a burst (issue 19). None of it means anything after a reboot,
//! when no sandbox runs.
//!
//! The tmpfs is mounted in the caller's (the server's, the host's) mount
//! namespace before the helpers' namespace is copied from it, so the
//! helpers and the server see the same files, and it outlives a server
//! that dies: the next one finds it mounted, with the records of the
//! sandboxes still running, and adopts them. It is unmounted when the last
//! [`RunDir`] of this process goes and no sandbox is recorded in it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

/// Source name of the mount, as `mountinfo` shows it.
const SOURCE: &str = "sandpit-run";
/// A record and libcontainer's state take ~10 KiB per running sandbox.
const OPTIONS: &str = "mode=0700,size=256m";

/// The tmpfs's path under a helper's state dir.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("run")
}

/// How many [`RunDir`]s of this process hold each path.
static HOLDERS: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

/// The tmpfs at [`path`], mounted while held (see the module docs).
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// The directories whose entries mean a sandbox is still recorded.
    recorded: [PathBuf; 2],
}

impl RunDir {
    /// Mounts the tmpfs under `state_dir` unless it is mounted already. A
    /// host where mounting is refused keeps the state in a plain directory.
    pub fn hold(state_dir: &Path) -> Self {
        let dir = path(state_dir);
        let mut holders = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        let count = holders.entry(dir.clone()).or_insert(0);
        if *count == 0 {
            if let Err(err) = mount_tmpfs(&dir) {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot mount the runtime's tmpfs; its state stays on disk");
            }
        }
        *count += 1;
        let dirs = super::layout::StateDirs::new(state_dir);
        Self {
            path: dir,
            recorded: [dirs.records, dirs.containers],
        }
    }
}

impl Drop for RunDir {
    /// The last holder unmounts the tmpfs if no sandbox is recorded in it.
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = holders.get_mut(&self.path) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        holders.remove(&self.path);
        let empty = |dir: &PathBuf| fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if self.recorded.iter().all(empty) && is_tmpfs_mount(&self.path) {
            if let Err(err) = umount2(&self.path, MntFlags::MNT_DETACH) {
                tracing::warn!(dir = %self.path.display(), error = %err, "cannot unmount the runtime's tmpfs");
            }
        }
    }
}

fn mount_tmpfs(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if is_tmpfs_mount(dir) {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(SOURCE), dir, Some("tmpfs"), flags, Some(OPTIONS)).map_err(io::Error::from)
}

/// Whether `dir` is the root of a tmpfs mount.
fn is_tmpfs_mount(dir: &Path) -> bool {
    let tmpfs = statfs(dir).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    tmpfs && dir.parent().is_some_and(|parent| dev(parent) != dev(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mounts), like the runtime's other tests.
    #[test]
    fn mounted_while_held_and_kept_while_a_sandbox_is_recorded() {
        let state = tempfile::tempdir().unwrap();
        let dir = path(state.path());
        let records = super::super::layout::StateDirs::new(state.path()).records;
        let first = RunDir::hold(state.path());
        let second = RunDir::hold(state.path());
        assert!(is_tmpfs_mount(&dir));
        drop(first);
        assert!(is_tmpfs_mount(&dir), "unmounted under another holder");
        fs::create_dir_all(&records).unwrap();
        fs::write(records.join("a.json"), "{}").unwrap();
        drop(second);
        assert!(is_tmpfs_mount(&dir), "unmounted with a sandbox recorded");
        // A server that starts again finds it, with the record.
        let again = RunDir::hold(state.path());
        assert!(records.join("a.json").exists());
        fs::remove_file(records.join("a.json")).unwrap();
        drop(again);
        assert!(!is_tmpfs_mount(&dir), "left mounted with nothing recorded");
    }
}
