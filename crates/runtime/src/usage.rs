//! What a running sandbox uses, read from its cgroup: CPU time, memory
//! (current and peak) and processes. v1 (one hierarchy per controller,
//! hybrid hosts included) and v2 (one unified hierarchy) are both read; a
//! number the kernel does not keep is `None` (v2 before Linux 5.19 has no
//! `memory.peak`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, PARENT};

/// A sandbox's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time of every process, user and system, in microseconds.
    pub cpu_usec: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: Option<u64>,
    pub processes: u64,
}

/// Usage of sandbox `id` read from the cgroup hierarchies mounted here;
/// `None` when it has no cgroup (not running).
pub fn read(id: &str) -> Option<Usage> {
    read_in(&cgroup::hierarchies(), id)
}

/// [`read`] over the given hierarchy mount points.
pub fn read_in(hierarchies: &[PathBuf], id: &str) -> Option<Usage> {
    let dirs: Vec<PathBuf> = hierarchies
        .iter()
        .map(|h| h.join(PARENT).join(id))
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return None;
    }
    let mut usage = Usage::default();
    let mut found = false;
    for dir in &dirs {
        if let Some(ns) = number(&dir.join("cpuacct.usage")) {
            usage.cpu_usec = ns / 1000;
            found = true;
        } else if let Some(usec) = keyed(&dir.join("cpu.stat"), "usage_usec") {
            usage.cpu_usec = usec;
            found = true;
        }
        if let Some(bytes) = number(&dir.join("memory.usage_in_bytes")) {
            usage.memory_bytes = bytes;
            usage.memory_peak_bytes = number(&dir.join("memory.max_usage_in_bytes"));
            found = true;
        } else if let Some(bytes) = number(&dir.join("memory.current")) {
            usage.memory_bytes = bytes;
            usage.memory_peak_bytes = number(&dir.join("memory.peak"));
            found = true;
        }
        if let Some(n) = number(&dir.join("pids.current")) {
            usage.processes = n;
            found = true;
        }
    }
    found.then_some(usage)
}

/// A file holding one number.
fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v1_controllers_in_separate_hierarchies() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (cpu, mem, pids) = (root.join("cpuacct"), root.join("memory"), root.join("pids"));
        let at = |h: &Path| h.join(PARENT).join("s1");
        write(&at(&cpu), "cpuacct.usage", "2500000\n");
        write(&at(&mem), "memory.usage_in_bytes", "4096\n");
        write(&at(&mem), "memory.max_usage_in_bytes", "8192\n");
        write(&at(&pids), "pids.current", "3\n");
        let usage = read_in(&[cpu, mem, pids], "s1").unwrap();
        assert_eq!(
            usage,
            Usage {
                cpu_usec: 2500,
                memory_bytes: 4096,
                memory_peak_bytes: Some(8192),
                processes: 3
            }
        );
        assert_eq!(read_in(&[root.join("cpuacct")], "other"), None);
    }

    #[test]
    fn v2_unified_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join(PARENT).join("s2");
        write(&dir, "cpu.stat", "usage_usec 1234\nuser_usec 1000\n");
        write(&dir, "memory.current", "100\n");
        write(&dir, "pids.current", "1\n");
        let usage = read_in(&[root], "s2").unwrap();
        assert_eq!(usage.cpu_usec, 1234);
        assert_eq!(usage.memory_bytes, 100);
        assert_eq!(usage.memory_peak_bytes, None);
        assert_eq!(usage.processes, 1);
    }
}
