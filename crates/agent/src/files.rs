//! Reading and writing sandbox files for `/upload` and `/download`.
//!
//! An upload streams into a temporary file in the target's directory and is
//! renamed over the target only once complete, so readers never see a partial
//! file and a refused or failed upload leaves nothing behind. Missing parent
//! directories are created. A new file (or directory) takes the owner of its
//! parent directory, so files uploaded into a user's home stay theirs; an
//! overwritten file keeps its owner and mode.

use std::fs::{self, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

/// Mode of a newly uploaded file.
const NEW_FILE_MODE: u32 = 0o644;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found: {0}")]
    NotFound(PathBuf),
    #[error("{0} is a directory")]
    IsDirectory(PathBuf),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("permission denied: {0}")]
    PermissionDenied(PathBuf),
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot access {0}")]
    Io(PathBuf, #[source] io::Error),
}

impl FileError {
    fn from_io(path: &Path, error: io::Error) -> Self {
        let path = path.to_path_buf();
        match error.kind() {
            io::ErrorKind::NotFound => Self::NotFound(path),
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(path),
            io::ErrorKind::IsADirectory => Self::IsDirectory(path),
            _ => Self::Io(path, error),
        }
    }
}

/// Size and validators of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    /// Strong validator: changes whenever the content may have.
    pub etag: String,
    /// IMF-fixdate of the last modification.
    pub last_modified: String,
}

impl FileMeta {
    fn new(meta: &Metadata) -> Self {
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let nanos = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            size: meta.len(),
            etag: format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.len(), nanos),
            last_modified: http_date(modified),
        }
    }
}

/// Formats a time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(time: SystemTime) -> String {
    DateTime::<Utc>::from(time)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Opens a regular file for reading, with its metadata.
pub async fn open(path: &Path) -> Result<(tokio::fs::File, FileMeta), FileError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| FileError::from_io(path, e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| FileError::from_io(path, e))?;
    if meta.is_dir() {
        return Err(FileError::IsDirectory(path.to_path_buf()));
    }
    if !meta.is_file() {
        return Err(FileError::NotAFile(path.to_path_buf()));
    }
    Ok((file, FileMeta::new(&meta)))
}

/// An upload in progress. Dropping it without [`Upload::commit`] removes the
/// temporary file.
pub struct Upload {
    target: PathBuf,
    temp: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
    limit: u64,
}

impl Upload {
    /// Prepares to write `target`, refusing more than `limit` bytes.
    pub async fn begin(target: PathBuf, limit: u64) -> Result<Self, FileError> {
        let (target, temp) =
            tokio::task::spawn_blocking(move || prepare(&target).map(|t| (target, t)))
                .await
                .map_err(|e| FileError::Io(PathBuf::new(), io::Error::other(e)))??;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(|e| FileError::from_io(&temp, e))?;
        Ok(Self {
            target,
            temp,
            file: Some(file),
            written: 0,
            limit,
        })
    }

    /// Appends a chunk of the file.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        let file = self.file.as_mut().expect("file is open until commit");
        file.write_all(chunk)
            .await
            .map_err(|e| FileError::from_io(&self.temp, e))
    }

    /// Finishes the file and renames it over the target.
    pub async fn commit(mut self) -> Result<u64, FileError> {
        let mut file = self.file.take().expect("file is open until commit");
        file.flush()
            .await
            .map_err(|e| FileError::from_io(&self.temp, e))?;
        drop(file);
        let (temp, target) = (self.temp.clone(), self.target.clone());
        tokio::task::spawn_blocking(move || finish(&temp, &target))
            .await
            .map_err(|e| FileError::Io(PathBuf::new(), io::Error::other(e)))??;
        // Renamed: nothing left to clean up.
        self.temp = PathBuf::new();
        Ok(self.written)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Checks the target, creates missing parents and picks a temporary name.
fn prepare(target: &Path) -> Result<PathBuf, FileError> {
    if target.is_dir() {
        return Err(FileError::IsDirectory(target.to_path_buf()));
    }
    let parent = target
        .parent()
        .ok_or_else(|| FileError::IsDirectory(target.to_path_buf()))?;
    create_dirs(parent)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Ok(parent.join(format!(".{name}.{}.upload", &unique[..12])))
}

/// Creates `dir` and its missing ancestors, each owned like the nearest
/// existing ancestor.
fn create_dirs(dir: &Path) -> Result<(), FileError> {
    let mut missing = Vec::new();
    let mut existing = dir;
    while fs::symlink_metadata(existing).is_err() {
        missing.push(existing);
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let owner = fs::metadata(existing).map_err(|e| FileError::from_io(existing, e))?;
    for dir in missing.into_iter().rev() {
        fs::create_dir(dir)
            .or_else(ignore_exists)
            .map_err(|e| FileError::from_io(dir, e))?;
        chown_like(dir, &owner);
    }
    Ok(())
}

fn ignore_exists(error: io::Error) -> io::Result<()> {
    match error.kind() {
        io::ErrorKind::AlreadyExists => Ok(()),
        _ => Err(error),
    }
}

/// Gives the temporary file the target's (or its directory's) owner and
/// mode, then renames it into place.
fn finish(temp: &Path, target: &Path) -> Result<(), FileError> {
    let (owner, mode) = match fs::metadata(target) {
        Ok(meta) => (meta.clone(), meta.permissions().mode() & 0o7777),
        Err(_) => {
            let parent = target.parent().unwrap_or(Path::new("/"));
            let meta = fs::metadata(parent).map_err(|e| FileError::from_io(parent, e))?;
            (meta, NEW_FILE_MODE)
        }
    };
    chown_like(temp, &owner);
    fs::set_permissions(temp, Permissions::from_mode(mode))
        .map_err(|e| FileError::from_io(temp, e))?;
    fs::rename(temp, target).map_err(|e| FileError::from_io(target, e))
}

/// Best effort: only root may give files away, and failing is harmless.
fn chown_like(path: &Path, owner: &Metadata) {
    let _ = std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_format() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
