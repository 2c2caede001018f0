//! `mount_config`: a sandbox's Git and bucket mounts, as the `langsmith`
//! SDK sends them (`mount_config()`, `s3_mount`, `gcs_mount`, `git_mount`,
//! `context_hub_mount`) and as the API shows them back.
//!
//! Shape: `{"auth": {"aws": {...}, "gcp": {...}}, "mounts": [{"id", "type",
//! "mount_path", "<type>": {...}, "read_only"?, "cache"?, "encryption"?}]}`.
//!
//! These are the wire shapes only: the server checks what they mean (paths,
//! URLs, bucket and ref names, which fields a mount type takes) and refuses
//! every field it does not know, so each object keeps those in `other` to
//! name them. `opaque` credentials are write-only:
//! [`MountConfig::redacted`] drops their values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::json_path::ParseError;
use crate::proxy_config::SecretKind;

/// `mount_config` (every field optional here; absent and `null` are the
/// same).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<MountAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl MountConfig {
    /// Parse a JSON value, naming where it is wrong
    /// (`mount_config.mounts[0].read_only: invalid type: ...`).
    pub fn from_value(value: &Value) -> Result<Self, ParseError> {
        crate::json_path::from_object("mount_config", value)
    }

    /// The config as JSON.
    pub fn to_value(&self) -> Value {
        // Only strings, bools, integers, lists and string-keyed maps: this
        // cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The config as the API shows it: every `opaque` credential without
    /// its value (`is_set` instead).
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        if let Some(auth) = &mut out.auth {
            auth.secrets_mut().into_iter().for_each(Secret::redact);
        }
        out
    }
}

/// `auth`: the credentials the host uses for bucket mounts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAuth>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl MountAuth {
    fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        let aws = self.aws.iter_mut().flat_map(|a| {
            [&mut a.access_key_id, &mut a.secret_access_key]
                .into_iter()
                .flatten()
        });
        let gcp = self
            .gcp
            .iter_mut()
            .filter_map(|g| g.service_account_json.as_mut());
        aws.chain(gcp).collect()
    }
}

/// `auth.aws`: a static key pair (`role_arn` is refused by this server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AwsAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `auth.gcp`: a service account key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcpAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_json: Option<Secret>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A credential: `{"type": "opaque" | "workspace_secret", "value"}`;
/// shown back as `{"type": "opaque", "is_set": true}` when opaque.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SecretKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Response only: whether an opaque value is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_set: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Secret {
    /// Drop an opaque value, saying whether there was one.
    pub fn redact(&mut self) {
        if self.kind == Some(SecretKind::Opaque) {
            self.is_set = Some(self.value.take().is_some());
        }
    }
}

/// What a mount is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    S3,
    Gcs,
    Git,
    /// A LangSmith Context Hub (refused by this server).
    Contexthub,
    /// Anything else (refused, named).
    #[serde(untagged)]
    Other(String),
}

/// One `mounts[]` entry: the fields of every type (the server refuses the
/// ones its `type` does not take).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MountKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Mount {
    /// The names of the fields given (not `null`), known or not.
    pub fn given_fields(&self) -> impl Iterator<Item = &str> {
        let known = [
            ("id", self.id.is_some()),
            ("type", self.kind.is_some()),
            ("mount_path", self.mount_path.is_some()),
            ("git", self.git.is_some()),
            ("s3", self.s3.is_some()),
            ("gcs", self.gcs.is_some()),
            ("read_only", self.read_only.is_some()),
            ("cache", self.cache.is_some()),
            ("encryption", self.encryption.is_some()),
        ];
        let known = known.into_iter().filter(|(_, given)| *given);
        known
            .map(|(name, _)| name)
            .chain(self.other.keys().map(String::as_str))
    }
}

/// A Git mount's `git`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GitSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_url: Option<String>,
    /// Absent: the remote's default branch.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval_seconds: Option<u64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `git.ref`: `{"type": "branch" | "tag" | "commit", "name"}` (`commit`
/// is a Sandpit extension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GitRef {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<GitRefKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitRefKind {
    Branch,
    Tag,
    Commit,
    /// Anything else (refused, named).
    #[serde(untagged)]
    Other(String),
}

/// An S3 mount's `s3`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A GCS mount's `gcs` (`endpoint`, the JSON API's base URL, is a Sandpit
/// extension for emulators).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcsSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A bucket mount's `cache`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writeback_seconds: Option<u64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An S3 mount's `encryption`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sdk_config() -> Value {
        json!({
            "auth": {
                "aws": {"access_key_id": {"type": "opaque", "value": "AKID"},
                        "secret_access_key": {"type": "workspace_secret", "value": "{SK}"}},
                "gcp": {"service_account_json": {"type": "opaque", "value": "{\"k\": 1}"}}
            },
            "mounts": [
                {"id": "repo", "type": "git", "mount_path": "/mnt/repo",
                 "git": {"remote_url": "https://example.com/r.git",
                         "ref": {"type": "tag", "name": "v1"}, "refresh_interval_seconds": 60}},
                {"id": "data", "type": "s3", "mount_path": "/mnt/mounts/data",
                 "s3": {"endpoint_url": "https://s3.test", "region": "eu-west-1",
                        "bucket": "b", "prefix": "a/", "path_style": true},
                 "read_only": true, "cache": {"max_size_bytes": 10, "writeback_seconds": 2},
                 "encryption": {"kms_key": "k"}},
                {"id": "g", "type": "gcs", "mount_path": "/mnt/g",
                 "gcs": {"bucket": "gb", "prefix": "p", "endpoint": "https://gcs.test"}},
                {"id": "m", "type": "contexthub", "mount_path": "/m",
                 "contexthub": {"repo": "-/agent"}}
            ]
        })
    }

    #[test]
    fn the_sdk_shapes_round_trip() {
        let sent = sdk_config();
        let config = MountConfig::from_value(&sent).unwrap();
        assert_eq!(config.to_value(), sent);
        let mounts = config.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].kind, Some(MountKind::Git));
        let reference = mounts[0].git.as_ref().unwrap().reference.as_ref().unwrap();
        assert_eq!(reference.kind, Some(GitRefKind::Tag));
        assert_eq!(mounts[3].kind, Some(MountKind::Contexthub));
        assert_eq!(mounts[3].other["contexthub"], json!({"repo": "-/agent"}));
        let given: Vec<&str> = mounts[1].given_fields().collect();
        assert_eq!(
            given,
            [
                "id",
                "type",
                "mount_path",
                "s3",
                "read_only",
                "cache",
                "encryption"
            ]
        );
        let odd = json!({"mounts": [{"type": "nfs", "x": 1}]});
        let odd = MountConfig::from_value(&odd).unwrap();
        let mount = &odd.mounts.as_ref().unwrap()[0];
        assert_eq!(mount.kind, Some(MountKind::Other("nfs".into())));
        assert_eq!(mount.given_fields().collect::<Vec<_>>(), ["type", "x"]);
    }

    #[test]
    fn wrong_json_types_name_the_field() {
        for (bad, says) in [
            (json!([]), "mount_config: must be an object"),
            (json!({"mounts": {}}), "mount_config.mounts:"),
            (
                json!({"mounts": [{"read_only": "yes"}]}),
                "mount_config.mounts[0].read_only:",
            ),
            (
                json!({"mounts": [{"git": {"refresh_interval_seconds": -1}}]}),
                "mount_config.mounts[0].git.refresh_interval_seconds:",
            ),
            (
                json!({"auth": {"aws": {"access_key_id": {"type": "nope"}}}}),
                "mount_config.auth.aws.access_key_id.type:",
            ),
        ] {
            let err = MountConfig::from_value(&bad).unwrap_err().to_string();
            assert!(err.starts_with(says), "{bad}: {err}");
        }
    }

    #[test]
    fn opaque_credentials_are_redacted() {
        let config = MountConfig::from_value(&sdk_config()).unwrap();
        let shown = config.redacted().to_value();
        let text = shown.to_string();
        assert!(
            !text.contains("AKID") && !text.contains("\\\"k\\\""),
            "{text}"
        );
        assert_eq!(
            shown["auth"]["aws"]["access_key_id"],
            json!({"type": "opaque", "is_set": true})
        );
        assert_eq!(
            shown["auth"]["gcp"]["service_account_json"],
            json!({"type": "opaque", "is_set": true})
        );
        assert_eq!(
            shown["auth"]["aws"]["secret_access_key"]["value"],
            json!("{SK}")
        );
    }
}
