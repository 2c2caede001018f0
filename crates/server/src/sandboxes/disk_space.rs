//! The free-space guard. Writable layers and volumes are sparse disk
//! images, so their capacities add up to more than the disk holds; a
//! sandbox is not created or started while the data dir's file system has
//! less than `Defaults::min_free_disk_bytes` available, so sandboxes do not
//! push the host disk to 100 %.

use std::path::Path;

use nix::sys::statvfs::statvfs;

use crate::error::ApiError;

/// Bytes available to unprivileged writers on `dir`'s file system.
fn available(dir: &Path) -> Result<u64, ApiError> {
    let stat = statvfs(dir).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// Refuses (507) when less than `floor` bytes are free under `dir`.
pub fn check(dir: &Path, floor: u64) -> Result<(), ApiError> {
    let free = available(dir)?;
    if free >= floor {
        return Ok(());
    }
    Err(ApiError::InsufficientStorage(format!(
        "Not enough free disk space on the server: {} MiB free, {} MiB required to start a sandbox",
        free >> 20,
        floor >> 20
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_floor_only() {
        let dir = std::env::temp_dir();
        assert!(check(&dir, 0).is_ok());
        let err = check(&dir, u64::MAX).unwrap_err();
        assert!(matches!(err, ApiError::InsufficientStorage(m) if m.contains("free disk space")));
    }
}
