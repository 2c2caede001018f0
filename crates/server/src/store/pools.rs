//! The `pools` table, and the warm sandboxes that belong to a pool by name.

use sqlx::FromRow;

use super::table::{Insert, Query, Table};
use super::{now, SandboxRow, Store, StoreError, StoreResult};

#[derive(Debug, Clone, FromRow)]
pub struct PoolRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub template_name: String,
    pub replicas: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Table for PoolRow {
    const NAME: &'static str = "pools";
    const COLUMNS: &'static str =
        "id, tenant_id, name, template_name, replicas, created_at, updated_at";
}

impl Insert for PoolRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.template_name)
            .bind(self.replicas)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
}

/// Names of warm pool members start with this.
pub const WARM: &str = "_warm-";

/// Name prefix of a pool's warm sandboxes. Requests cannot use names that
/// start with `_`, so these never collide with a user's sandbox.
pub fn warm_prefix(pool_id: &str) -> String {
    format!("{WARM}{pool_id}-")
}

pub fn is_warm_name(name: &str) -> bool {
    name.starts_with(WARM)
}

impl Store {
    pub async fn insert_pool(&self, row: &PoolRow) -> StoreResult<()> {
        self.insert_row(row).await
    }

    pub async fn pool(&self, tenant_id: &str, name: &str) -> StoreResult<Option<PoolRow>> {
        self.find(&[("tenant_id", tenant_id), ("name", name)]).await
    }

    pub async fn pool_by_id(&self, id: &str) -> StoreResult<Option<PoolRow>> {
        self.find(&[("id", id)]).await
    }

    /// A tenant's pools, or every pool when `tenant_id` is `None`.
    pub async fn pools(&self, tenant_id: Option<&str>) -> StoreResult<Vec<PoolRow>> {
        match tenant_id {
            Some(t) => self.find_all(&[("tenant_id", t)], "name").await,
            None => self.find_all(&[], "id").await,
        }
    }

    pub async fn pools_for_template(
        &self,
        tenant_id: &str,
        template_name: &str,
    ) -> StoreResult<Vec<PoolRow>> {
        let filter = [("tenant_id", tenant_id), ("template_name", template_name)];
        self.find_all(&filter, "name").await
    }

    /// Change name and replicas; `Conflict` if the name is taken.
    pub async fn update_pool(&self, row: &PoolRow) -> StoreResult<()> {
        sqlx::query("UPDATE pools SET name = $1, replicas = $2, updated_at = $3 WHERE id = $4")
            .bind(&row.name)
            .bind(row.replicas)
            .bind(now())
            .bind(&row.id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn delete_pool_row(&self, id: &str) -> StoreResult<()> {
        self.delete_where("pools", &[("id", id)]).await?;
        Ok(())
    }

    /// The warm sandboxes of a pool, oldest first.
    pub async fn pool_members(&self, pool: &PoolRow) -> StoreResult<Vec<SandboxRow>> {
        let prefix = warm_prefix(&pool.id);
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE tenant_id = $1 \
             AND substr(name, 1, {len}) = $2 ORDER BY created_at, id",
            SandboxRow::COLUMNS,
            len = prefix.len()
        );
        Ok(sqlx::query_as(&sql)
            .bind(&pool.tenant_id)
            .bind(&prefix)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Serialise refills of pool `pool_id` across replicas (a pool's
    /// refill on the leader and one a pool change runs on another replica
    /// would otherwise both add the missing members).
    pub async fn lock_pool(&self, pool_id: &str) -> StoreResult<super::TenantLock> {
        self.advisory_lock(&format!("sandpit-pool:{pool_id}")).await
    }

    /// Hand a warm sandbox out: it takes the user's name and settings, and
    /// its lifetime starts now. Fails (`Ok(false)`) if it is no longer warm.
    pub async fn claim_warm(&self, warm_name: &str, row: &SandboxRow) -> StoreResult<bool> {
        let at = now();
        let done = sqlx::query(
            "UPDATE sandboxes SET name = $1, idle_ttl_seconds = $2, delete_after_stop_seconds = $3, \
             ttl_seconds = $4, proxy_config = $5, run_config = $6, labels = $7, extra = $8, \
             created_at = $9, updated_at = $9, last_activity_at = $9 \
             WHERE id = $10 AND name = $11",
        )
        .bind(&row.name)
        .bind(row.idle_ttl_seconds)
        .bind(row.delete_after_stop_seconds)
        .bind(row.ttl_seconds)
        .bind(&row.proxy_config)
        .bind(&row.run_config)
        .bind(&row.labels)
        .bind(&row.extra)
        .bind(&at)
        .bind(&row.id)
        .bind(warm_name)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(done.rows_affected() == 1)
    }
}
