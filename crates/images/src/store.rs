//! The content-addressed layer store under the data dir.
//!
//! ```text
//! ROOT/layers/sha256-<hex>/     one unpacked layer, named by its blob digest
//! ROOT/images/sha256-<hex>.json one image (by manifest digest): its layers and config
//! ROOT/tmp/                     blobs being downloaded, layers being unpacked
//! ```
//!
//! A layer directory appears only complete (unpacked in `tmp/`, then
//! renamed), so its presence means it is usable; it is never modified
//! afterwards and is shared read-only by every sandbox as an overlay lower
//! directory.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::unpack::{self, Compression, Report, UnpackError};

/// One pulled (or captured) image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference it was pulled as (informational).
    pub reference: String,
    /// Manifest digest (`sha256:...`); the record's key.
    pub digest: String,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("'{0}' is not a sha256 digest")]
    Digest(String),
    #[error("layer store I/O failed at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image record {0} is corrupt")]
    Corrupt(String, #[source] serde_json::Error),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `sha256:<64 hex>` → `sha256-<hex>`, the only names the store uses.
pub fn digest_key(digest: &str) -> Result<String, StoreError> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256-{}", hex.to_ascii_lowercase()))
        }
        _ => Err(StoreError::Digest(digest.to_owned())),
    }
}

#[derive(Debug)]
pub struct LayerStore {
    root: PathBuf,
    tmp_seq: AtomicU64,
    /// Digests (images and layers) a pull in flight uses: garbage
    /// collection never removes them ([`LayerStore::pin`]). The collector
    /// holds this lock while it decides on and moves out each entry.
    pub(crate) pins: Mutex<HashMap<String, usize>>,
    /// One collection at a time.
    pub(crate) gc_lock: Mutex<()>,
}

/// Keeps a digest from garbage collection while it lives.
#[derive(Debug)]
pub struct Pin {
    store: Arc<LayerStore>,
    digest: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.store.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = pins.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["layers", "images", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        // Leftovers of an interrupted pull.
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
            let _ = remove_any(&entry.path());
        }
        Ok(Self {
            root: root.to_owned(),
            tmp_seq: AtomicU64::new(0),
            pins: Mutex::default(),
            gc_lock: Mutex::default(),
        })
    }

    /// Keep `digest` (an image's or a layer's) from garbage collection until
    /// the returned guard is dropped. Pin before checking whether it is
    /// present: a collection either ran before (and the check sees it
    /// gone) or sees the pin.
    pub fn pin(self: &Arc<Self>, digest: &str) -> Pin {
        *self
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.to_owned())
            .or_default() += 1;
        Pin {
            store: self.clone(),
            digest: digest.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path under `tmp/`.
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub fn layer_dir(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("layers").join(digest_key(digest)?))
    }

    pub fn has_layer(&self, digest: &str) -> bool {
        self.layer_dir(digest).is_ok_and(|d| d.is_dir())
    }

    /// Unpack the blob at `blob` as layer `digest`, unless already present.
    pub fn unpack_layer(
        &self,
        digest: &str,
        blob: &Path,
        compression: Compression,
        max_bytes: u64,
    ) -> Result<Option<Report>, StoreError> {
        let dir = self.layer_dir(digest)?;
        if dir.is_dir() {
            return Ok(None);
        }
        let staging = self.temp_path("layer");
        fs::create_dir(&staging).map_err(io_at(&staging))?;
        let result = fs::File::open(blob)
            .map_err(io_at(blob))
            .and_then(|file| {
                let reader = io::BufReader::with_capacity(1 << 20, file);
                Ok(unpack::unpack(reader, compression, &staging, max_bytes)?)
            })
            .and_then(|report| {
                fs::rename(&staging, &dir).map_err(io_at(&dir))?;
                Ok(report)
            });
        if result.is_err() {
            let _ = remove_any(&staging);
        }
        result.map(Some)
    }

    /// Move an already-built directory in as layer `digest` (e.g. a captured
    /// writable layer).
    pub fn adopt_layer(&self, digest: &str, dir: &Path) -> Result<PathBuf, StoreError> {
        let dest = self.layer_dir(digest)?;
        if dest.is_dir() {
            let _ = remove_any(dir);
        } else {
            fs::rename(dir, &dest).map_err(io_at(&dest))?;
        }
        Ok(dest)
    }

    fn image_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .root
            .join("images")
            .join(format!("{}.json", digest_key(digest)?)))
    }

    pub fn image(&self, digest: &str) -> Result<Option<ImageRecord>, StoreError> {
        let path = self.image_path(digest)?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let record =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(digest.to_owned(), e))?;
        Ok(Some(record))
    }

    pub fn put_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let path = self.image_path(&record.digest)?;
        let staging = self.temp_path("image");
        let text = serde_json::to_vec_pretty(record).expect("records serialise");
        fs::write(&staging, text).map_err(io_at(&staging))?;
        fs::rename(&staging, &path).map_err(io_at(&path))
    }

    /// The image's layer directories as overlay lower dirs: topmost first.
    pub fn lower_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, StoreError> {
        record
            .layers
            .iter()
            .rev()
            .map(|d| self.layer_dir(d))
            .collect()
    }
}

/// Remove `path` (a directory tree, a file or a link) without following
/// any symbolic link: `remove_dir_all` walks with `openat`/`unlinkat` and
/// `O_NOFOLLOW`.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_are_strict() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_key(&format!("sha256:{hex}")).unwrap(),
            format!("sha256-{hex}")
        );
        for bad in [
            "sha256:../../x",
            "md5:abc",
            "sha256:",
            &format!("sha256:{hex}/"),
        ] {
            assert!(digest_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::open(dir.path()).unwrap();
        let record = ImageRecord {
            reference: "r".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
            layers: vec![format!("sha256:{}", "c".repeat(64))],
            config: ImageConfig::default(),
        };
        assert_eq!(store.image(&record.digest).unwrap(), None);
        store.put_image(&record).unwrap();
        assert_eq!(store.image(&record.digest).unwrap(), Some(record.clone()));
        assert_eq!(store.lower_dirs(&record).unwrap().len(), 1);
    }
}
