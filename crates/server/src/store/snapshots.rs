//! The `snapshots` and `snapshot_tags` tables.

use sqlx::FromRow;

use super::table::{insert_sql, select_sql, Insert, Query, Table};
use super::{now, Store, StoreError, StoreResult};

/// One stored snapshot. `status` is `building`, `ready` or `failed`.
#[derive(Debug, Clone, FromRow)]
pub struct SnapshotRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub status: String,
    pub status_message: Option<String>,
    pub docker_image: Option<String>,
    pub image_digest: Option<String>,
    pub source_sandbox_id: Option<String>,
    pub fs_capacity_bytes: i64,
    pub fs_used_bytes: Option<i64>,
    pub run_config: Option<String>,
    pub registry_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Table for SnapshotRow {
    const NAME: &'static str = "snapshots";
    const COLUMNS: &'static str = "id, tenant_id, name, status, status_message, docker_image, \
        image_digest, source_sandbox_id, fs_capacity_bytes, fs_used_bytes, run_config, \
        registry_id, created_at, updated_at";
}

impl Insert for SnapshotRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.status)
            .bind(&self.status_message)
            .bind(&self.docker_image)
            .bind(&self.image_digest)
            .bind(&self.source_sandbox_id)
            .bind(self.fs_capacity_bytes)
            .bind(self.fs_used_bytes)
            .bind(&self.run_config)
            .bind(&self.registry_id)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
}

impl Store {
    /// Insert a snapshot and point `name:tag` at it, in one transaction.
    pub async fn insert_snapshot(&self, row: &SnapshotRow, tag: &str) -> StoreResult<()> {
        self.insert_snapshot_with(row, &[tag.to_owned()], None, None)
            .await
    }

    /// Insert a snapshot with its labels (a JSON object) and creator (an API
    /// key's id) and point `name:tag` at it for every tag in `tags`, in one
    /// transaction.
    pub async fn insert_snapshot_with(
        &self,
        row: &SnapshotRow,
        tags: &[String],
        labels: Option<&str>,
        created_by: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let sql = insert_sql::<SnapshotRow>(&["labels", "created_by"]);
        row.bind_values(sqlx::query(&sql))
            .bind(labels)
            .bind(created_by)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
        for tag in tags {
            sqlx::query(
                "DELETE FROM snapshot_tags WHERE tenant_id = $1 AND name = $2 AND tag = $3",
            )
            .bind(&row.tenant_id)
            .bind(&row.name)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO snapshot_tags (tenant_id, name, tag, snapshot_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&row.tenant_id)
            .bind(&row.name)
            .bind(tag)
            .bind(&row.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Labels (a JSON object) and creator of snapshot `id`.
    pub async fn snapshot_meta(&self, id: &str) -> StoreResult<(Option<String>, Option<String>)> {
        let found: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT labels, created_by FROM snapshots WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.unwrap_or_default())
    }

    pub async fn snapshot(&self, tenant_id: &str, id: &str) -> StoreResult<Option<SnapshotRow>> {
        self.find(&[("tenant_id", tenant_id), ("id", id)]).await
    }

    /// The snapshot `name:tag` points at.
    pub async fn snapshot_by_tag(
        &self,
        tenant_id: &str,
        name: &str,
        tag: &str,
    ) -> StoreResult<Option<SnapshotRow>> {
        let cols = SnapshotRow::COLUMNS
            .split(", ")
            .map(|c| format!("s.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(sqlx::query_as(&format!(
            "SELECT {cols} FROM snapshot_tags t JOIN snapshots s ON s.id = t.snapshot_id \
             WHERE t.tenant_id = $1 AND t.name = $2 AND t.tag = $3"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The newest ready snapshot called `name` that no tag points at.
    pub async fn newest_ready_snapshot(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<SnapshotRow>> {
        let filter = [("tenant_id", tenant_id), ("name", name)];
        let sql = format!(
            "{} AND status = 'ready' AND NOT EXISTS \
             (SELECT 1 FROM snapshot_tags t WHERE t.snapshot_id = snapshots.id) \
             ORDER BY created_at DESC, id DESC LIMIT 1",
            select_sql::<SnapshotRow>(&filter)
        );
        Ok(sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_snapshots(
        &self,
        tenant_id: &str,
        name_contains: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<SnapshotRow>> {
        let filter = [("tenant_id", tenant_id)];
        let order = "created_at DESC, id DESC";
        self.find_page(&filter, name_contains, order, (limit, offset))
            .await
    }

    /// Tags (under the snapshot's name) that point at snapshot `id`.
    pub async fn snapshot_tags_of(&self, id: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT tag FROM snapshot_tags WHERE snapshot_id = $1 ORDER BY tag")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// Every `(tag, snapshot_id)` under `name`; `None` if nothing was ever
    /// published under it.
    pub async fn snapshot_tags_by_name(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<Vec<(String, String)>>> {
        let tags: Vec<(String, String)> = sqlx::query_as(
            "SELECT tag, snapshot_id FROM snapshot_tags WHERE tenant_id = $1 AND name = $2 \
             ORDER BY tag",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        if !tags.is_empty() {
            return Ok(Some(tags));
        }
        let any: Option<(String,)> =
            sqlx::query_as("SELECT id FROM snapshots WHERE tenant_id = $1 AND name = $2 LIMIT 1")
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(any.map(|_| Vec::new()))
    }

    /// Record the outcome of a build.
    pub async fn finish_snapshot(
        &self,
        id: &str,
        outcome: Result<(&str, Option<&str>, i64), &str>,
    ) -> StoreResult<()> {
        let query = match outcome {
            Ok((digest, run_config, used)) => sqlx::query(
                "UPDATE snapshots SET status = 'ready', status_message = NULL, image_digest = $1, \
                 run_config = $2, fs_used_bytes = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(digest.to_owned())
            .bind(run_config.map(str::to_owned))
            .bind(used),
            Err(message) => sqlx::query(
                "UPDATE snapshots SET status = 'failed', status_message = $1, updated_at = $2 \
                 WHERE id = $3",
            )
            .bind(message.to_owned()),
        };
        query.bind(now()).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Delete a snapshot (its tags go with it). False if it did not exist.
    pub async fn delete_snapshot(&self, tenant_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM snapshot_tags WHERE snapshot_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM snapshots WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Mark snapshots left `building` by a previous run as failed.
    pub async fn fail_building_snapshots(&self, message: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE snapshots SET status = 'failed', status_message = $1, updated_at = $2 \
             WHERE status = 'building'",
        )
        .bind(message)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
