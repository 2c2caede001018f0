//! Spare state directories: a new sandbox's directory, ready before the
//! sandbox is.
//!
//! A first start made the sandbox's state directory and its disk image, a
//! copy of the layer's blank, on the host's disk, and then `LOOP_CONFIGURE`
//! wrote the copy back (the kernel fsyncs a loop device's file when it
//! attaches it): about 1.5 ms of a 20 ms cold create on the 2-core host,
//! part of it waiting for the disk. So the helpers keep [`PER_CAPACITY`]
//! spares of each capacity recently started in `runtime/spares/`: a
//! directory holding `disk.img`, a copy of the blank already written back.
//! A start renames one into place (the same file system as the sandboxes'
//! directories, under the data dir), and the helper makes the next one
//! when no request is waiting (so a burst of creates is not slowed by it:
//! it takes what spares there are, then makes directories as before). Anything unusual — no spare, a state directory that has
//! files, another file system — falls back to making the directory and the
//! copy as before.
//!
//! Spares hold only a blank file system. They are made by the helper, under
//! its 0700 state directory, and one is never handed out twice: the rename
//! moves it, and a helper that loses the race for it tries the next.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::disk;
use super::layout::SandboxPaths;

/// Spares kept of each capacity.
pub const PER_CAPACITY: usize = 2;
/// Spares kept in all: beyond it, a capacity's spare replaces the oldest
/// of another capacity.
const MAX_SPARES: usize = 8;
/// Suffix of a spare still being made.
const MAKING: &str = ".new";

/// Makes `state_dir` from a spare of `capacity`. `false` if there was none
/// to take or `state_dir` already has files: the caller makes it.
pub fn take(spares: &Path, capacity: u64, state_dir: &Path) -> bool {
    for spare in ready(spares, capacity) {
        // Replaces an empty `state_dir`; fails on one with files in it.
        match fs::rename(&spare, state_dir) {
            Ok(()) => return true,
            // Another helper took it first.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return false,
        }
    }
    false
}

/// Makes spares of `capacity` until there are [`PER_CAPACITY`], one
/// helper at a time (under `spares.lock`).
pub fn refill(spares: &Path, blanks: &Path, capacity: u64) -> io::Result<()> {
    let _lock = disk::exclusive(spares)?;
    while ready(spares, capacity).len() < PER_CAPACITY {
        evict_other(spares, capacity)?;
        make(spares, blanks, capacity)?;
    }
    Ok(())
}

/// Removes every spare of the runtime whose state is in `state_root`: a new
/// server's helpers make them from its blanks (the last server's may have
/// had other ones), and a helper killed while making one left it half made.
pub fn clear_in(state_root: &Path) -> io::Result<()> {
    clear(&super::layout::StateDirs::new(state_root).spares)
}

fn clear(spares: &Path) -> io::Result<()> {
    match fs::remove_dir_all(spares) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    fs::create_dir_all(spares)
}

/// Spares of `capacity` ready to take.
fn ready(spares: &Path, capacity: u64) -> Vec<PathBuf> {
    let prefix = format!("{capacity}-");
    let Ok(entries) = fs::read_dir(spares) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && !name.ends_with(MAKING)
        })
        .map(|e| e.path())
        .collect()
}

/// Below [`MAX_SPARES`] in all, removing the oldest spare of another
/// capacity if needed.
fn evict_other(spares: &Path, capacity: u64) -> io::Result<()> {
    let prefix = format!("{capacity}-");
    let mut others: Vec<(SystemTime, PathBuf)> = Vec::new();
    let mut total = 0;
    for entry in fs::read_dir(spares)?.flatten() {
        total += 1;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(&prefix) {
            let made = entry.metadata().and_then(|m| m.modified());
            others.push((made.unwrap_or(UNIX_EPOCH), entry.path()));
        }
    }
    if total < MAX_SPARES {
        return Ok(());
    }
    others.sort();
    match others.first() {
        Some((_, oldest)) => fs::remove_dir_all(oldest),
        None => Ok(()),
    }
}

/// Makes one spare: a directory holding a copy of the blank, written back
/// before the directory is renamed into view.
fn make(spares: &Path, blanks: &Path, capacity: u64) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!("{capacity}-{}-{nanos}", std::process::id());
    let making = spares.join(format!("{name}{MAKING}"));
    fs::create_dir(&making)?;
    let made = (|| {
        let image = SandboxPaths::new(&making).disk_image;
        disk::copy_layer_blank(capacity, &image, blanks)?;
        File::open(&image)?.sync_all()?;
        fs::rename(&making, spares.join(&name))
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&making);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mkfs.ext4 makes the blank), like the runtime's other
    /// tests.
    #[test]
    fn spares_are_made_taken_once_and_refilled() {
        let dir = tempfile::tempdir().unwrap();
        let (spares, blanks) = (dir.path().join("spares"), dir.path().join("blanks"));
        clear(&spares).unwrap();
        let capacity = 64 << 20;
        assert!(!take(&spares, capacity, &dir.path().join("none-yet")));
        refill(&spares, &blanks, capacity).unwrap();
        assert_eq!(ready(&spares, capacity).len(), PER_CAPACITY);

        let state = dir.path().join("sandbox");
        assert!(take(&spares, capacity, &state));
        let image = SandboxPaths::new(&state).disk_image;
        assert_eq!(fs::metadata(&image).unwrap().len(), capacity);
        assert_eq!(ready(&spares, capacity).len(), PER_CAPACITY - 1);
        // A state dir with files keeps them; no spare is used up.
        assert!(!take(&spares, capacity, &state));
        assert_eq!(ready(&spares, capacity).len(), PER_CAPACITY - 1);
        // Other capacities have none.
        assert!(!take(&spares, capacity * 2, &dir.path().join("other")));

        refill(&spares, &blanks, capacity).unwrap();
        assert_eq!(ready(&spares, capacity).len(), PER_CAPACITY);
        clear(&spares).unwrap();
        assert_eq!(fs::read_dir(&spares).unwrap().count(), 0);
    }

    #[test]
    fn spares_stay_bounded_across_capacities() {
        let dir = tempfile::tempdir().unwrap();
        let (spares, blanks) = (dir.path().join("spares"), dir.path().join("blanks"));
        clear(&spares).unwrap();
        for n in 1..=6u64 {
            refill(&spares, &blanks, n << 24).unwrap();
        }
        assert!(fs::read_dir(&spares).unwrap().count() <= MAX_SPARES);
        assert_eq!(ready(&spares, 6 << 24).len(), PER_CAPACITY);
    }
}
