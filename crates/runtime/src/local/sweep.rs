//! `cleanup`: after a crash, remove what belongs to sandboxes the server no
//! longer knows.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

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
