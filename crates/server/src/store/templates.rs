//! The `templates` and `volumes` tables (template-era API).

use sqlx::FromRow;

use super::table::{Insert, Query, Table};
use super::{now, Store, StoreError, StoreResult};

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

impl Table for TemplateRow {
    const NAME: &'static str = "templates";
    const COLUMNS: &'static str = "id, tenant_id, name, image, image_digest, resources, \
        volume_mounts, proxy_config, created_at, updated_at";
}

impl Insert for TemplateRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.image)
            .bind(&self.image_digest)
            .bind(&self.resources)
            .bind(&self.volume_mounts)
            .bind(&self.proxy_config)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
}

impl Table for VolumeRow {
    const NAME: &'static str = "volumes";
    const COLUMNS: &'static str =
        "id, tenant_id, name, size, size_bytes, extra, created_at, updated_at";
}

impl Insert for VolumeRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.size)
            .bind(self.size_bytes)
            .bind(&self.extra)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
}

impl Store {
    pub async fn insert_template(&self, row: &TemplateRow) -> StoreResult<()> {
        self.insert_row(row).await
    }

    pub async fn template(&self, tenant_id: &str, name: &str) -> StoreResult<Option<TemplateRow>> {
        self.find(&[("tenant_id", tenant_id), ("name", name)]).await
    }

    pub async fn templates(&self, tenant_id: &str) -> StoreResult<Vec<TemplateRow>> {
        self.find_all(&[("tenant_id", tenant_id)], "name").await
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
        let filter = [("tenant_id", tenant_id), ("name", name)];
        Ok(self.delete_where("templates", &filter).await? > 0)
    }

    pub async fn insert_volume(&self, row: &VolumeRow) -> StoreResult<()> {
        self.insert_row(row).await
    }

    pub async fn volume(&self, tenant_id: &str, name: &str) -> StoreResult<Option<VolumeRow>> {
        self.find(&[("tenant_id", tenant_id), ("name", name)]).await
    }

    pub async fn volumes(&self, tenant_id: &str) -> StoreResult<Vec<VolumeRow>> {
        self.find_all(&[("tenant_id", tenant_id)], "name").await
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
        let filter = [("tenant_id", tenant_id), ("name", name)];
        Ok(self.delete_where("volumes", &filter).await? > 0)
    }
}
