//! Per-tenant quotas: how many sandboxes may exist, and how many vCPUs and
//! bytes of memory running sandboxes may hold at once. Checked (under a
//! per-tenant lock, so concurrent creates cannot both squeeze in) before a
//! create and before a start.

use crate::error::ApiError;
use crate::store::{TenantRow, Usage};

/// What an operation would add to the tenant's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// 1 for a create, 0 for a start.
    pub sandboxes: i64,
    pub vcpus: i64,
    pub mem_bytes: i64,
}

/// Refuse `demand` if it would take `usage` past a quota of `tenant`. The
/// messages name the quota the way the SDK's `QuotaExceededError` expects
/// ("sandbox count", "cpu", "memory").
pub fn check(tenant: &TenantRow, usage: &Usage, demand: &Demand) -> Result<(), ApiError> {
    if let Some(max) = tenant.max_sandboxes {
        if demand.sandboxes > 0 && usage.sandboxes + demand.sandboxes > max {
            return Err(ApiError::QuotaExceeded(format!(
                "Sandbox count limit reached: tenant '{}' may have at most {max} sandboxes",
                tenant.name
            )));
        }
    }
    if let Some(max) = tenant.max_vcpus {
        if usage.vcpus + demand.vcpus > max {
            return Err(ApiError::QuotaExceeded(format!(
                "CPU quota exceeded: tenant '{}' may use {max} vCPUs at once; {} in use, {} requested",
                tenant.name, usage.vcpus, demand.vcpus
            )));
        }
    }
    if let Some(max) = tenant.max_mem_bytes {
        if usage.mem_bytes + demand.mem_bytes > max {
            return Err(ApiError::QuotaExceeded(format!(
                "Memory quota exceeded: tenant '{}' may use {max} bytes at once; {} in use, {} requested",
                tenant.name, usage.mem_bytes, demand.mem_bytes
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(sandboxes: Option<i64>, vcpus: Option<i64>, mem: Option<i64>) -> TenantRow {
        TenantRow {
            id: "t".into(),
            name: "team".into(),
            created_at: String::new(),
            max_sandboxes: sandboxes,
            max_vcpus: vcpus,
            max_mem_bytes: mem,
        }
    }

    const ONE: Demand = Demand {
        sandboxes: 1,
        vcpus: 1,
        mem_bytes: 100,
    };

    #[test]
    fn unlimited_by_default() {
        let usage = Usage {
            sandboxes: 1000,
            vcpus: 1000,
            mem_bytes: 1 << 40,
        };
        assert!(check(&tenant(None, None, None), &usage, &ONE).is_ok());
    }

    #[test]
    fn each_quota_binds_at_its_limit() {
        let usage = Usage {
            sandboxes: 1,
            vcpus: 1,
            mem_bytes: 100,
        };
        assert!(check(&tenant(Some(2), Some(2), Some(200)), &usage, &ONE).is_ok());
        let err = check(&tenant(Some(1), None, None), &usage, &ONE)
            .unwrap_err()
            .to_string();
        assert!(err.to_lowercase().contains("sandbox count limit"), "{err}");
        let err = check(&tenant(None, Some(1), None), &usage, &ONE)
            .unwrap_err()
            .to_string();
        assert!(
            err.to_lowercase().contains("cpu") && !err.to_lowercase().contains("sandbox"),
            "{err}"
        );
        let err = check(&tenant(None, None, Some(150)), &usage, &ONE)
            .unwrap_err()
            .to_string();
        assert!(
            err.to_lowercase().contains("memory") && !err.to_lowercase().contains("cpu"),
            "{err}"
        );
    }

    #[test]
    fn starting_does_not_count_a_new_sandbox() {
        let usage = Usage {
            sandboxes: 5,
            vcpus: 0,
            mem_bytes: 0,
        };
        let start = Demand {
            sandboxes: 0,
            ..ONE
        };
        assert!(check(&tenant(Some(5), Some(1), None), &usage, &start).is_ok());
    }
}
