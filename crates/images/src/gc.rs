//! Garbage collection of the layer store: image records and layer
//! directories nothing refers to any more.
//!
//! The caller (the server) says which images are *referenced* — by a
//! snapshot, a template or a sandbox — by manifest digest. An image record
//! is kept when it is referenced, pinned by a pull in flight
//! ([`LayerStore::pin`]), or unreferenced for less than the grace period;
//! every layer of a kept image is kept, and so is every pinned layer. What
//! is left is removed once it has been unreferenced for the grace period:
//! the first pass that finds an entry unreferenced records when
//! (`ROOT/gc-marks.json`), and only a pass at least `grace` later removes
//! it, and only if the entry itself was not created or moved in (its
//! `ctime`; a layer's `mtime` comes from the image and proves nothing)
//! within `grace` either. So a pull that just finished, whose snapshot row
//! is not written yet, is never collected.
//!
//! Removal moves the entry into `tmp/` while the pin lock is held (a pull
//! pins before it checks what is present, so it either sees the entry gone
//! or the collector sees its pin), then removes it there without following
//! any symbolic link. Names that are not the store's own (`sha256-<hex>`,
//! `sha256-<hex>.json`) are never touched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{io_at, remove_any, LayerStore, StoreError};

/// The file of first-seen-unreferenced times, under the store's root.
const MARKS: &str = "gc-marks.json";

/// How one collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// How long an entry must have been unreferenced (and unchanged).
    pub grace: Duration,
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// The time of the pass (tests move it).
    pub now: SystemTime,
}

/// What a collection found and removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_seconds: u64,
    /// Image records removed (dry run: that would be).
    pub images_removed: u64,
    /// Layer directories removed (dry run: that would be).
    pub layers_removed: u64,
    /// Bytes of the files in the removed layers.
    pub bytes_freed: u64,
    /// Digests of the removed layers.
    pub removed_layers: Vec<String>,
    /// Digests of the removed images.
    pub removed_images: Vec<String>,
    /// Images and layers kept because something refers to them (or a pull
    /// in flight uses them).
    pub images_in_use: u64,
    pub layers_in_use: u64,
    /// Unreferenced entries kept because their grace period is not over.
    pub images_in_grace: u64,
    pub layers_in_grace: u64,
    /// Entries that could not be removed (left for the next pass).
    pub errors: Vec<String>,
}

/// Unix seconds of `t` (0 before the epoch).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `sha256-<64 hex>` → `sha256:<hex>`; `None` for any other name.
fn digest_of_key(key: &str) -> Option<String> {
    let hex = key.strip_prefix("sha256-")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("sha256:{hex}"))
}

/// One image record or layer directory found in the store.
struct Entry {
    digest: String,
    path: PathBuf,
    /// When the entry was last created, moved or changed (`ctime`).
    changed: u64,
}

/// The store's entries named `sha256-<hex>{suffix}` of the wanted type
/// (directories for layers, files for images); links and strangers are
/// skipped.
fn entries(dir: &Path, suffix: &str, want_dir: bool) -> Result<Vec<Entry>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        let Some(digest) = digest_of_key(key) else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if (want_dir && !meta.is_dir()) || (!want_dir && !meta.is_file()) {
            continue;
        }
        found.push(Entry {
            digest,
            path,
            changed: u64::try_from(meta.ctime()).unwrap_or(0),
        });
    }
    Ok(found)
}

/// Bytes of the regular files under `path`, no symbolic link followed (the
/// measure of the `layer_store_bytes` metric).
pub fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let Ok(children) = fs::read_dir(path) else {
        return 0;
    };
    children.flatten().map(|c| tree_bytes(&c.path())).sum()
}

/// What one pass decides for an unreferenced entry.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Remove,
    InGrace,
}

/// Whether an entry unreferenced since `since` and changed at `changed` may
/// go at `now`.
fn verdict(since: u64, changed: u64, now: u64, grace: Duration) -> Verdict {
    let grace = grace.as_secs();
    if now >= since.saturating_add(grace) && now >= changed.saturating_add(grace) {
        Verdict::Remove
    } else {
        Verdict::InGrace
    }
}

impl LayerStore {
    /// Collect what `referenced` (manifest digests) and pulls in flight do
    /// not use. See the module documentation.
    pub fn collect_garbage(
        &self,
        referenced: &HashSet<String>,
        options: GcOptions,
    ) -> Result<GcReport, StoreError> {
        let _one = self.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = secs(options.now);
        let old_marks = self.read_marks();
        let mut marks = BTreeMap::new();
        let mut report = GcReport {
            dry_run: options.dry_run,
            grace_seconds: options.grace.as_secs(),
            ..GcReport::default()
        };
        let pinned: HashSet<String> = self
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();

        // Images: which stay, and so which layers stay.
        let images = entries(&self.root().join("images"), ".json", false)?;
        // Layers of used images are in use; layers of images kept for their
        // grace period are kept with them, but their own grace runs.
        let mut live_layers = HashSet::new();
        let mut grace_layers = HashSet::new();
        let mut doomed_images = Vec::new();
        for image in images {
            let used = referenced.contains(&image.digest) || pinned.contains(&image.digest);
            let keep = if used {
                report.images_in_use += 1;
                true
            } else {
                let since = *old_marks.get(&image.digest).unwrap_or(&now);
                marks.insert(image.digest.clone(), since);
                match verdict(since, image.changed, now, options.grace) {
                    Verdict::InGrace => {
                        report.images_in_grace += 1;
                        true
                    }
                    Verdict::Remove => false,
                }
            };
            if !keep {
                doomed_images.push(image);
                continue;
            }
            match self.image(&image.digest) {
                Ok(Some(record)) if used => live_layers.extend(record.layers),
                Ok(Some(record)) => grace_layers.extend(record.layers),
                Ok(None) => {}
                Err(err) => {
                    // Which layers a kept image needs is unknown: keep
                    // every layer this pass.
                    report
                        .errors
                        .push(format!("{}: {err}; no layer removed", image.digest));
                    self.write_marks(&marks, &old_marks);
                    return Ok(report);
                }
            }
        }

        // Layers no kept image lists.
        let layers = entries(&self.root().join("layers"), "", true)?;
        let mut doomed_layers = Vec::new();
        for layer in layers {
            if live_layers.contains(&layer.digest) || pinned.contains(&layer.digest) {
                report.layers_in_use += 1;
                continue;
            }
            let since = *old_marks.get(&layer.digest).unwrap_or(&now);
            marks.insert(layer.digest.clone(), since);
            let verdict = match grace_layers.contains(&layer.digest) {
                true => Verdict::InGrace,
                false => verdict(since, layer.changed, now, options.grace),
            };
            match verdict {
                Verdict::InGrace => report.layers_in_grace += 1,
                Verdict::Remove => doomed_layers.push(layer),
            }
        }

        for image in doomed_images {
            if self.remove_entry(&image, options.dry_run, &mut report) {
                report.images_removed += 1;
                report.removed_images.push(image.digest.clone());
                if !options.dry_run {
                    marks.remove(&image.digest);
                }
            }
        }
        for layer in doomed_layers {
            let bytes = tree_bytes(&layer.path);
            if self.remove_entry(&layer, options.dry_run, &mut report) {
                report.layers_removed += 1;
                report.bytes_freed += bytes;
                report.removed_layers.push(layer.digest.clone());
                if !options.dry_run {
                    marks.remove(&layer.digest);
                }
            }
        }
        self.write_marks(&marks, &old_marks);
        Ok(report)
    }

    /// Move `entry` out of the store (unless a pull pinned it meanwhile),
    /// then remove it. True when it is gone (dry run: would be).
    fn remove_entry(&self, entry: &Entry, dry_run: bool, report: &mut GcReport) -> bool {
        let doomed = self.temp_path("gc");
        {
            let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
            if pins.contains_key(&entry.digest) {
                return false;
            }
            if dry_run {
                return true;
            }
            if let Err(err) = fs::rename(&entry.path, &doomed) {
                report
                    .errors
                    .push(format!("{}: {err}", entry.path.display()));
                return false;
            }
        }
        if let Err(err) = remove_any(&doomed) {
            // Out of the store already; `open` clears `tmp/` at start.
            tracing::warn!(path = %doomed.display(), error = %err, "removing a collected entry");
        }
        true
    }

    fn read_marks(&self) -> HashMap<String, u64> {
        let path = self.root().join(MARKS);
        fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Write the marks when they changed (best effort: losing them only
    /// restarts the grace periods).
    fn write_marks(&self, marks: &BTreeMap<String, u64>, old: &HashMap<String, u64>) {
        let same = marks.len() == old.len() && marks.iter().all(|(k, v)| old.get(k) == Some(v));
        if same {
            return;
        }
        let path = self.root().join(MARKS);
        let staging = self.temp_path("gc-marks");
        let written = serde_json::to_vec(marks)
            .map_err(io::Error::other)
            .and_then(|text| fs::write(&staging, text))
            .and_then(|()| fs::rename(&staging, &path));
        if let Err(err) = written {
            let _ = fs::remove_file(&staging);
            tracing::warn!(error = %err, "cannot record the garbage collector's marks");
        }
    }
}

#[cfg(test)]
#[path = "gc/tests.rs"]
mod tests;
