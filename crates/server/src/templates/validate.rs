//! Template and volume request bodies → validated values.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::quantity;
use crate::error::ApiError;
use crate::sandboxes::validate::validate_name;

/// `resources` as stored and returned: the caller's quantities verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
    #[serde(default)]
    pub storage: Option<String>,
}

impl Resources {
    pub fn cpu_millis(&self) -> u64 {
        quantity::cpu_millis(&self.cpu).unwrap_or(500)
    }
    pub fn memory_bytes(&self) -> u64 {
        quantity::bytes(&self.memory).unwrap_or(512 << 20)
    }
    pub fn storage_bytes(&self) -> Option<u64> {
        self.storage
            .as_deref()
            .and_then(|s| quantity::bytes(s).ok())
    }
}

// The request bodies are the wire types (`sandpit_api`); this module turns
// them into validated values.
pub use sandpit_api::template::{
    CreateTemplateRequest, ResourcesRequest, UpdateTemplateRequest, VolumeMount,
};
pub use sandpit_api::volume::{CreateVolumeRequest, UpdateVolumeRequest};

pub struct CreateTemplate {
    pub name: String,
    pub image: String,
    pub resources: Resources,
    pub volume_mounts: Vec<VolumeMount>,
    pub proxy_config: Option<Value>,
}

pub struct CreateVolume {
    pub name: String,
    pub size: String,
    pub size_bytes: u64,
}

fn invalid(message: String) -> ApiError {
    ApiError::Validation(message)
}

fn mount_path(path: &str) -> Result<(), ApiError> {
    let ok = path.starts_with('/')
        && path != "/"
        && !path.contains('\0')
        && !path.split('/').any(|c| c == ".." || c == ".");
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "mount_path must be an absolute path other than '/', got '{path}'"
        )))
    }
}

pub fn create_template(req: CreateTemplateRequest) -> Result<CreateTemplate, ApiError> {
    validate_name(&req.name)?;
    let image = req.image.trim();
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(invalid(format!("Invalid image '{}'", req.image)));
    }
    let r = req.resources.unwrap_or_default();
    let resources = Resources {
        cpu: r.cpu.unwrap_or_else(|| "500m".into()),
        memory: r.memory.unwrap_or_else(|| "512Mi".into()),
        storage: r.storage.filter(|s| !s.is_empty()),
    };
    quantity::cpu_millis(&resources.cpu).map_err(invalid)?;
    let memory = quantity::bytes(&resources.memory).map_err(invalid)?;
    if memory < 16 << 20 {
        return Err(invalid(format!(
            "memory must be at least 16Mi, got '{}'",
            resources.memory
        )));
    }
    if let Some(storage) = &resources.storage {
        let bytes = quantity::bytes(storage).map_err(invalid)?;
        if bytes < 1 << 20 {
            return Err(invalid(format!(
                "storage must be at least 1Mi, got '{storage}'"
            )));
        }
    }
    let volume_mounts = req.volume_mounts.unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for m in &volume_mounts {
        mount_path(&m.mount_path)?;
        if !seen.insert(m.mount_path.trim_end_matches('/')) {
            return Err(invalid(format!(
                "mount_path '{}' is used twice",
                m.mount_path
            )));
        }
    }
    Ok(CreateTemplate {
        name: req.name,
        image: image.to_owned(),
        resources,
        volume_mounts,
        proxy_config: crate::proxy_config::validate(req.proxy_config.filter(|v| !v.is_null()))?,
    })
}

/// A volume's size: at least 1Mi (the smallest useful ext4 image).
pub fn volume_size(size: &str) -> Result<u64, ApiError> {
    let bytes = quantity::bytes(size).map_err(invalid)?;
    if bytes < 1 << 20 {
        return Err(invalid(format!("size must be at least 1Mi, got '{size}'")));
    }
    Ok(bytes)
}

pub fn create_volume(req: CreateVolumeRequest) -> Result<CreateVolume, ApiError> {
    validate_name(&req.name)?;
    let size_bytes = volume_size(&req.size)?;
    Ok(CreateVolume {
        name: req.name,
        size: req.size,
        size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpu: &str, memory: &str) -> CreateTemplateRequest {
        CreateTemplateRequest {
            name: "t".into(),
            image: "busybox".into(),
            resources: Some(ResourcesRequest {
                cpu: Some(cpu.into()),
                memory: Some(memory.into()),
                storage: None,
            }),
            volume_mounts: None,
            proxy_config: None,
        }
    }

    #[test]
    fn quantities_are_checked() {
        assert!(create_template(req("500m", "512Mi")).is_ok());
        assert!(create_template(req("2", "1Gi")).is_ok());
        assert!(create_template(req("lots", "1Gi")).is_err());
        assert!(create_template(req("1", "1Ki")).is_err());
    }

    #[test]
    fn mount_paths_are_checked() {
        for bad in ["data", "/", "/a/../b", "/a/./b"] {
            assert!(mount_path(bad).is_err(), "{bad}");
        }
        assert!(mount_path("/home/user/data").is_ok());
    }
}
