//! Unpacking one layer tarball into a directory, refusing anything that
//! would reach outside it.
//!
//! Entries are written without ever following a symlink that the layer
//! itself created: every parent of an entry must be a real directory inside
//! the layer, `..` components are refused, hard links must point inside the
//! layer, and device nodes are skipped. Symlinks are stored verbatim — an
//! absolute target resolves inside the sandbox's root at run time, and the
//! host never follows it. Whiteouts become overlayfs whiteouts (a 0/0
//! character device) and opaque markers become the `trusted.overlay.opaque`
//! xattr, so unpacked layers stack as overlay lower directories.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer descriptor's media type (OCI or Docker).
    pub fn from_media_type(media_type: &str) -> Result<Self, UnpackError> {
        let mt = media_type.trim_end_matches(".nondistributable");
        if mt.ends_with("tar+gzip") || mt.ends_with("tar.gzip") {
            Ok(Compression::Gzip)
        } else if mt.ends_with("tar+zstd") || mt.ends_with("tar.zstd") {
            Ok(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with("rootfs.diff.tar") {
            Ok(Compression::None)
        } else {
            Err(UnpackError::MediaType(media_type.to_owned()))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsupported layer media type '{0}'")]
    MediaType(String),
    #[error("layer entry '{0}' escapes the layer directory")]
    Escape(String),
    #[error("layer unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("failed to read the layer archive")]
    Read(#[source] io::Error),
    #[error("failed to unpack layer entry '{path}'")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What an unpack did besides writing files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: usize,
    /// Character and block devices in the layer, which are never created.
    pub skipped_devices: usize,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Unpack `reader` (compressed as `compression`) into the existing directory
/// `dest`, writing at most `max_bytes` of file content.
pub fn unpack(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    max_bytes: u64,
) -> Result<Report, UnpackError> {
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(reader).map_err(UnpackError::Read)?)
        }
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    let mut report = Report::default();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        report.entries += 1;
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let shown = raw.display().to_string();
        let rel = relative(&raw).ok_or_else(|| UnpackError::Escape(shown.clone()))?;
        if rel.as_os_str().is_empty() {
            continue; // the layer's root itself
        }
        if entry.header().entry_type().is_file() {
            report.bytes += entry.size();
            if report.bytes > max_bytes {
                return Err(UnpackError::TooLarge(max_bytes));
            }
        }
        let entry_err = |source| UnpackError::Entry {
            path: shown.clone(),
            source,
        };
        real_parents(dest, &rel, true).map_err(|e| classify(e, &shown))?;
        let dst = dest.join(&rel);
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == OPAQUE_MARKER {
            let dir = dst.parent().unwrap_or(dest);
            xattr::set(dir, "trusted.overlay.opaque", b"y").map_err(entry_err)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let target = dst.with_file_name(hidden);
            remove_any(&target).map_err(entry_err)?;
            whiteout(&target).map_err(entry_err)?;
            continue;
        }
        match entry.header().entry_type() {
            EntryType::Char | EntryType::Block => {
                report.skipped_devices += 1;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::Escape(shown.clone()))?;
                let target = relative(&link).ok_or_else(|| UnpackError::Escape(shown.clone()))?;
                real_parents(dest, &target, false).map_err(|e| classify(e, &shown))?;
                remove_any(&dst).map_err(entry_err)?;
                fs::hard_link(dest.join(&target), &dst).map_err(entry_err)?;
            }
            EntryType::Directory => {
                let meta = fs::symlink_metadata(&dst).ok();
                if meta.is_some_and(|m| !m.is_dir()) {
                    remove_any(&dst).map_err(entry_err)?;
                }
                entry.unpack(&dst).map_err(entry_err)?;
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Symlink
            | EntryType::Fifo => {
                remove_any(&dst).map_err(entry_err)?;
                entry.unpack(&dst).map_err(entry_err)?;
            }
            _ => {} // metadata-only entries (pax, GNU long names) are consumed by `tar`
        }
    }
    Ok(report)
}

/// `path` made relative to the layer root, or `None` if it climbs out with
/// `..`. Leading `/` and `.` components are dropped, as tar does.
pub fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Check that every parent of `rel` under `dest` is a real directory (not a
/// symlink), creating missing ones when `create` is set.
fn real_parents(dest: &Path, rel: &Path, create: bool) -> io::Result<()> {
    let mut dir = dest.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for part in &parents[..parents.len().saturating_sub(1)] {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(io::Error::other(EscapeMarker)),
            Err(err) if err.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&dir)?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Marks an io error that means "a parent is a symlink or not a directory".
#[derive(Debug)]
struct EscapeMarker;

impl std::fmt::Display for EscapeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a parent directory is a symlink or not a directory")
    }
}

impl std::error::Error for EscapeMarker {}

fn classify(err: io::Error, shown: &str) -> UnpackError {
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<EscapeMarker>())
    {
        UnpackError::Escape(shown.to_owned())
    } else {
        UnpackError::Entry {
            path: shown.to_owned(),
            source: err,
        }
    }
}

/// Remove whatever is at `path` (never following a symlink).
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// An overlayfs whiteout: a 0/0 character device.
fn whiteout(path: &Path) -> io::Result<()> {
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests;
