//! `glob` and `grep` over the sandbox filesystem.
//!
//! Both walk the tree under a directory depth-first in name order (a
//! directory's contents right after it), never
//! following symlinks, and stop at a result limit or a deadline, reporting
//! `truncated`. `grep` searches regular files for a literal string, skips
//! files that look binary (a NUL in the first 8 KiB) and never descends into
//! `/proc`, `/sys` or `/dev`, whose files can block or never end.

mod pattern;

use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};

pub use pattern::{Pattern, PatternError};

use crate::wire::{FileInfo, GrepMatch};

/// Results returned when the request sets no limit.
pub const DEFAULT_GLOB_LIMIT: usize = 10_000;
pub const DEFAULT_GREP_LIMIT: usize = 1_000;
/// Largest limit honoured.
pub const MAX_LIMIT: usize = 100_000;
/// How long one search may run before answering with what it found.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Longest line text returned by grep, in bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Bytes inspected to decide whether a file is binary.
const BINARY_SNIFF_BYTES: usize = 8192;

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("directory not found: {0}")]
    NotFound(PathBuf),
    #[error("not a directory: {0}")]
    NotADirectory(PathBuf),
    #[error("invalid pattern")]
    Pattern(#[source] PatternError),
    #[error("search text is empty")]
    EmptyNeedle,
    #[error("cannot read {0}")]
    Io(PathBuf, #[source] io::Error),
}

/// Matches and whether the search stopped early.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<T> {
    pub matches: Vec<T>,
    pub truncated: bool,
}

/// Entries under `root` whose relative path matches `pattern`.
pub fn glob(root: &Path, pattern: &str, limit: usize) -> Result<Found<FileInfo>, SearchError> {
    let pattern = Pattern::new(pattern).map_err(SearchError::Pattern)?;
    let mut found = Vec::new();
    let truncated = walk(root, &Prune::none(), &mut |entry| {
        let segments = entry.segments();
        if pattern.matches(&segments) {
            found.push(file_info(&entry.path, &entry.meta));
        }
        Visit {
            descend: pattern.may_descend(&segments),
            stop: found.len() >= limit,
        }
    })?;
    Ok(Found {
        matches: found,
        truncated,
    })
}

/// Lines containing `needle` in regular files under `root`, optionally only
/// in files matching `file_glob` (a bare `*.py` matches basenames at any
/// depth; a pattern with `/` or `**` matches the relative path).
pub fn grep(
    root: &Path,
    needle: &str,
    file_glob: Option<&str>,
    limit: usize,
) -> Result<Found<GrepMatch>, SearchError> {
    if needle.is_empty() {
        return Err(SearchError::EmptyNeedle);
    }
    let filter = file_glob.map(file_filter).transpose()?;
    let mut found = Vec::new();
    let truncated = walk(root, &Prune::special_filesystems(), &mut |entry| {
        let wanted = filter.as_ref().is_none_or(|p| p.matches(&entry.segments()));
        if entry.meta.is_file() && wanted {
            grep_file(&entry.path, needle.as_bytes(), limit, &mut found);
        }
        Visit {
            descend: true,
            stop: found.len() >= limit,
        }
    })?;
    Ok(Found {
        matches: found,
        truncated,
    })
}

fn file_filter(glob: &str) -> Result<Pattern, SearchError> {
    let glob = if Pattern::is_path_pattern(glob) {
        glob.to_string()
    } else {
        format!("**/{glob}")
    };
    Pattern::new(&glob).map_err(SearchError::Pattern)
}

/// One entry met by the walk.
struct Entry {
    path: PathBuf,
    relative: Vec<String>,
    meta: Metadata,
}

impl Entry {
    fn segments(&self) -> Vec<&str> {
        self.relative.iter().map(String::as_str).collect()
    }
}

/// What the visitor wants next.
struct Visit {
    descend: bool,
    stop: bool,
}

/// Directories the walk must not enter, by device.
struct Prune {
    devices: Vec<u64>,
}

impl Prune {
    fn none() -> Self {
        Self {
            devices: Vec::new(),
        }
    }

    fn special_filesystems() -> Self {
        let devices = ["/proc", "/sys", "/dev"]
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.dev())
            .collect();
        Self { devices }
    }

    fn skips(&self, meta: &Metadata) -> bool {
        self.devices.contains(&meta.dev())
    }
}

/// Walks `root` depth-first in name order. Returns whether it stopped early.
fn walk(
    root: &Path,
    prune: &Prune,
    visit: &mut dyn FnMut(Entry) -> Visit,
) -> Result<bool, SearchError> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SearchError::NotFound(root.to_path_buf()),
        _ => SearchError::Io(root.to_path_buf(), e),
    })?;
    if !meta.is_dir() {
        return Err(SearchError::NotADirectory(root.to_path_buf()));
    }
    let deadline = Instant::now() + DEADLINE;
    // Pre-order: each directory is listed where it sorts, then its contents.
    let mut stack = vec![(sorted_entries(root).into_iter(), Vec::<String>::new())];
    while let Some((entries, relative)) = stack.last_mut() {
        let Some((name, path, meta)) = entries.next() else {
            stack.pop();
            continue;
        };
        if Instant::now() > deadline {
            return Ok(true);
        }
        let mut child_relative = relative.clone();
        child_relative.push(name);
        let is_dir = meta.is_dir() && !prune.skips(&meta);
        let next = visit(Entry {
            path: path.clone(),
            relative: child_relative.clone(),
            meta,
        });
        if next.stop {
            return Ok(true);
        }
        if is_dir && next.descend {
            stack.push((sorted_entries(&path).into_iter(), child_relative));
        }
    }
    Ok(false)
}

/// A directory's entries in name order, without following symlinks.
/// Unreadable directories and entries are skipped.
fn sorted_entries(dir: &Path) -> Vec<(String, PathBuf, Metadata)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<_> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.path().symlink_metadata().ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), e.path(), meta))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn file_info(path: &Path, meta: &Metadata) -> FileInfo {
    FileInfo {
        path: path.to_string_lossy().into_owned(),
        is_dir: meta.is_dir(),
        size_bytes: meta.len(),
        modified_at: meta.modified().ok().map(rfc3339),
    }
}

/// Formats a timestamp as RFC 3339 in UTC.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Appends the matching lines of one file, up to `limit` matches in total.
fn grep_file(path: &Path, needle: &[u8], limit: usize, found: &mut Vec<GrepMatch>) {
    let Ok(file) = File::open(path) else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    if looks_binary(&mut reader) {
        return;
    }
    let mut line = Vec::new();
    let mut number = 0u64;
    while found.len() < limit {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => number += 1,
        }
        if contains(&line, needle) {
            found.push(GrepMatch {
                path: path.to_string_lossy().into_owned(),
                line: number,
                text: line_text(&line),
            });
        }
    }
}

fn looks_binary(reader: &mut BufReader<File>) -> bool {
    match reader.fill_buf() {
        Ok(head) => head[..head.len().min(BINARY_SNIFF_BYTES)].contains(&0),
        Err(_) => true,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(pos) = haystack[from..].iter().position(|b| *b == first) {
        let start = from + pos;
        if haystack[start + 1..].starts_with(rest) {
            return true;
        }
        from = start + 1;
    }
    false
}

/// The line without its terminator, lossily decoded and capped.
fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut text = String::from_utf8_lossy(line).into_owned();
    if text.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_contains() {
        assert!(contains(b"hello world", b"o w"));
        assert!(!contains(b"hello", b"lol"));
        assert!(contains(b"aaab", b"aab"));
        assert!(!contains(b"", b"a"));
    }

    #[test]
    fn line_text_strips_terminators_and_caps() {
        assert_eq!(line_text(b"abc\r\n"), "abc");
        let long = "é".repeat(MAX_LINE_BYTES);
        assert!(line_text(long.as_bytes()).len() <= MAX_LINE_BYTES);
    }

    #[test]
    fn bare_globs_match_basenames_anywhere() {
        let filter = file_filter("*.py").expect("valid");
        assert!(filter.matches(&["a", "b", "x.py"]));
        let filter = file_filter("src/*.py").expect("valid");
        assert!(!filter.matches(&["a", "src", "x.py"]));
        assert!(filter.matches(&["src", "x.py"]));
    }
}
