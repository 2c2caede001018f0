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
//!                              runtime mounts) the records and libcontainer's
//!                              state of the sandboxes running
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
            dirs.run(),
            dirs.sandboxes(),
        ] {
            std::fs::create_dir_all(&dir)?;
        }
        for private in [dirs.root.clone(), dirs.run(), dirs.runtime_state()] {
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(dirs)
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
