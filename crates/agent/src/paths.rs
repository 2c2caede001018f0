//! Resolution of client-supplied paths.
//!
//! Relative paths resolve against the agent's working directory. Resolution
//! is lexical (no symlinks are followed): `.` is dropped and `..` removes the
//! previous component. A path whose `..` would climb above `/` is rejected
//! rather than clamped, so a client learns its path was wrong.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path escapes the sandbox root")]
    Escapes,
}

/// Resolves `raw` against `base` (an absolute directory) into a normalised
/// absolute path.
pub fn resolve(base: &Path, raw: &str) -> Result<PathBuf, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.contains('\0') {
        return Err(PathError::Nul);
    }
    let raw = Path::new(raw);
    let joined = if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        base.join(raw)
    };
    normalize(&joined)
}

/// Removes `.` and `..` components lexically.
fn normalize(path: &Path) -> Result<PathBuf, PathError> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop().ok_or(PathError::Escapes)?;
            }
            Component::Normal(name) => parts.push(name),
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        resolve(Path::new("/home/user"), raw)
            .expect("path resolves")
            .display()
            .to_string()
    }

    #[test]
    fn relative_paths_resolve_against_the_base() {
        assert_eq!(ok("a.txt"), "/home/user/a.txt");
        assert_eq!(ok("./x/../b"), "/home/user/b");
        assert_eq!(ok("../../etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn absolute_paths_are_normalised() {
        assert_eq!(ok("/tmp//a/./b/../c"), "/tmp/a/c");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn bad_paths_are_rejected() {
        let base = Path::new("/home/user");
        assert_eq!(resolve(base, ""), Err(PathError::Empty));
        assert_eq!(resolve(base, "a\0b"), Err(PathError::Nul));
        assert_eq!(resolve(base, "../../../x"), Err(PathError::Escapes));
        assert_eq!(resolve(base, "/../x"), Err(PathError::Escapes));
    }
}
