//! `stop` and the teardown shared with failed starts and sweeps.

use std::fs;
use std::time::Duration;

use libcontainer::container::Container;

use super::error::LocalError;
use super::layout::SandboxPaths;
use super::record::Record;
use super::{validate, LocalRuntime};
use crate::{agent_socket, cgroup, overlay, process};

/// How long a SIGKILLed init may take to exit.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalRuntime {
    /// Stops sandbox `id`; stopping one that is not running succeeds.
    pub fn stop(&mut self, id: &str) -> Result<(), LocalError> {
        validate::id(id)?;
        match self.load(id)? {
            Some(record) => self.teardown(&record),
            None => self.remove_container(id),
        }
    }

    /// Undoes everything `record` says exists, in reverse order of creation,
    /// going on past failures. The record is removed only when all of it
    /// succeeded, so a later stop or sweep can finish the job.
    ///
    /// The veth pair is not deleted here: it goes with the sandbox's network
    /// namespace once the init is dead. The kernel tears that namespace down
    /// asynchronously (under the RTNL lock, ~10 ms here), and waiting for it
    /// would double the cost of a stop. A link kept alive past that (say, by
    /// a socket the server opened in the namespace) is reclaimed when its
    /// slot is next used, by `cleanup`, or by `release_dead_links` when the
    /// helper exits.
    pub(super) fn teardown(&mut self, record: &Record) -> Result<(), LocalError> {
        let steps = [
            self.kill_init(record),
            self.teardown_gvisor(record),
            self.remove_container(&record.id),
            unmount_all(record),
            agent_socket::remove_stale(&record.agent_socket).map_err(LocalError::from),
        ];
        let _ = fs::remove_dir_all(self.dirs.bundle(&record.id));
        match steps.into_iter().find_map(Result::err) {
            Some(err) => Err(err),
            None => {
                let _ = fs::remove_file(self.dirs.record(&record.id));
                Ok(())
            }
        }
    }

    /// SIGKILLs the init (its pid namespace dies with it) and waits for it.
    fn kill_init(&mut self, record: &Record) -> Result<(), LocalError> {
        let Some(init) = record.init else {
            return Ok(());
        };
        let gone = process::kill_and_wait(init.pid, init.start_time, KILL_TIMEOUT);
        self.reap(&record.id);
        match gone {
            true => Ok(()),
            false => Err(LocalError::InitSurvived),
        }
    }

    /// Deletes libcontainer's state and the cgroup of sandbox `id`.
    pub(super) fn remove_container(&self, id: &str) -> Result<(), LocalError> {
        let dir = self.dirs.container(id);
        if dir.exists() {
            let deleted = Container::load(dir.clone()).and_then(|mut c| c.delete(true));
            if let Err(err) = deleted {
                tracing::warn!(sandbox = %id, error = %crate::error::chain(&err), "libcontainer delete failed; removing its state by hand");
                let _ = fs::remove_dir_all(&dir);
            }
        }
        cgroup::remove(id).map_err(LocalError::Cgroup)
    }
}

/// Detaches the helper-side mounts (newest first; only a gVisor
/// sandbox's are still there, see [`crate::mount_ns`]) and removes their
/// now empty mount points. The writable layer stays.
fn unmount_all(record: &Record) -> Result<(), LocalError> {
    for target in record.helper_mounts.iter().rev() {
        overlay::unmount(target)?;
        let _ = fs::remove_dir(target);
    }
    let _ = fs::remove_dir(SandboxPaths::new(&record.state_dir).mnt);
    Ok(())
}
