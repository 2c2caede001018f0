//! Checks on a [`SandboxSpec`] before anything is created for it.

use std::path::{Component, Path};

use super::error::LocalError;
use crate::agent_socket;
use crate::spec::{MountSpec, SandboxSpec};

type Check = Result<(), LocalError>;

fn invalid(message: String) -> LocalError {
    LocalError::Invalid(message)
}

pub fn sandbox(spec: &SandboxSpec) -> Check {
    id(&spec.id)?;
    hostname(&spec.hostname)?;
    absolute_dir_name("state_dir", &spec.state_dir)?;
    inside_path("workdir", &spec.workdir, true)?;
    existing_file("agent_binary", &spec.agent_binary)?;
    socket_path(&spec.agent_socket)?;
    if spec.layers.is_empty() {
        return Err(invalid("at least one layer is needed".into()));
    }
    spec.layers
        .iter()
        .try_for_each(|l| existing_dir("layer", l))?;
    spec.mounts.iter().try_for_each(mount)?;
    userns_base(spec.userns_base)
}

/// A user namespace maps uid 0 to an unprivileged host id, with all its
/// range within 32 bits.
fn userns_base(base: Option<u32>) -> Check {
    match base {
        Some(0) => Err(invalid(
            "userns_base 0 would map root to the host's root".into(),
        )),
        Some(b) if b.checked_add(crate::idmap::IDS_PER_SANDBOX - 1).is_none() => Err(invalid(
            format!("userns_base {b} leaves no room for its id range"),
        )),
        _ => Ok(()),
    }
}

/// Ids name directories, cgroups and container state: keep them plain.
pub fn id(id: &str) -> Check {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match plain && !id.is_empty() && id.len() <= 64 && !id.starts_with('.') {
        true => Ok(()),
        false => Err(invalid(format!(
            "sandbox id {id:?} must be 1-64 of [A-Za-z0-9._-], not starting with '.'"
        ))),
    }
}

fn hostname(name: &str) -> Check {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
    match plain && !name.is_empty() && name.len() <= 64 {
        true => Ok(()),
        false => Err(invalid(format!(
            "hostname {name:?} must be 1-64 of [A-Za-z0-9.-]"
        ))),
    }
}

fn absolute_dir_name(what: &str, path: &Path) -> Check {
    match path.is_absolute() && !has_dot_dot(path) {
        true => Ok(()),
        false => Err(invalid(format!(
            "{what} {path:?} must be an absolute path without '..'"
        ))),
    }
}

fn existing_file(what: &str, path: &Path) -> Check {
    absolute_dir_name(what, path)?;
    match path.is_file() {
        true => Ok(()),
        false => Err(invalid(format!("{what} {path:?} is not a file"))),
    }
}

fn existing_dir(what: &str, path: &Path) -> Check {
    absolute_dir_name(what, path)?;
    match path.is_dir() {
        true => Ok(()),
        false => Err(invalid(format!("{what} {path:?} is not a directory"))),
    }
}

fn socket_path(path: &Path) -> Check {
    absolute_dir_name("agent_socket", path)?;
    if path.as_os_str().len() > agent_socket::MAX_PATH {
        return Err(invalid(format!(
            "agent_socket {path:?} is longer than {} bytes",
            agent_socket::MAX_PATH
        )));
    }
    match path.parent().is_some_and(Path::is_dir) {
        true => Ok(()),
        false => Err(invalid(format!(
            "the directory of agent_socket {path:?} does not exist"
        ))),
    }
}

/// A path inside the sandbox: absolute, no `..`, and not `/` unless allowed.
fn inside_path(what: &str, path: &str, root_ok: bool) -> Check {
    let p = Path::new(path);
    let is_root = p.components().all(|c| c == Component::RootDir);
    match p.is_absolute() && !has_dot_dot(p) && (root_ok || !is_root) {
        true => Ok(()),
        false => Err(invalid(format!(
            "{what} {path:?} must be an absolute path below / without '..'"
        ))),
    }
}

fn mount(m: &MountSpec) -> Check {
    match m {
        MountSpec::Bind {
            source,
            destination,
            ..
        }
        | MountSpec::Fuse {
            source,
            destination,
            ..
        } => {
            inside_path("mount destination", destination, false)?;
            absolute_dir_name("mount source", source)?;
            match source.exists() {
                true => Ok(()),
                false => Err(invalid(format!("mount source {source:?} does not exist"))),
            }
        }
        MountSpec::ReadOnlyOverlay {
            layers,
            destination,
        } => {
            inside_path("mount destination", destination, false)?;
            if layers.is_empty() {
                return Err(invalid(format!("overlay at {destination} has no layers")));
            }
            layers
                .iter()
                .try_for_each(|l| existing_dir("overlay layer", l))
        }
        MountSpec::Volume {
            image,
            size_bytes,
            destination,
        } => {
            inside_path("mount destination", destination, false)?;
            absolute_dir_name("volume image", image)?;
            match *size_bytes > 0 && image.parent().is_some_and(Path::is_dir) {
                true => Ok(()),
                false => Err(invalid(format!(
                    "volume {image:?} needs a size and an existing directory"
                ))),
            }
        }
    }
}

fn has_dot_dot(path: &Path) -> bool {
    path.components().any(|c| c == Component::ParentDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_names() {
        assert!(id("0195b3c2-7d4e-7a8b-9c0d-1e2f3a4b5c6d").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_inside_the_sandbox_stay_inside() {
        assert!(inside_path("d", "/usr", false).is_ok());
        assert!(inside_path("d", "/", true).is_ok());
        assert!(inside_path("d", "/", false).is_err());
        assert!(inside_path("d", "usr", false).is_err());
        assert!(inside_path("d", "/usr/../etc", false).is_err());
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(hostname("my-box.local").is_ok());
        assert!(hostname("bad_name").is_err());
        assert!(hostname("").is_err());
    }
}
