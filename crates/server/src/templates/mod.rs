//! Template-era (`langsmith==0.7.x`) templates and volumes.
//!
//! A template names an image (an OCI reference, or `host` for the built-in
//! image), the resources of its sandboxes and the volumes they mount. Its
//! image is pulled on first use and the digest remembered. A volume is an
//! ext4 image of its size, `DATA/volumes/<id>.img`, loop-mounted into every
//! sandbox of a template that mounts it, so its files outlive those
//! sandboxes and writing past its size fails with ENOSPC.

pub mod quantity;
mod response;
pub mod validate;

use std::path::{Path, PathBuf};

pub use response::{template_response, volume_response};
use validate::{CreateTemplate, CreateVolume, Resources, VolumeMount};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{Store, StoreError, TemplateRow, VolumeRow};

/// The template image that means "the built-in host image".
pub const HOST_IMAGE: &str = "host";

fn template_not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Template",
        name: name.to_owned(),
    }
}

fn volume_not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        kind: "Volume",
        name: name.to_owned(),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.into()))
}

/// A volume's directory: where volumes created before sizes were enforced
/// keep their files.
pub fn volume_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("volumes").join(id)
}

/// A volume's ext4 image (created by the runtime on first mount).
pub fn volume_image(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("volumes").join(format!("{id}.img"))
}

pub async fn get_template(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<TemplateRow, ApiError> {
    store
        .template(&caller.tenant_id, name)
        .await?
        .ok_or_else(|| template_not_found(name))
}

pub async fn create_template(
    store: &Store,
    caller: &Caller,
    req: CreateTemplate,
) -> Result<TemplateRow, ApiError> {
    for mount in &req.volume_mounts {
        if store
            .volume(&caller.tenant_id, &mount.volume_name)
            .await?
            .is_none()
        {
            return Err(volume_not_found(&mount.volume_name));
        }
    }
    let now = crate::store::now();
    let row = TemplateRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: caller.tenant_id.clone(),
        name: req.name.clone(),
        image: req.image,
        image_digest: None,
        resources: to_json(&req.resources)?,
        volume_mounts: to_json(&req.volume_mounts)?,
        proxy_config: req.proxy_config.as_ref().map(to_json).transpose()?,
        created_at: now.clone(),
        updated_at: now,
    };
    match store.insert_template(&row).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
            "Template '{}' already exists",
            req.name
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn rename_template(
    store: &Store,
    caller: &Caller,
    name: &str,
    new_name: &str,
) -> Result<TemplateRow, ApiError> {
    get_template(store, caller, name).await?;
    if name != new_name {
        match store
            .rename_template(&caller.tenant_id, name, new_name)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict(format!(
                    "Template '{new_name}' already exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    get_template(store, caller, new_name).await
}

pub async fn delete_template(store: &Store, caller: &Caller, name: &str) -> Result<(), ApiError> {
    get_template(store, caller, name).await?;
    let pools = store.pools_for_template(&caller.tenant_id, name).await?;
    if !pools.is_empty() {
        let names: Vec<_> = pools.iter().map(|p| p.name.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "Template '{name}' is in use by pool(s): {}; delete them first",
            names.join(", ")
        )));
    }
    let users = store.sandboxes_of_template(&caller.tenant_id, name).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Template '{name}' is in use by {} sandbox(es): {}; delete them first",
            users.len(),
            users.join(", ")
        )));
    }
    store.delete_template(&caller.tenant_id, name).await?;
    Ok(())
}

pub fn resources(row: &TemplateRow) -> Result<Resources, StoreError> {
    serde_json::from_str(&row.resources).map_err(|e| StoreError::Corrupt(format!("resources: {e}")))
}

pub fn volume_mounts(row: &TemplateRow) -> Result<Vec<VolumeMount>, StoreError> {
    serde_json::from_str(&row.volume_mounts)
        .map_err(|e| StoreError::Corrupt(format!("volume_mounts: {e}")))
}

pub async fn get_volume(store: &Store, caller: &Caller, name: &str) -> Result<VolumeRow, ApiError> {
    store
        .volume(&caller.tenant_id, name)
        .await?
        .ok_or_else(|| volume_not_found(name))
}

pub async fn create_volume(
    store: &Store,
    data_dir: &Path,
    caller: &Caller,
    req: CreateVolume,
) -> Result<VolumeRow, ApiError> {
    let now = crate::store::now();
    let row = VolumeRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: caller.tenant_id.clone(),
        name: req.name.clone(),
        size: req.size,
        size_bytes: req.size_bytes as i64,
        extra: "{}".into(),
        created_at: now.clone(),
        updated_at: now,
    };
    match store.insert_volume(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "Volume '{}' already exists",
                req.name
            )))
        }
        Err(e) => return Err(e.into()),
    }
    let dir = data_dir.join("volumes");
    if let Err(err) = std::fs::create_dir_all(&dir) {
        let _ = store.delete_volume(&caller.tenant_id, &row.name).await;
        return Err(ApiError::Internal(err.into()));
    }
    Ok(row)
}

/// Templates that mount volume `name`.
async fn templates_using(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let mut users = Vec::new();
    for template in store.templates(&caller.tenant_id).await? {
        if volume_mounts(&template)?
            .iter()
            .any(|m| m.volume_name == name)
        {
            users.push(template.name);
        }
    }
    Ok(users)
}

pub async fn update_volume(
    store: &Store,
    caller: &Caller,
    name: &str,
    new_name: Option<String>,
    size: Option<(String, u64)>,
) -> Result<VolumeRow, ApiError> {
    let mut row = get_volume(store, caller, name).await?;
    if let Some((text, bytes)) = size {
        if (bytes as i64) < row.size_bytes {
            return Err(ApiError::BadRequest(format!(
                "Volume '{name}' cannot shrink from {} to {text}",
                row.size
            )));
        }
        row.size = text;
        row.size_bytes = bytes as i64;
    }
    if let Some(new_name) = new_name.filter(|n| n != name) {
        let users = templates_using(store, caller, name).await?;
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "Volume '{name}' is mounted by template(s) {}; it cannot be renamed",
                users.join(", ")
            )));
        }
        row.name = new_name;
    }
    match store.update_volume(&row).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
            "Volume '{}' already exists",
            row.name
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_volume(
    store: &Store,
    data_dir: &Path,
    caller: &Caller,
    name: &str,
) -> Result<(), ApiError> {
    let row = get_volume(store, caller, name).await?;
    let users = templates_using(store, caller, name).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Volume '{name}' is in use by template(s): {}",
            users.join(", ")
        )));
    }
    store.delete_volume(&caller.tenant_id, name).await?;
    let dir = volume_dir(data_dir, &row.id);
    let image = volume_image(data_dir, &row.id);
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(image);
        std::fs::remove_dir_all(dir)
    })
    .await
    .ok();
    Ok(())
}
