//! Where the server is and which key to use: flags, then the environment
//! (`LANGSMITH_ENDPOINT`, `LANGSMITH_API_KEY`, as the SDK reads them), then
//! the file `sandpit login` writes (`$SANDPIT_CONFIG`, else
//! `$XDG_CONFIG_HOME/sandpit/config.json`, else
//! `~/.config/sandpit/config.json`, mode 0600).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sandpit_client::Client;
use serde::{Deserialize, Serialize};

#[derive(Args, Clone)]
pub struct Connection {
    /// Server URL (default: LANGSMITH_ENDPOINT, then `sandpit login`'s).
    #[arg(long, env = "LANGSMITH_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// API key (default: LANGSMITH_API_KEY, then `sandpit login`'s).
    #[arg(long, env = "LANGSMITH_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The saved login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub endpoint: String,
    pub api_key: String,
}

pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SANDPIT_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("sandpit").join("config.json"))
}

pub fn load() -> anyhow::Result<Option<Saved>> {
    let path = config_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write the login file, readable by its owner only.
pub fn save(saved: &Saved) -> anyhow::Result<PathBuf> {
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // An existing file keeps its mode on open: force 0600.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(&serde_json::to_vec_pretty(saved)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

impl Connection {
    pub fn resolve(&self) -> anyhow::Result<Saved> {
        let saved = load()?;
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| saved.as_ref().map(|s| s.endpoint.clone()));
        let api_key = self
            .api_key
            .clone()
            .or_else(|| saved.as_ref().map(|s| s.api_key.clone()));
        match (endpoint, api_key) {
            (Some(endpoint), Some(api_key)) => Ok(Saved { endpoint, api_key }),
            _ => bail!(
                "not logged in: run `sandpit login --endpoint URL`, or set LANGSMITH_ENDPOINT and LANGSMITH_API_KEY"
            ),
        }
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let saved = self.resolve()?;
        Ok(Client::new(&saved.endpoint, &saved.api_key)?)
    }
}
