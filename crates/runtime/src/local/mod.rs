//! The local backend: a sandbox is a libcontainer container (namespaces,
//! cgroup, seccomp, capabilities) on an overlay root, wired to the host by a
//! veth pair, with the agent as its init.
//!
//! [`LocalRuntime`] is not thread-safe and must live in the single-threaded
//! helper process (see [`crate::helper`]): libcontainer forks, changes the
//! process-wide working directory and oom score, and the agent's listener is
//! passed on fd 3 of the calling process. Every step of `start` is recorded
//! on disk first, so a failed start, a `stop` and a sweep after a crash all
//! undo it the same way.

mod disk;
mod error;
mod gvisor;
mod host;
mod layout;
mod loopdev;
mod record;
pub(crate) mod run_dir;
pub(crate) mod spares;
pub(crate) mod sparse;
mod start;
mod stop;
mod sweep;
mod validate;

use std::collections::HashMap;
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use disk::with_writable_layer;
pub use error::LocalError;
use host::HostFacts;
use layout::StateDirs;
use record::Record;

use crate::agent_socket::InheritedFds;
use crate::process::PidFd;
use crate::spec::RunningSandbox;

/// The local backend, owned by the helper process.
#[derive(Debug)]
pub struct LocalRuntime {
    dirs: StateDirs,
    fds: InheritedFds,
    /// The sandbox profile, compiled once ([`crate::seccomp::compiled`]).
    filter: std::os::fd::OwnedFd,
    host: HostFacts,
    /// The helper's own oom score: libcontainer lowers it to the agent's
    /// while building, and it is put back afterwards.
    oom_score_adj: String,
    /// Inits this process is the parent of, until they are reaped.
    children: HashMap<String, PidFd>,
    /// The capacity of the last start's disk, whose spares to make next
    /// ([`LocalRuntime::make_spares`]).
    spares_wanted: Option<u64>,
}

impl LocalRuntime {
    /// Opens (creating if needed) the state under `state_dir`, mode 0700: it
    /// holds sandbox environments. Reserves fd 3 of this process.
    pub fn new(state_dir: &Path) -> Result<Self, LocalError> {
        fs::create_dir_all(state_dir).map_err(LocalError::State)?;
        fs::set_permissions(state_dir, Permissions::from_mode(0o700)).map_err(LocalError::State)?;
        let dirs = StateDirs::new(state_dir);
        for dir in dirs.all() {
            fs::create_dir_all(dir).map_err(LocalError::State)?;
        }
        crate::cgroup::warm_up();
        let oom = fs::read_to_string("/proc/self/oom_score_adj").map_err(LocalError::State)?;
        Ok(Self {
            dirs,
            fds: InheritedFds::reserve()?,
            filter: crate::seccomp::compiled()?,
            host: HostFacts::probe(state_dir),
            oom_score_adj: oom.trim().to_owned(),
            children: HashMap::new(),
            spares_wanted: None,
        })
    }

    /// Whether sandboxes can have a user namespace on this host.
    pub fn userns_supported(&self) -> bool {
        self.host.userns
    }

    /// Sandboxes whose init is still alive.
    pub fn running(&self) -> Result<Vec<RunningSandbox>, LocalError> {
        let records = self.records()?;
        let alive = records.into_iter().filter(Record::is_alive);
        let running = alive.filter_map(|r| {
            Some(RunningSandbox {
                started: r.started?,
                id: r.id,
            })
        });
        Ok(running.collect())
    }

    /// Inits to watch for exit, so they can be reaped promptly.
    pub fn children(&self) -> impl Iterator<Item = (&str, &PidFd)> {
        self.children.iter().map(|(id, fd)| (id.as_str(), fd))
    }

    /// Reaps the init of sandbox `id` once it exited.
    pub fn reap(&mut self, id: &str) {
        if let Some(pidfd) = self.children.remove(id) {
            pidfd.reap();
        }
    }

    fn load(&self, id: &str) -> Result<Option<Record>, LocalError> {
        match Record::load(&self.dirs.record(id)) {
            Ok(record) => Ok(Some(record)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalError::State(e)),
        }
    }

    fn save(&self, record: &Record) -> Result<(), LocalError> {
        record
            .save(&self.dirs.record(&record.id))
            .map_err(LocalError::State)
    }

    fn records(&self) -> Result<Vec<Record>, LocalError> {
        let entries = fs::read_dir(&self.dirs.records).map_err(LocalError::State)?;
        let paths = entries.flatten().map(|e| e.path());
        let json = paths.filter(|p| p.extension().is_some_and(|x| x == "json"));
        Ok(json.filter_map(|p| Record::load(&p).ok()).collect())
    }
}
