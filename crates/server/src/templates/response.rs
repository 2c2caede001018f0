//! Stored template and volume rows → API bodies.

use serde_json::{json, Value};

use super::{resources, volume_mounts};
use crate::store::{StoreResult, TemplateRow, VolumeRow};

pub fn template_response(row: &TemplateRow) -> StoreResult<Value> {
    let proxy: Option<Value> = row
        .proxy_config
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .map(crate::proxy_config::redact);
    Ok(json!({
        "id": row.id,
        "name": row.name,
        "image": row.image,
        "resources": resources(row)?,
        "volume_mounts": volume_mounts(row)?,
        "proxy_config": proxy,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }))
}

pub fn volume_response(row: &VolumeRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "size": row.size,
        "storage_class": "local",
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}
