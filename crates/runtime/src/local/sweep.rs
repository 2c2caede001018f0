//! `cleanup`: after a crash, remove what belongs to sandboxes the server no
//! longer knows.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::LocalError;
use super::LocalRuntime;
use crate::{cgroup, network};

impl LocalRuntime {
    /// Stops and removes every sandbox whose id is not in `keep`: recorded
    /// sandboxes, libcontainer state, cgroups under `/sandpit`, and `spv*`
    /// links. Returns the ids it removed something of. Goes on past
    /// failures and reports the first.
    pub fn cleanup(&mut self, keep: &[String]) -> Result<Vec<String>, LocalError> {
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let mut swept = BTreeSet::new();
        let mut first_error = None;
        for record in self.records()? {
            if !keep.contains(record.id.as_str()) {
                swept.insert(record.id.clone());
                first_error = first_error.or(self.teardown(&record).err());
            }
        }
        for id in dir_names(&self.dirs.containers)
            .into_iter()
            .chain(cgroup::sandbox_ids())
        {
            if !keep.contains(id.as_str()) {
                first_error = first_error.or(self.remove_container(&id).err());
                swept.insert(id);
            }
        }
        for id in dir_names(&self.dirs.bundles) {
            if !keep.contains(id.as_str()) {
                let _ = fs::remove_dir_all(self.dirs.bundle(&id));
            }
        }
        first_error = first_error.or(sweep_links(&keep, &mut swept).err());
        match first_error {
            Some(err) => Err(err),
            None => Ok(swept.into_iter().collect()),
        }
    }
}

impl LocalRuntime {
    /// Deletes the host links of sandboxes that are no longer running. A
    /// stopped sandbox's link goes with its network namespace, which the
    /// kernel tears down asynchronously; under load that can outlast the
    /// server. Waits up to `grace` for those to go by themselves, then
    /// deletes the rest. Links of running sandboxes, and links not (yet)
    /// named for a sandbox, are left alone.
    pub fn release_dead_links(&self, grace: Duration) -> Result<(), LocalError> {
        let deadline = Instant::now() + grace;
        loop {
            let dead = self.dead_links()?;
            if dead.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                for link in dead {
                    network::delete_link(link.index)?;
                }
                return Ok(());
            }
            sleep(Duration::from_millis(10));
        }
    }

    fn dead_links(&self) -> Result<Vec<network::Link>, LocalError> {
        let links = network::sandbox_links()?;
        let dead = links.into_iter().filter(|link| {
            network::owner(link).is_some_and(|id| match self.load(id) {
                Ok(None) => true,
                // A record without an init is a sandbox being started.
                Ok(Some(record)) => record.init.is_some() && !record.is_alive(),
                Err(_) => false,
            })
        });
        Ok(dead.collect())
    }
}

/// Deletes `spv*` links not owned by a kept sandbox.
fn sweep_links(keep: &HashSet<&str>, swept: &mut BTreeSet<String>) -> Result<(), LocalError> {
    for link in network::sandbox_links()? {
        let owner = network::owner(&link);
        if owner.is_some_and(|id| keep.contains(id)) {
            continue;
        }
        network::delete_link(link.index)?;
        swept.extend(owner.map(str::to_owned));
    }
    Ok(())
}

fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
