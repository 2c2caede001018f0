//! Layout of the data directory.
//!
//! ```text
//! DATA/sandpit.db              SQLite database
//! DATA/admin-api-key           generated admin key (0600), when not given
//! DATA/bin/agent-<sha>         the static agent, bind-mounted into sandboxes
//! DATA/images/host/            the built-in `host` image
//! DATA/runtime/                runtime helper state: blank disk images,
//!                              spare sandbox dirs (`spares/`, renamed into
//!                              `sandboxes/`), runsc's state; in `run/` (a tmpfs the
//!                              runtime mounts) the records, libcontainer's
//!                              state and the agent sockets (`run/sockets/`)
//!                              of the sandboxes running
//! DATA/run -> runtime/run/sockets
//! DATA/run/<id>.sock           each running sandbox's agent socket
//! DATA/sandboxes/<id>/         each sandbox's files (writable layer)
//! DATA/service-keys/<kid>.json service-token signing keys (0600)
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct DataDirs {
    root: PathBuf,
}

impl DataDirs {
    /// Create the layout under `root` (which must be absolute).
    pub fn create(root: &Path) -> std::io::Result<Self> {
        let dirs = Self {
            root: root.to_path_buf(),
        };
        for dir in [
            dirs.root.clone(),
            dirs.bin(),
            dirs.images(),
            dirs.runtime_state(),
            dirs.sandboxes(),
        ] {
            std::fs::create_dir_all(&dir)?;
        }
        for private in [dirs.root.clone(), dirs.runtime_state()] {
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        }
        dirs.link_run()?;
        Ok(dirs)
    }

    /// `DATA/run`, where the agent sockets are, is a link into the
    /// runtime's tmpfs ([`sandpit_runtime::agent_socket::dir_in`], made by
    /// the runtime when it starts): a start's `bind` then makes no inode on
    /// the host's disk (on a journal-less ext4 a new inode costs a burst of
    /// creates about 0.2 ms of CPU each), and the socket paths stay as short
    /// as `sun_path` needs. A directory left by an older server is replaced
    /// once it is empty: until then the sandboxes it started keep their
    /// sockets there.
    fn link_run(&self) -> std::io::Result<()> {
        let run = self.run();
        let target = sandpit_runtime::agent_socket::dir_in(Path::new("runtime"));
        match std::fs::symlink_metadata(&run) {
            Ok(meta) if meta.is_symlink() => {
                if std::fs::read_link(&run)? == target {
                    return Ok(());
                }
                std::fs::remove_file(&run)?;
            }
            Ok(meta) if meta.is_dir() => match std::fs::remove_dir(&run) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::DirectoryNotEmpty => return Ok(()),
                Err(err) => return Err(err),
            },
            Ok(_) => std::fs::remove_file(&run)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        std::os::unix::fs::symlink(target, run)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("sandpit.db")
    }
    pub fn admin_key_file(&self) -> PathBuf {
        self.root.join("admin-api-key")
    }
    /// The key that seals workspace secrets (0600).
    pub fn secrets_key(&self) -> PathBuf {
        self.root.join("secrets.key")
    }
    /// The trust bundle mounted into sandboxes: the host's roots and
    /// Sandpit's egress CA.
    pub fn sandbox_ca_bundle(&self) -> PathBuf {
        self.root.join("egress").join("sandbox-ca-bundle.crt")
    }
    pub fn service_keys(&self) -> PathBuf {
        self.root.join("service-keys")
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn runtime_state(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }
    pub fn agent_socket(&self, id: &str) -> PathBuf {
        self.run().join(format!("{id}.sock"))
    }

    /// Write the agent binary to `bin/agent-<sha>` unless it is there already,
    /// and return its path. Content-addressed, so an upgrade never changes the
    /// file under a running sandbox.
    pub fn install_agent(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self.bin().join(format!("agent-{}", &digest[..16]));
        if path.is_file() {
            return Ok(path);
        }
        let tmp = self
            .bin()
            .join(format!(".agent-{}.tmp", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sp-paths-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn run_links_into_the_runtimes_tmpfs_once_an_old_run_dir_is_empty() {
        let root = temp_root();
        let target = Path::new("runtime/run/sockets");
        // A new data dir: the link.
        let dirs = DataDirs::create(&root).unwrap();
        assert_eq!(std::fs::read_link(dirs.run()).unwrap(), target);
        // Again: unchanged.
        DataDirs::create(&root).unwrap();
        assert_eq!(std::fs::read_link(dirs.run()).unwrap(), target);
        // An older server's directory with a running sandbox's socket in it
        // stays until it is empty.
        std::fs::remove_file(dirs.run()).unwrap();
        std::fs::create_dir(dirs.run()).unwrap();
        let socket = std::os::unix::net::UnixListener::bind(dirs.run().join("a.sock")).unwrap();
        DataDirs::create(&root).unwrap();
        assert!(std::fs::symlink_metadata(dirs.run()).unwrap().is_dir());
        drop(socket);
        std::fs::remove_file(dirs.run().join("a.sock")).unwrap();
        DataDirs::create(&root).unwrap();
        assert_eq!(std::fs::read_link(dirs.run()).unwrap(), target);
        // Sockets bound through the link land in the runtime's directory.
        std::fs::create_dir_all(root.join(target)).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dirs.agent_socket("b")).unwrap();
        assert!(root.join(target).join("b.sock").exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
