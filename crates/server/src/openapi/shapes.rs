//! Schemas of the bodies that are not `sandpit_api` types: the ones their
//! handlers build as JSON (or as structs private to a route module). Each
//! names the fields a client can rely on; `additionalProperties` is left
//! open, as the server may add fields.

use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};

/// `(component name, schema)` for every hand-described body.
pub fn all() -> Vec<(&'static str, RefOr<Schema>)> {
    SHAPES
        .iter()
        .filter_map(|(name, make)| {
            let schema: Schema = serde_json::from_value(make()).ok()?;
            Some((*name, RefOr::T(schema)))
        })
        .collect()
}

type Make = fn() -> Value;

const SHAPES: &[(&str, Make)] = &[
    ("OsError", os_error),
    ("Snapshot", snapshot),
    ("SnapshotList", snapshot_list),
    ("CreateSnapshotRequest", create_snapshot),
    ("CaptureSnapshotRequest", capture_snapshot),
    ("Template", template),
    ("Volume", volume),
    ("Registry", registry),
    ("ServiceUrlRequest", service_url_request),
    ("ServiceUrl", service_url),
    ("DownloadUrlRequest", download_url_request),
    ("DownloadUrl", download_url),
    ("Usage", usage),
    ("Secret", secret),
    ("UpsertSecretRequest", upsert_secret),
    ("StartSandboxRequest", start_request),
    ("EndpointResponse", endpoint),
];

fn string() -> Value {
    json!({"type": "string"})
}

fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

fn object(description: &str, required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
    })
}

fn os_error() -> Value {
    object(
        "The error body of every OpenSandbox route.",
        &["code", "message"],
        json!({"code": string(), "message": string()}),
    )
}

fn snapshot() -> Value {
    object(
        "A snapshot: a bootable root filesystem (an image pulled, or a sandbox captured).",
        &[
            "id",
            "name",
            "status",
            "fs_capacity_bytes",
            "created_at",
            "updated_at",
            "tags",
        ],
        json!({
            "id": string(), "name": string(),
            "status": {"type": "string", "description": "building, ready or failed"},
            "status_message": nullable("string"),
            "fs_capacity_bytes": {"type": "integer"},
            "fs_used_bytes": nullable("integer"),
            "docker_image": nullable("string"),
            "image_digest": nullable("string"),
            "source_sandbox_id": nullable("string"),
            "registry_id": nullable("string"),
            "created_by": nullable("string"),
            "created_at": string(), "updated_at": string(),
            "tags": {"type": "array", "items": string()},
            "run_config": {"oneOf": [{"$ref": "#/components/schemas/RunConfig"}, {"type": "null"}]},
        }),
    )
}

fn snapshot_list() -> Value {
    object(
        "`GET /snapshots`.",
        &["snapshots", "offset"],
        json!({
            "snapshots": {"type": "array", "items": {"$ref": "#/components/schemas/Snapshot"}},
            "offset": {"type": "integer"},
        }),
    )
}

fn create_snapshot() -> Value {
    object(
        "`POST /snapshots`: pull `docker_image` (through `registry_id`'s credentials if given).",
        &["name", "docker_image"],
        json!({
            "name": string(), "docker_image": string(),
            "fs_capacity_bytes": nullable("integer"),
            "registry_id": nullable("string"),
            "tag": nullable("string"),
            "run_config": {"oneOf": [{"$ref": "#/components/schemas/RunConfig"}, {"type": "null"}]},
            "labels": {"type": ["object", "null"], "additionalProperties": string()},
        }),
    )
}

fn capture_snapshot() -> Value {
    object(
        "`POST /boxes/{name}/snapshot`: capture the sandbox's filesystem.",
        &["name"],
        json!({
            "name": string(), "tag": nullable("string"), "docker_image": nullable("string"),
            "fs_capacity_bytes": nullable("integer"),
            "run_config": {"oneOf": [{"$ref": "#/components/schemas/RunConfig"}, {"type": "null"}]},
            "labels": {"type": ["object", "null"], "additionalProperties": string()},
        }),
    )
}

fn template() -> Value {
    object(
        "A template (langsmith 0.7.x): an image with resources, volume mounts and proxy config.",
        &[
            "id",
            "name",
            "image",
            "resources",
            "created_at",
            "updated_at",
        ],
        json!({
            "id": string(), "name": string(), "image": string(),
            "resources": {"type": "object"},
            "volume_mounts": {"type": "array", "items": {"type": "object"}},
            "proxy_config": {"type": ["object", "null"]},
            "created_at": string(), "updated_at": string(),
        }),
    )
}

fn volume() -> Value {
    object(
        "A volume that templates mount.",
        &[
            "id",
            "name",
            "size",
            "storage_class",
            "created_at",
            "updated_at",
        ],
        json!({
            "id": string(), "name": string(), "size": string(),
            "storage_class": string(), "created_at": string(), "updated_at": string(),
        }),
    )
}

fn registry() -> Value {
    object(
        "A private image registry of the tenant; the password is never returned.",
        &[
            "id",
            "name",
            "url",
            "auth_type",
            "provider",
            "created_at",
            "updated_at",
        ],
        json!({
            "id": string(), "name": string(), "url": string(), "auth_type": string(),
            "aws_role_arn": nullable("string"), "provider": string(),
            "created_at": string(), "updated_at": string(),
            "created_by": nullable("string"), "updated_by": nullable("string"),
            "username": {"type": "string", "writeOnly": true},
            "password": {"type": "string", "writeOnly": true},
        }),
    )
}

fn service_url_request() -> Value {
    object(
        "`POST /boxes/{name}/service-url`.",
        &["port"],
        json!({
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "expires_in_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
        }),
    )
}

fn service_url() -> Value {
    object(
        "A signed URL of a port in the sandbox.",
        &["browser_url", "service_url", "token", "expires_at"],
        json!({
            "browser_url": string(), "service_url": string(),
            "token": string(), "expires_at": string(),
        }),
    )
}

fn download_url_request() -> Value {
    object(
        "`POST /boxes/{name}/download-url`: a link to one file of the sandbox.",
        &["path"],
        json!({
            "path": string(), "expires_in_seconds": nullable("integer"),
            "content_type": nullable("string"), "content_disposition": nullable("string"),
        }),
    )
}

fn download_url() -> Value {
    object(
        "A signed link that needs no key (`GET /download/{token}`).",
        &["download_url", "token"],
        json!({"download_url": string(), "token": string(), "expires_at": nullable("string")}),
    )
}

fn usage() -> Value {
    object(
        "Resource usage of a sandbox, read from its cgroup.",
        &[
            "name",
            "status",
            "running",
            "cpu_seconds",
            "memory_bytes",
            "memory_limit_bytes",
            "vcpus",
            "processes",
            "fs_capacity_bytes",
            "sampled_at",
        ],
        json!({
            "name": string(), "status": string(), "running": {"type": "boolean"},
            "cpu_seconds": {"type": "number"}, "memory_bytes": {"type": "integer"},
            "memory_peak_bytes": nullable("integer"), "memory_limit_bytes": {"type": "integer"},
            "vcpus": {"type": "integer"}, "processes": {"type": "integer"},
            "disk_bytes": nullable("integer"), "fs_capacity_bytes": {"type": "integer"},
            "sampled_at": string(),
        }),
    )
}

fn secret() -> Value {
    object(
        "A workspace secret: only its name is ever returned.",
        &["key"],
        json!({"key": string()}),
    )
}

fn upsert_secret() -> Value {
    object(
        "`PUT .../secrets/{key}`: `value` is required to create; omitted keeps the current one.",
        &[],
        json!({"value": string(), "configs": {"type": "array", "maxItems": 0}}),
    )
}

fn start_request() -> Value {
    object(
        "`POST /boxes/{name}/start` (optional body).",
        &[],
        json!({"timeout": {"type": "integer", "minimum": 0, "description": "Seconds to wait for ready (default 120)"}}),
    )
}

fn endpoint() -> Value {
    object(
        "OpenSandbox `Endpoint`: where to reach a port, and the headers to send.",
        &["endpoint"],
        json!({"endpoint": string(), "headers": {"type": "object", "additionalProperties": string()}}),
    )
}
