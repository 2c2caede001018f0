//! What the helper remembers about each sandbox, on disk, so that a new
//! helper (after a crash or an upgrade) can still stop it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Started;

/// One sandbox, written before anything is created for it and removed once
/// everything is gone again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub state_dir: PathBuf,
    pub agent_socket: PathBuf,
    pub host_if: String,
    /// Mounts made in the helper's namespace, in mount order.
    pub helper_mounts: Vec<PathBuf>,
    /// The init, once it exists (before `start` returns).
    pub init: Option<Init>,
    /// Set when `start` succeeded.
    pub started: Option<Started>,
    /// A gVisor sandbox: runsc has state for it, and its agent relay once
    /// started (see [`crate::gvisor`]).
    #[serde(default)]
    pub gvisor: Option<GvisorRecord>,
}

/// What a gVisor sandbox has beyond a namespaces one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GvisorRecord {
    pub relay: Option<Init>,
}

/// The init process: pid plus start time, so a recycled pid is never
/// mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    pub pid: i32,
    pub start_time: u64,
}

impl Record {
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = fs::read(path)?;
        serde_json::from_slice(&text).map_err(io::Error::other)
    }

    /// Writes atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&tmp, path)
    }

    /// Whether the init is still the process that was started.
    pub fn is_alive(&self) -> bool {
        self.init
            .is_some_and(|i| crate::process::is_alive(i.pid, i.start_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let record = Record {
            id: "a".into(),
            state_dir: "/s/a".into(),
            agent_socket: "/s/a.sock".into(),
            host_if: "spv1".into(),
            helper_mounts: vec!["/s/a/rootfs".into()],
            init: Some(Init {
                pid: 12,
                start_time: 34,
            }),
            started: None,
            gvisor: None,
        };
        record.save(&path).unwrap();
        assert_eq!(Record::load(&path).unwrap(), record);
        assert!(!dir.path().join("a.json.tmp").exists());
    }
}
