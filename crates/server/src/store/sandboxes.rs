//! The `sandboxes` table.

use sandpit_api::SandboxStatus;
use sqlx::FromRow;

use super::pools::WARM;
use super::table::{select_sql, Insert, Query, Table};
use super::{now, Store, StoreError, StoreResult};

/// One stored sandbox. JSON-valued columns hold serialised JSON text.
#[derive(Debug, Clone, FromRow)]
pub struct SandboxRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub status: String,
    pub status_message: Option<String>,
    pub image: String,
    pub snapshot_id: Option<String>,
    pub template_name: Option<String>,
    pub vcpus: i64,
    pub mem_bytes: i64,
    pub fs_capacity_bytes: i64,
    pub idle_ttl_seconds: i64,
    pub delete_after_stop_seconds: i64,
    pub ttl_seconds: Option<i64>,
    /// 0 or 1 (the Any driver has no portable boolean).
    pub persistent: i64,
    pub proxy_config: Option<String>,
    pub run_config: Option<String>,
    pub labels: String,
    pub extra: String,
    pub net_slot: Option<i64>,
    pub pid: Option<i64>,
    pub pid_start_time: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub stopped_at: Option<String>,
    pub last_activity_at: String,
}

impl Table for SandboxRow {
    const NAME: &'static str = "sandboxes";
    const COLUMNS: &'static str = "id, tenant_id, name, status, status_message, image, \
        snapshot_id, template_name, vcpus, mem_bytes, fs_capacity_bytes, idle_ttl_seconds, \
        delete_after_stop_seconds, ttl_seconds, persistent, proxy_config, run_config, labels, \
        extra, net_slot, pid, pid_start_time, created_by, created_at, updated_at, stopped_at, \
        last_activity_at";
}

impl Insert for SandboxRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.name)
            .bind(&self.status)
            .bind(&self.status_message)
            .bind(&self.image)
            .bind(&self.snapshot_id)
            .bind(&self.template_name)
            .bind(self.vcpus)
            .bind(self.mem_bytes)
            .bind(self.fs_capacity_bytes)
            .bind(self.idle_ttl_seconds)
            .bind(self.delete_after_stop_seconds)
            .bind(self.ttl_seconds)
            .bind(self.persistent)
            .bind(&self.proxy_config)
            .bind(&self.run_config)
            .bind(&self.labels)
            .bind(&self.extra)
            .bind(self.net_slot)
            .bind(self.pid)
            .bind(self.pid_start_time)
            .bind(&self.created_by)
            .bind(&self.created_at)
            .bind(&self.updated_at)
            .bind(&self.stopped_at)
            .bind(&self.last_activity_at)
    }
}

impl SandboxRow {
    pub fn status(&self) -> StoreResult<SandboxStatus> {
        self.status.parse().map_err(StoreError::Corrupt)
    }
}

/// Column a list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    Status,
    CreatedAt,
}

impl SortColumn {
    fn sql(self) -> &'static str {
        match self {
            SortColumn::Name => "name",
            SortColumn::Status => "status",
            SortColumn::CreatedAt => "created_at",
        }
    }
}

/// A validated `GET /boxes` query.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub name_contains: Option<String>,
    pub status: Option<SandboxStatus>,
    pub sort_by: SortColumn,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Escape `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(super) fn like_pattern(substring: &str) -> String {
    let mut out = String::with_capacity(substring.len() + 2);
    out.push('%');
    for c in substring.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Insert a new sandbox row as given (the caller fills every column).
    pub async fn insert_sandbox(&self, row: &SandboxRow) -> StoreResult<()> {
        self.insert_row(row).await
    }

    /// A sandbox by id, whatever its tenant (internal use).
    pub async fn sandbox(&self, id: &str) -> StoreResult<Option<SandboxRow>> {
        self.find(&[("id", id)]).await
    }

    /// A tenant's sandbox by name.
    pub async fn sandbox_by_name(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<SandboxRow>> {
        self.find(&[("tenant_id", tenant_id), ("name", name)]).await
    }

    pub async fn list_sandboxes(
        &self,
        tenant_id: &str,
        filter: &ListFilter,
    ) -> StoreResult<Vec<SandboxRow>> {
        // Warm pool members are not the tenant's to see.
        let mut sql = format!(
            "{} AND substr(name, 1, {len}) <> '{WARM}'",
            select_sql::<SandboxRow>(&[("tenant_id", tenant_id)]),
            len = WARM.len()
        );
        let mut next = 2;
        if filter.name_contains.is_some() {
            sql.push_str(&format!(" AND LOWER(name) LIKE ${next} ESCAPE '\\'"));
            next += 1;
        }
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${next}"));
            next += 1;
        }
        let dir = if filter.descending { "DESC" } else { "ASC" };
        sql.push_str(&format!(
            " ORDER BY {col} {dir}, id {dir} LIMIT ${next} OFFSET ${}",
            next + 1,
            col = filter.sort_by.sql()
        ));
        let mut query = sqlx::query_as(&sql).bind(tenant_id);
        if let Some(s) = &filter.name_contains {
            query = query.bind(like_pattern(s));
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        Ok(query
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A query that touches no table: the database answers (`/readyz`).
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// How many sandboxes each tenant (by name) has in each status (the
    /// metrics scrape).
    pub async fn sandbox_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT t.name, s.status, CAST(COUNT(*) AS BIGINT) FROM sandboxes s \
             JOIN tenants t ON t.id = s.tenant_id GROUP BY t.name, s.status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every sandbox in one of `statuses`, across tenants (for recovery and
    /// the reconciler).
    pub async fn sandboxes_with_status(
        &self,
        statuses: &[SandboxStatus],
    ) -> StoreResult<Vec<SandboxRow>> {
        let mut all = Vec::new();
        for status in statuses {
            let filter = [("status", status.as_str())];
            all.extend(self.find_all(&filter, "id").await?);
        }
        Ok(all)
    }

    /// Write back the user-editable settings of `row`.
    pub async fn update_sandbox_settings(&self, row: &SandboxRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sandboxes SET name = $1, idle_ttl_seconds = $2, delete_after_stop_seconds = $3, \
             ttl_seconds = $4, proxy_config = $5, run_config = $6, labels = $7, updated_at = $8 \
             WHERE id = $9",
        )
        .bind(&row.name)
        .bind(row.idle_ttl_seconds)
        .bind(row.delete_after_stop_seconds)
        .bind(row.ttl_seconds)
        .bind(&row.proxy_config)
        .bind(&row.run_config)
        .bind(&row.labels)
        .bind(now())
        .bind(&row.id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// Set status and message, leaving everything else alone.
    pub async fn set_status(
        &self,
        id: &str,
        status: SandboxStatus,
        message: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sandboxes SET status = $1, status_message = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(message)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sandbox's init is running: record where, and mark it ready.
    pub async fn mark_running(
        &self,
        id: &str,
        net_slot: i64,
        pid: i64,
        start_time: i64,
    ) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "UPDATE sandboxes SET status = $1, status_message = NULL, net_slot = $2, pid = $3, \
             pid_start_time = $4, stopped_at = NULL, updated_at = $5, last_activity_at = $6 \
             WHERE id = $7",
        )
        .bind(SandboxStatus::Ready.as_str())
        .bind(net_slot)
        .bind(pid)
        .bind(start_time)
        .bind(&ts)
        .bind(&ts)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sandbox has no running processes any more.
    pub async fn mark_not_running(
        &self,
        id: &str,
        status: SandboxStatus,
        message: Option<&str>,
        stopped_at: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sandboxes SET status = $1, status_message = $2, net_slot = NULL, pid = NULL, \
             pid_start_time = NULL, stopped_at = COALESCE($3, stopped_at), updated_at = $4 \
             WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(message)
        .bind(stopped_at)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn touch_activity(&self, id: &str, at: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sandboxes SET last_activity_at = $1 WHERE id = $2 AND last_activity_at < $1",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_sandbox_row(&self, id: &str) -> StoreResult<()> {
        self.delete_where("sandboxes", &[("id", id)]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(like_pattern("ABC"), "%abc%");
    }
}
