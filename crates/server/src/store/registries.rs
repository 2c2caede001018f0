//! The `registries` table: a tenant's private image registries, with the
//! password sealed (see `routes/registries.rs`).

use sqlx::FromRow;

use super::sandboxes::like_pattern;
use super::{Store, StoreError, StoreResult};

const COLUMNS: &str = "id, tenant_id, name, url, auth_type, username, sealed_password, \
    created_by, updated_by, created_at, updated_at";

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

impl Store {
    pub async fn insert_registry(&self, row: &RegistryRow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO registries ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.name)
        .bind(&row.url)
        .bind(&row.auth_type)
        .bind(&row.username)
        .bind(&row.sealed_password)
        .bind(&row.created_by)
        .bind(&row.updated_by)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
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
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM registries WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn registry_by_id(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<RegistryRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM registries WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
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
        let pattern = like_pattern(name_contains.unwrap_or(""));
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM registries WHERE tenant_id = $1 AND LOWER(name) LIKE $2 ESCAPE '\\' \
             ORDER BY name LIMIT $3 OFFSET $4"
        ))
        .bind(tenant_id)
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_registry(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM registries WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
