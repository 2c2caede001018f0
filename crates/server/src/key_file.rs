//! 32-byte secret keys kept in files of the data dir (download links,
//! access-delegation tokens): 0600, made on first use by whichever caller
//! comes first (`create_new`), read by every later one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// Length of every key.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the key file {0}")]
    Io(String, #[source] std::io::Error),
    #[error("the key file {0} is not {KEY_LEN} bytes")]
    BadKey(String),
}

/// The key in `path`, made first if the file is missing.
pub fn read_or_create(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |e| KeyError::Io(path.display().to_string(), e);
    if !path.exists() {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io(std::io::Error::other("no randomness")))?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(mut file) => file.write_all(&bytes).map_err(io)?,
            // Another caller made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let bytes = std::fs::read(path).map_err(io)?;
    if bytes.len() != KEY_LEN {
        return Err(KeyError::BadKey(path.display().to_string()));
    }
    Ok(bytes)
}
