//! What the console's event stream watches: each sandbox's status.

use super::{is_warm_name, Store, StoreResult};

/// One sandbox as the console's event stream reports it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SandboxState {
    pub id: String,
    pub name: String,
    pub status: String,
    pub status_message: Option<String>,
}

impl Store {
    /// The status of every sandbox of `tenant_id` (warm pool members are
    /// not the tenant's to see).
    pub async fn sandbox_states(&self, tenant_id: &str) -> StoreResult<Vec<SandboxState>> {
        let rows: Vec<SandboxState> = sqlx::query_as(
            "SELECT id, name, status, status_message FROM sandboxes WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|r| !is_warm_name(&r.name))
            .collect())
    }
}
