//! Service tokens: compact JWS (`alg: EdDSA`, Ed25519) naming a sandbox, a
//! port, a tenant and an expiry, and the JWKS that lets anyone verify them.
//!
//! Keys live in `DATA/service-keys/<kid>.json` (0600), so tokens survive a
//! restart. The newest key signs; older keys only verify, and a key is
//! deleted once every token it can have signed has expired (its successor is
//! older than [`MAX_TTL`]). Rotation ([`ServiceKeys::rotate`]) therefore never
//! breaks an unexpired token.
//!
//! Revocation: every sandbox has a token epoch (0 until first revoked), and
//! a token carries the epoch it was signed in (`ep`). [`ServiceKeys::revoke`]
//! bumps the sandbox's epoch, so every token signed before is refused from
//! then on. Epochs live in `DATA/service-keys/epochs.state` (0600); an entry
//! is dropped once every token older than its bump has expired (then epoch 0
//! is safe again).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Longest lifetime a token may be given (24 h).
pub const MAX_TTL: i64 = 24 * 3600;
/// A signing key older than this is replaced by a fresh one on next use.
pub const ROTATE_AFTER: i64 = 7 * 24 * 3600;
/// Audience of LangSmith service-URL tokens.
pub const AUD_SERVICE: &str = "sandpit-service";
/// Audience of OpenSandbox endpoint tokens.
pub const AUD_ENDPOINT: &str = "sandpit-endpoint";
/// Audience of a sign-in ticket: the console hands it to a service host,
/// which redeems it once for a session (`gateway/grants.rs`).
pub const AUD_LOGIN: &str = "sandpit-service-login";
/// Audience of a login session on a service host (the cookie a redeemed
/// ticket sets), valid while its grant (`gid`) is in place.
pub const AUD_SESSION: &str = "sandpit-service-session";

/// What a token grants: `port` of sandbox `sub` of tenant `tid` until `exp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Sandbox id.
    pub sub: String,
    pub port: u16,
    /// Tenant id.
    pub tid: String,
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The sandbox's token epoch when signed; older epochs are revoked.
    #[serde(default)]
    pub ep: u64,
    /// Origins whose pages may frame the service (`embed_origins`), signed
    /// in so every refresh of a token keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eo: Vec<String>,
    /// The login grant a sign-in ticket or session belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// Unique id of a sign-in ticket (spent once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Path a sign-in ticket returns the browser to on the service host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature or unknown key")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token has been revoked")]
    Revoked,
}

/// A sandbox's token epoch and when it was last bumped.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Epoch {
    epoch: u64,
    bumped_at: i64,
}

/// File (in the keys' directory) holding the epochs; not `.json`, which
/// names keys.
const EPOCHS_FILE: &str = "epochs.state";

#[derive(Debug, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at: i64,
    /// Orders keys created within the same second.
    #[serde(default)]
    seq: u64,
    /// Base64url Ed25519 seed.
    seed: String,
}

struct Key {
    kid: String,
    created_at: i64,
    seq: u64,
    signing: SigningKey,
    verifying: VerifyingKey,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Tokens already verified, so a service's every request does not pay for
/// an Ed25519 verification. Bounded: cleared when full.
const VERIFIED_CACHE: usize = 4096;

/// The key set, newest last.
pub struct ServiceKeys {
    dir: PathBuf,
    keys: RwLock<Vec<Key>>,
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
    epochs: RwLock<std::collections::HashMap<String, Epoch>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ServiceKeys {
    /// Load the keys kept in `dir` (creating it), adding one if none is
    /// current.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                keys.push(load(&path)?);
            }
        }
        keys.sort_by_key(|k| (k.created_at, k.seq));
        let epochs = match std::fs::read(dir.join(EPOCHS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(err) => return Err(err.into()),
        };
        let this = Self {
            dir: dir.to_path_buf(),
            keys: RwLock::new(keys),
            verified: std::sync::Mutex::default(),
            epochs: RwLock::new(epochs),
        };
        this.rotate_if_due(now())?;
        Ok(this)
    }

    /// Start signing with a new key; older keys keep verifying until the
    /// tokens they signed have expired.
    pub fn rotate(&self) -> anyhow::Result<String> {
        self.rotate_at(now())
    }

    fn rotate_at(&self, at: i64) -> anyhow::Result<String> {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let seq = keys.last().map_or(0, |k| k.seq + 1);
        let key = generate(at, seq);
        store(&self.dir, &key)?;
        let kid = key.kid.clone();
        keys.push(key);
        // A key may go once its successor has been signing for MAX_TTL.
        let retired: Vec<String> = keys
            .windows(2)
            .filter(|pair| pair[1].created_at + MAX_TTL + 60 < at)
            .map(|pair| pair[0].kid.clone())
            .collect();
        keys.retain(|k| !retired.contains(&k.kid));
        drop(keys);
        if !retired.is_empty() {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        for kid in retired {
            let _ = std::fs::remove_file(self.dir.join(format!("{kid}.json")));
        }
        Ok(kid)
    }

    fn rotate_if_due(&self, at: i64) -> anyhow::Result<()> {
        let due = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .is_none_or(|k| k.created_at + ROTATE_AFTER <= at);
        if due {
            self.rotate_at(at)?;
        }
        Ok(())
    }

    /// The directory the keys are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Load key files that appeared in the directory since (another
    /// replica's keys, written there by `cluster::keys`). Returns how many
    /// keys were new.
    pub fn reload_keys(&self) -> anyhow::Result<usize> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                found.push(load(&path)?);
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let before = keys.len();
        for key in found {
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
        keys.sort_by_key(|k| (k.created_at, k.seq));
        Ok(keys.len() - before)
    }

    /// Raise sandboxes' epochs to `(sub, epoch, bumped_at)` as recorded by
    /// any replica; an epoch never goes down.
    pub fn merge_epochs(&self, entries: &[(String, u64, i64)]) {
        let mut epochs = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        for (sub, epoch, bumped_at) in entries {
            let current = epochs.get(sub).map_or(0, |e| e.epoch);
            if *epoch > current {
                epochs.insert(
                    sub.clone(),
                    Epoch {
                        epoch: *epoch,
                        bumped_at: *bumped_at,
                    },
                );
            }
        }
    }

    /// The current token epoch of sandbox `sub` (what new tokens carry).
    pub fn epoch(&self, sub: &str) -> u64 {
        self.epochs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sub)
            .map_or(0, |e| e.epoch)
    }

    /// Revoke every token signed so far for sandbox `sub`; returns the new
    /// epoch.
    pub fn revoke(&self, sub: &str) -> anyhow::Result<u64> {
        self.revoke_at(sub, now())
    }

    fn revoke_at(&self, sub: &str, at: i64) -> anyhow::Result<u64> {
        let mut epochs = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        // Tokens older than a bump MAX_TTL ago have all expired.
        epochs.retain(|_, e| e.bumped_at + MAX_TTL + 60 >= at);
        let epoch = epochs.get(sub).map_or(0, |e| e.epoch) + 1;
        epochs.insert(
            sub.to_owned(),
            Epoch {
                epoch,
                bumped_at: at,
            },
        );
        write_private(&self.dir, EPOCHS_FILE, &serde_json::to_vec(&*epochs)?)?;
        Ok(epoch)
    }

    /// Sign `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        self.sign_any(claims)
    }

    /// Sign any claims object with the current key (proxy callbacks).
    pub fn sign_any<C: serde::Serialize>(&self, claims: &C) -> anyhow::Result<String> {
        self.rotate_if_due(now())?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .last()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: key.kid.clone(),
        };
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header)?),
            B64.encode(serde_json::to_vec(claims)?)
        );
        let signature = key.signing.sign(input.as_bytes());
        Ok(format!("{input}.{}", B64.encode(signature.to_bytes())))
    }

    /// Check the signature, the audience and the expiry of `token`.
    pub fn verify(&self, token: &str, aud: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, aud, now())
    }

    fn verify_at(&self, token: &str, aud: &str, at: i64) -> Result<Claims, TokenError> {
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token)?;
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= VERIFIED_CACHE {
                    verified.clear();
                }
                verified.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        if claims.aud != aud {
            return Err(TokenError::BadSignature);
        }
        if claims.exp <= at {
            return Err(TokenError::Expired);
        }
        if claims.ep < self.epoch(&claims.sub) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// The claims of `token` if a key of ours signed it (expiry unchecked).
    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(h)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::BadSignature);
        }
        let signature = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let signature = Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
        let verifying = self
            .verifying_key(&header.kid)
            .ok_or(TokenError::BadSignature)?;
        let input = &token[..h.len() + 1 + c.len()];
        verifying
            .verify(input.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        decode_json(c)
    }

    fn verifying_key(&self, kid: &str) -> Option<VerifyingKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.verifying)
    }

    /// The public keys as a JWKS document (RFC 7517, RFC 8037 `OKP` keys).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.kid,
                    "x": B64.encode(k.verifying.to_bytes()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

fn generate(at: i64, seq: u64) -> Key {
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let mut id = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut id);
    let signing = SigningKey::from_bytes(&seed);
    Key {
        kid: B64.encode(id),
        created_at: at,
        seq,
        verifying: signing.verifying_key(),
        signing,
    }
}

fn store(dir: &Path, key: &Key) -> anyhow::Result<()> {
    let stored = StoredKey {
        kid: key.kid.clone(),
        created_at: key.created_at,
        seq: key.seq,
        seed: B64.encode(key.signing.to_bytes()),
    };
    write_private(
        dir,
        &format!("{}.json", key.kid),
        &serde_json::to_vec(&stored)?,
    )
}

/// Write `dir/name` (0600) atomically: a temporary file, then a rename.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Key> {
    let stored: StoredKey = serde_json::from_slice(&std::fs::read(path)?)?;
    let seed: [u8; 32] = B64
        .decode(&stored.seed)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad key seed in {}", path.display()))?;
    let signing = SigningKey::from_bytes(&seed);
    Ok(Key {
        kid: stored.kid,
        created_at: stored.created_at,
        seq: stored.seq,
        verifying: signing.verifying_key(),
        signing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "sb".into(),
            port: 8000,
            tid: "t".into(),
            aud: AUD_SERVICE.into(),
            iat: 0,
            exp,
            ..Claims::default()
        }
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sandpit-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let dir = tempdir();
        let keys = ServiceKeys::open(&dir).unwrap();
        let exp = now() + 60;
        let token = keys.sign(&claims(exp)).unwrap();
        assert_eq!(keys.verify(&token, AUD_SERVICE).unwrap(), claims(exp));
        assert_eq!(
            keys.verify(&token, AUD_ENDPOINT),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.verify_at(&token, AUD_SERVICE, exp),
            Err(TokenError::Expired)
        );
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 3.., "AAA");
        assert!(keys.verify(&forged, AUD_SERVICE).is_err());
        assert_eq!(keys.verify("a.b", AUD_SERVICE), Err(TokenError::Malformed));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_unexpired_tokens_valid_and_survives_reopen() {
        let dir = tempdir();
        let keys = ServiceKeys::open(&dir).unwrap();
        let old = keys.sign(&claims(now() + 60)).unwrap();
        keys.rotate().unwrap();
        let new = keys.sign(&claims(now() + 60)).unwrap();
        assert_ne!(old.split('.').next(), new.split('.').next());
        let reopened = ServiceKeys::open(&dir).unwrap();
        assert!(reopened.verify(&old, AUD_SERVICE).is_ok());
        assert!(reopened.verify(&new, AUD_SERVICE).is_ok());
        assert_eq!(reopened.jwks()["keys"].as_array().unwrap().len(), 2);
        // Once the successor has signed for longer than MAX_TTL, the old key
        // can only have signed expired tokens: it goes.
        reopened.rotate_at(now() + MAX_TTL + 3600).unwrap();
        assert_eq!(reopened.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_eq!(
            reopened.verify(&old, AUD_SERVICE),
            Err(TokenError::BadSignature)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 14 (info): revoking a sandbox's tokens refuses every token
    /// signed before, keeps new ones valid, survives a restart, and the
    /// entry goes once every revoked token has expired anyway.
    #[test]
    fn revoked_tokens_are_refused() {
        let dir = tempdir();
        let keys = ServiceKeys::open(&dir).unwrap();
        let old = keys.sign(&claims(now() + 60)).unwrap();
        let other = keys
            .sign(&Claims {
                sub: "elsewhere".into(),
                ..claims(now() + 60)
            })
            .unwrap();
        assert!(keys.verify(&old, AUD_SERVICE).is_ok());
        assert_eq!(keys.revoke("sb").unwrap(), 1);
        assert_eq!(keys.verify(&old, AUD_SERVICE), Err(TokenError::Revoked));
        assert!(keys.verify(&other, AUD_SERVICE).is_ok());
        let new = keys
            .sign(&Claims {
                ep: keys.epoch("sb"),
                ..claims(now() + 60)
            })
            .unwrap();
        assert!(keys.verify(&new, AUD_SERVICE).is_ok());
        let reopened = ServiceKeys::open(&dir).unwrap();
        assert_eq!(reopened.verify(&old, AUD_SERVICE), Err(TokenError::Revoked));
        assert!(reopened.verify(&new, AUD_SERVICE).is_ok());
        reopened
            .revoke_at("elsewhere", now() + MAX_TTL + 3600)
            .unwrap();
        assert_eq!(reopened.epoch("sb"), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
