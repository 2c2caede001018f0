//! The capacity-limited writable layer: a sparse ext4 image per sandbox,
//! loop-mounted in the helper's mount namespace while the sandbox runs.
//!
//! The image is created (sparse, so it costs only its metadata, ~230 KB)
//! and formatted on the first start, and kept across stops, so the files in
//! it survive stop/start like a plain upper directory. A sandbox whose state
//! dir already has a plain `upper/` from before capacities were enforced
//! keeps using it.

use std::fs::{self, OpenOptions};
use std::io;
use std::process::Command;

use super::layout::SandboxPaths;
use crate::spec::SandboxSpec;

/// Absolute paths: the helper may run without a `PATH` that has `sbin`.
const MKFS: &str = "/sbin/mkfs.ext4";
const MOUNT: &str = "/bin/mount";

/// Whether `spec`'s writable layer lives in a disk image.
pub fn used(spec: &SandboxSpec, paths: &SandboxPaths) -> bool {
    spec.fs_capacity_bytes > 0 && (paths.disk_image.exists() || !paths.upper.exists())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Create (first time) and mount the image at `paths.disk`.
pub fn mount(capacity: u64, paths: &SandboxPaths) -> io::Result<()> {
    fs::create_dir_all(&paths.disk)?;
    if !paths.disk_image.exists() {
        let staging = paths.disk_image.with_extension("img.new");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&staging)?;
        file.set_len(capacity)?;
        drop(file);
        // No journal (the layer is scratch space that survives clean stops),
        // no reserved blocks (the sandbox's root may use every byte), one
        // inode per 64 KiB, inode tables initialised lazily.
        run(Command::new(MKFS)
            .args(["-q", "-F", "-m", "0", "-i", "65536"])
            .args(["-O", "^has_journal,^resize_inode"])
            .args(["-E", "lazy_itable_init=1,nodiscard"])
            .arg(&staging))?;
        fs::rename(&staging, &paths.disk_image)?;
    }
    run(Command::new(MOUNT)
        .args(["-t", "ext4", "-o", "loop,nodev,nosuid"])
        .arg(&paths.disk_image)
        .arg(&paths.disk))
}
