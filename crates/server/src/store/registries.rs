//! The `registries` table: a tenant's private image registries, with the
//! password sealed (see `routes/registries.rs`).

use sqlx::FromRow;

use super::table::{Insert, Query, Table};
use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RegistryRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// Registry host (and port), e.g. `registry.example.com:5000`.
    pub url: String,
    pub auth_type: String,
    pub username: Option<String>,
    pub sealed_password: Option<String>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Table for RegistryRow {
    const NAME: &'static str = "registries";
    const COLUMNS: &'static str = "id, tenant_id, name, url, auth_type, username, \
        sealed_password, created_by, updated_by, created_at, updated_at";
}

impl Insert for RegistryRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.url)
            .bind(&self.auth_type)
            .bind(&self.username)
            .bind(&self.sealed_password)
            .bind(&self.created_by)
            .bind(&self.updated_by)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
}

impl Store {
    pub async fn insert_registry(&self, row: &RegistryRow) -> StoreResult<()> {
        self.insert_row(row).await
    }

    /// Write every mutable column of `row` (found by id and tenant).
    pub async fn update_registry(&self, row: &RegistryRow) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE registries SET name = $1, url = $2, auth_type = $3, username = $4, \
             sealed_password = $5, updated_by = $6, updated_at = $7 \
             WHERE id = $8 AND tenant_id = $9",
        )
        .bind(&row.name)
        .bind(&row.url)
        .bind(&row.auth_type)
        .bind(&row.username)
        .bind(&row.sealed_password)
        .bind(&row.updated_by)
        .bind(&row.updated_at)
        .bind(&row.id)
        .bind(&row.tenant_id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn registry_by_name(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<RegistryRow>> {
        self.find(&[("tenant_id", tenant_id), ("name", name)]).await
    }

    pub async fn registry_by_id(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<RegistryRow>> {
        self.find(&[("tenant_id", tenant_id), ("id", id)]).await
    }

    /// A tenant's registries by name, `limit` from `offset`, optionally
    /// only names containing `name_contains`.
    pub async fn registries(
        &self,
        tenant_id: &str,
        name_contains: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<RegistryRow>> {
        let filter = [("tenant_id", tenant_id)];
        self.find_page(&filter, name_contains, "name", (limit, offset))
            .await
    }

    pub async fn delete_registry(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let filter = [("tenant_id", tenant_id), ("name", name)];
        Ok(self.delete_where("registries", &filter).await? > 0)
    }
}
