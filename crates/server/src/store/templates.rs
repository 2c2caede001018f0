//! The `templates` and `volumes` tables (template-era API).

use sqlx::FromRow;

use super::{now, Store, StoreError, StoreResult};

const TEMPLATE_COLUMNS: &str = "id, tenant_id, name, image, image_digest, resources, \
    volume_mounts, proxy_config, created_at, updated_at";
const VOLUME_COLUMNS: &str = "id, tenant_id, name, size, size_bytes, extra, created_at, updated_at";

/// One template. `resources` and `volume_mounts` hold JSON text.
#[derive(Debug, Clone, FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub resources: String,
    pub volume_mounts: String,
    pub proxy_config: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One volume; its files live in `DATA/volumes/<id>`.
#[derive(Debug, Clone, FromRow)]
pub struct VolumeRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub size: String,
    pub size_bytes: i64,
    pub extra: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn insert_template(&self, row: &TemplateRow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.name)
        .bind(&row.image)
        .bind(&row.image_digest)
        .bind(&row.resources)
        .bind(&row.volume_mounts)
        .bind(&row.proxy_config)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn template(&self, tenant_id: &str, name: &str) -> StoreResult<Option<TemplateRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn templates(&self, tenant_id: &str) -> StoreResult<Vec<TemplateRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rename a template; sandboxes created from it follow the new name.
    pub async fn rename_template(
        &self,
        tenant_id: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE templates SET name = $1, updated_at = $2 WHERE tenant_id = $3 AND name = $4",
        )
        .bind(new)
        .bind(now())
        .bind(tenant_id)
        .bind(old)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        sqlx::query(
            "UPDATE sandboxes SET template_name = $1 WHERE tenant_id = $2 AND template_name = $3",
        )
        .bind(new)
        .bind(tenant_id)
        .bind(old)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE pools SET template_name = $1 WHERE tenant_id = $2 AND template_name = $3",
        )
        .bind(new)
        .bind(tenant_id)
        .bind(old)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_template_digest(&self, id: &str, digest: &str) -> StoreResult<()> {
        sqlx::query("UPDATE templates SET image_digest = $1 WHERE id = $2")
            .bind(digest)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Names of the sandboxes created from a template.
    pub async fn sandboxes_of_template(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sandboxes WHERE tenant_id = $1 AND template_name = $2 ORDER BY name",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    pub async fn delete_template(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM templates WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_volume(&self, row: &VolumeRow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO volumes ({VOLUME_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.name)
        .bind(&row.size)
        .bind(row.size_bytes)
        .bind(&row.extra)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn volume(&self, tenant_id: &str, name: &str) -> StoreResult<Option<VolumeRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE tenant_id = $1 AND name = $2"
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn volumes(&self, tenant_id: &str) -> StoreResult<Vec<VolumeRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Store a volume's new name and size (by id).
    pub async fn update_volume(&self, row: &VolumeRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE volumes SET name = $1, size = $2, size_bytes = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(&row.name)
        .bind(&row.size)
        .bind(row.size_bytes)
        .bind(now())
        .bind(&row.id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn delete_volume(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM volumes WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
