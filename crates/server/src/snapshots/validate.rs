//! Snapshot request bodies → validated values.

use sandpit_api::sandbox::RunConfig;
pub use sandpit_api::snapshot::{
    CaptureSnapshotRequest, CreateSnapshotRequest, Labels, ListSnapshotsQuery,
};

use crate::error::ApiError;

const MAX_NAME_LEN: usize = 128;
const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;

/// Name and tag (default `latest`) of a capture.
pub fn capture_names(req: &CaptureSnapshotRequest) -> Result<(String, String), ApiError> {
    check_name("name", &req.name, &[])?;
    let tag = req.tag.clone().unwrap_or_else(|| "latest".into());
    check_name("tag", &tag, &[])?;
    if req.docker_image.is_some() {
        return Err(ApiError::Validation(
            "docker_image exports are not supported: Sandpit has no BuildKit inside a sandbox, \
             so create_snapshot_from_dockerfile cannot work here; build the image elsewhere, push \
             it to a registry and use create_snapshot (with registry_id for a private one), or omit \
             docker_image to capture the sandbox's files"
                .into(),
        ));
    }
    if let Some(fs) = req.fs_capacity_bytes {
        if fs < 1 << 20 {
            return Err(ApiError::Validation(format!(
                "fs_capacity_bytes must be >= {}, got {fs}",
                1 << 20
            )));
        }
    }
    Ok((req.name.clone(), tag))
}

#[derive(Debug, Clone)]
pub struct CreateSnapshot {
    pub name: String,
    pub docker_image: String,
    pub fs_capacity_bytes: i64,
    /// The tags to publish it under (`name:tag` for each).
    pub tags: Vec<String>,
    pub registry_id: Option<String>,
    pub run_config: Option<RunConfig>,
    pub labels: Labels,
}

fn check_name(field: &str, value: &str, extra: &[u8]) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || extra.contains(&b))
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "Invalid {field} '{value}': use 1-{MAX_NAME_LEN} letters, digits, '-', '_' and '.', \
             starting with a letter or digit"
        )))
    }
}

/// The tag part of a Docker reference, if it has one (`repo:tag`, not
/// `host:port/repo` or a digest).
fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

/// Tags of a snapshot built without one: `latest` (the REST API's and the
/// SDK README's default, which a bare name resolves to) and the image's own
/// tag when it has a valid one (the Python SDK's docstring: "defaults
/// server-side to the Docker image's own tag, else latest").
fn default_tags(image: &str) -> Vec<String> {
    let mut tags = vec!["latest".to_owned()];
    if let Some(own) = image_tag(image).filter(|t| check_name("tag", t, &[]).is_ok()) {
        if own != "latest" {
            tags.push(own.to_owned());
        }
    }
    tags
}

pub fn create_snapshot(
    req: CreateSnapshotRequest,
    default_fs: i64,
) -> Result<CreateSnapshot, ApiError> {
    check_name("name", &req.name, &[])?;
    let image = req.docker_image.trim();
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(ApiError::Validation(format!(
            "Invalid docker_image '{}'",
            req.docker_image
        )));
    }
    let tags = match &req.tag {
        Some(tag) => {
            check_name("tag", tag, &[])?;
            vec![tag.clone()]
        }
        None => default_tags(image),
    };
    let fs = req.fs_capacity_bytes.unwrap_or(default_fs);
    if fs < 1 << 20 {
        return Err(ApiError::Validation(format!(
            "fs_capacity_bytes must be >= {}, got {fs}",
            1 << 20
        )));
    }
    Ok(CreateSnapshot {
        name: req.name,
        docker_image: image.to_owned(),
        fs_capacity_bytes: fs,
        tags,
        registry_id: req.registry_id,
        run_config: req.run_config,
        labels: req.labels.unwrap_or_default(),
    })
}

/// `limit` 1–500 (default 50), `offset` >= 0.
pub fn list_window(query: &ListSnapshotsQuery) -> Result<(i64, i64), ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::Validation(format!(
            "offset must be >= 0, got {offset}"
        )));
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_default_to_the_image_tag() {
        assert_eq!(image_tag("python:3.12-slim"), Some("3.12-slim"));
        assert_eq!(image_tag("127.0.0.1:5000/busybox"), None);
        assert_eq!(image_tag("127.0.0.1:5000/busybox:1"), Some("1"));
        assert_eq!(image_tag("busybox@sha256:abc"), None);
    }

    #[test]
    fn an_untagged_build_is_latest_and_its_image_tag() {
        assert_eq!(default_tags("python:3.12-slim"), ["latest", "3.12-slim"]);
        assert_eq!(default_tags("127.0.0.1:5000/busybox"), ["latest"]);
        assert_eq!(default_tags("busybox:latest"), ["latest"]);
        assert_eq!(default_tags("busybox@sha256:abc"), ["latest"]);
    }

    #[test]
    fn list_window_bounds() {
        let q = |limit, offset| ListSnapshotsQuery {
            name_contains: None,
            limit,
            offset,
        };
        assert_eq!(list_window(&q(None, None)).unwrap(), (50, 0));
        assert!(list_window(&q(Some(0), None)).is_err());
        assert!(list_window(&q(Some(501), None)).is_err());
        assert!(list_window(&q(Some(500), Some(-1))).is_err());
    }
}
