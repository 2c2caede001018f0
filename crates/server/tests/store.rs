//! Every public `Store` method, on every database Sandpit supports: the
//! embedded SQLite always, and PostgreSQL when `SANDPIT_TEST_DATABASE_URL`
//! names a server (`scripts/test` starts a throwaway one). Each test gets a
//! fresh database: a new SQLite file, or a new PostgreSQL schema.

use std::future::Future;
use std::path::PathBuf;

use sandpit_api::SandboxStatus;
use sandpit_server::store::{
    self, ListFilter, NodeRow, PoolRow, QuotaUpdate, RegistryRow, SandboxRow, ServiceGrantRow,
    SnapshotRow, SortColumn, Store, StoreError, TemplateRow, TicketRow, Usage, VolumeRow,
};
use sqlx::Connection;

const PG_ENV: &str = "SANDPIT_TEST_DATABASE_URL";

/// A fresh, empty database.
enum Fresh {
    Sqlite(PathBuf),
    Postgres { admin_url: String, schema: String },
}

impl Fresh {
    fn label(&self) -> &'static str {
        match self {
            Fresh::Sqlite(_) => "sqlite",
            Fresh::Postgres { .. } => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            Fresh::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Fresh::Postgres { admin_url, schema } => {
                let sep = if admin_url.contains('?') { '&' } else { '?' };
                format!("{admin_url}{sep}options[search_path]={schema}")
            }
        }
    }

    async fn remove(self) {
        match self {
            Fresh::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Fresh::Postgres { admin_url, schema } => {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::Executor::execute(&mut conn, &*format!("DROP SCHEMA {schema} CASCADE"))
                    .await
                    .unwrap();
            }
        }
    }
}

/// The databases to run on: SQLite, and PostgreSQL if configured.
async fn fresh_databases() -> Vec<Fresh> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut all = vec![Fresh::Sqlite(
        std::env::temp_dir().join(format!("sandpit-store-{id}.db")),
    )];
    match std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()) {
        Some(admin_url) => {
            let schema = format!("t_{id}");
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("connecting to {PG_ENV}: {e}"));
            sqlx::Executor::execute(&mut conn, &*format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            all.push(Fresh::Postgres { admin_url, schema });
        }
        None => eprintln!("{PG_ENV} is not set: PostgreSQL not tested"),
    }
    all
}

/// Run `case` on a fresh store of every database.
async fn on_each_db<F, Fut>(case: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in fresh_databases().await {
        let label = Label(db.label());
        let store = Store::open(&db.url()).await.unwrap();
        case(store.clone()).await;
        store.close().await;
        db.remove().await;
        drop(label);
    }
}

/// Names the database in a failing test's output.
struct Label(&'static str);

impl Drop for Label {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("^^^ failed on {}", self.0);
        }
    }
}

fn sandbox(tenant_id: &str, name: &str, created_at: &str) -> SandboxRow {
    SandboxRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        status: "provisioning".into(),
        status_message: None,
        image: "host".into(),
        snapshot_id: None,
        template_name: None,
        vcpus: 2,
        mem_bytes: 1 << 30,
        fs_capacity_bytes: 10 << 30,
        idle_ttl_seconds: 600,
        delete_after_stop_seconds: 0,
        ttl_seconds: None,
        persistent: 1,
        proxy_config: None,
        run_config: Some("{}".into()),
        labels: "{}".into(),
        extra: "{}".into(),
        net_slot: None,
        pid: None,
        pid_start_time: None,
        created_by: Some("key-1".into()),
        created_at: created_at.into(),
        updated_at: created_at.into(),
        stopped_at: None,
        last_activity_at: created_at.into(),
    }
}

fn filter(sort_by: SortColumn, descending: bool) -> ListFilter {
    ListFilter {
        name_contains: None,
        status: None,
        sort_by,
        descending,
        limit: 100,
        offset: 0,
    }
}

fn names(rows: &[SandboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn reopening_runs_no_migration_twice() {
    for db in fresh_databases().await {
        let _label = Label(db.label());
        let first = Store::open(&db.url()).await.unwrap();
        let tenant = first.create_tenant("t").await.unwrap();
        first.close().await;
        let again = Store::open(&db.url()).await.unwrap();
        assert_eq!(again.tenant(&tenant.id).await.unwrap(), Some(tenant));
        again.close().await;
        db.remove().await;
    }
}

#[tokio::test]
async fn tenants_and_quotas() {
    on_each_db(|s| async move {
        let a = s.create_tenant("beta").await.unwrap();
        assert!(matches!(
            s.create_tenant("beta").await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.ensure_tenant("beta").await.unwrap(), a);
        let b = s.ensure_tenant("Alpha").await.unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(s.tenant(&a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(s.tenant("nope").await.unwrap(), None);
        assert_eq!(s.tenant_by_name("Alpha").await.unwrap(), Some(b.clone()));
        assert_eq!(s.tenant_by_name("alpha").await.unwrap(), None);
        // Byte order, as on SQLite: upper case first.
        let all: Vec<String> = s
            .tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(all, ["Alpha", "beta"]);

        assert_eq!(a.max_sandboxes, None);
        let set = QuotaUpdate {
            max_sandboxes: Some(Some(3)),
            max_vcpus: Some(Some(8)),
            max_mem_bytes: Some(Some(1 << 40)),
        };
        s.update_quotas(&a.id, &set).await.unwrap();
        let t = s.tenant(&a.id).await.unwrap().unwrap();
        assert_eq!(
            (t.max_sandboxes, t.max_vcpus, t.max_mem_bytes),
            (Some(3), Some(8), Some(1 << 40))
        );
        let clear = QuotaUpdate {
            max_vcpus: Some(None),
            ..QuotaUpdate::default()
        };
        s.update_quotas(&a.id, &clear).await.unwrap();
        let t = s.tenant(&a.id).await.unwrap().unwrap();
        assert_eq!(
            (t.max_sandboxes, t.max_vcpus, t.max_mem_bytes),
            (Some(3), None, Some(1 << 40))
        );
    })
    .await;
}

#[tokio::test]
async fn usage_counts_every_sandbox_and_sums_live_resources() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let other = s.create_tenant("other").await.unwrap();
        assert_eq!(s.usage(&t.id).await.unwrap(), Usage::default());
        let ts = "2024-01-01T00:00:00.000Z";
        let mut ready = sandbox(&t.id, "a", ts);
        ready.status = "ready".into();
        ready.vcpus = 3;
        ready.mem_bytes = 5 << 30;
        let provisioning = sandbox(&t.id, "b", ts);
        let mut stopped = sandbox(&t.id, "c", ts);
        stopped.status = "stopped".into();
        for row in [
            &ready,
            &provisioning,
            &stopped,
            &sandbox(&other.id, "a", ts),
        ] {
            s.insert_sandbox(row).await.unwrap();
        }
        assert_eq!(
            s.usage(&t.id).await.unwrap(),
            Usage {
                sandboxes: 3,
                vcpus: 5,
                mem_bytes: (5 << 30) + (1 << 30),
            }
        );
    })
    .await;
}

#[tokio::test]
async fn keys_are_created_listed_revoked_and_rotated() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let u = s.create_tenant("u").await.unwrap();
        let k1 = s
            .insert_key(&t.id, "ci", "hash-1", "sp_1", false)
            .await
            .unwrap();
        assert_eq!((k1.is_admin, k1.revoked_at.as_deref()), (0, None));
        assert!(matches!(
            s.insert_key(&u.id, "dup", "hash-1", "sp_1", false).await,
            Err(StoreError::Conflict)
        ));
        let k2 = s
            .insert_key(&u.id, "ops", "hash-2", "sp_2", true)
            .await
            .unwrap();
        assert_eq!(k2.is_admin, 1);
        assert_eq!(s.key(&k1.id).await.unwrap().unwrap().key_hash, "hash-1");
        assert!(s.key("nope").await.unwrap().is_none());
        assert_eq!(s.keys(None).await.unwrap().len(), 2);
        let of_t = s.keys(Some(&t.id)).await.unwrap();
        assert_eq!(of_t.iter().map(|k| &k.id).collect::<Vec<_>>(), [&k1.id]);

        assert_eq!(s.live_key("hash-1").await.unwrap().unwrap().id, k1.id);
        assert!(s.revoke_key(&k1.id).await.unwrap());
        assert!(!s.revoke_key(&k1.id).await.unwrap());
        assert!(!s.revoke_key("nope").await.unwrap());
        assert!(s.live_key("hash-1").await.unwrap().is_none());
        assert!(s.key(&k1.id).await.unwrap().unwrap().revoked_at.is_some());

        // The named key: a new hash revokes the old one; the same hash again
        // changes nothing.
        s.set_named_key(&t.id, "admin", "hash-a", "sp_a", true)
            .await
            .unwrap();
        s.set_named_key(&t.id, "admin", "hash-a", "sp_a", true)
            .await
            .unwrap();
        let a = s.live_key("hash-a").await.unwrap().unwrap();
        assert_eq!((a.name.as_str(), a.is_admin), ("admin", 1));
        s.set_named_key(&t.id, "admin", "hash-b", "sp_b", true)
            .await
            .unwrap();
        assert!(s.live_key("hash-a").await.unwrap().is_none());
        assert!(s.live_key("hash-b").await.unwrap().is_some());
        let admin_keys = s
            .keys(Some(&t.id))
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.name == "admin")
            .count();
        assert_eq!(admin_keys, 2);
    })
    .await;
}

#[tokio::test]
async fn sandbox_rows_round_trip_and_update() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let mut row = sandbox(&t.id, "box", "2024-01-01T00:00:00.000Z");
        row.ttl_seconds = Some(3600);
        row.proxy_config = Some(r#"{"rules":[]}"#.into());
        row.labels = r#"{"k":"v"}"#.into();
        s.insert_sandbox(&row).await.unwrap();
        let mut dup = sandbox(&t.id, "box", "2024-01-01T00:00:00.000Z");
        assert!(matches!(
            s.insert_sandbox(&dup).await,
            Err(StoreError::Conflict)
        ));
        dup.name = "box2".into();
        s.insert_sandbox(&dup).await.unwrap();

        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.ttl_seconds, Some(3600));
        assert_eq!(got.persistent, 1);
        assert_eq!(got.labels, r#"{"k":"v"}"#);
        assert_eq!(got.status().unwrap(), SandboxStatus::Provisioning);
        assert!(s.sandbox("nope").await.unwrap().is_none());
        assert_eq!(
            s.sandbox_by_name(&t.id, "box").await.unwrap().unwrap().id,
            row.id
        );
        assert!(s.sandbox_by_name("other", "box").await.unwrap().is_none());

        let mut edit = got.clone();
        edit.name = "renamed".into();
        edit.idle_ttl_seconds = 0;
        edit.delete_after_stop_seconds = 60;
        edit.ttl_seconds = None;
        edit.proxy_config = None;
        edit.run_config = Some(r#"{"cmd":["sh"]}"#.into());
        edit.labels = "{}".into();
        s.update_sandbox_settings(&edit).await.unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.name, "renamed");
        assert_eq!(
            (
                got.idle_ttl_seconds,
                got.delete_after_stop_seconds,
                got.ttl_seconds
            ),
            (0, 60, None)
        );
        assert_eq!(got.proxy_config, None);
        assert_eq!(got.run_config.as_deref(), Some(r#"{"cmd":["sh"]}"#));
        assert!(got.updated_at > row.updated_at);
        edit.name = "box2".into();
        assert!(matches!(
            s.update_sandbox_settings(&edit).await,
            Err(StoreError::Conflict)
        ));

        s.delete_sandbox_row(&row.id).await.unwrap();
        assert!(s.sandbox(&row.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn sandbox_lifecycle_columns() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let row = sandbox(&t.id, "box", "2024-01-01T00:00:00.000Z");
        s.insert_sandbox(&row).await.unwrap();

        s.set_status(&row.id, SandboxStatus::Failed, Some("boom"))
            .await
            .unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status.as_str(), got.status_message.as_deref()),
            ("failed", Some("boom"))
        );

        s.mark_running(&row.id, 7, 4242, 99_000_000_000)
            .await
            .unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.status, "ready");
        assert_eq!(got.status_message, None);
        assert_eq!(
            (got.net_slot, got.pid, got.pid_start_time),
            (Some(7), Some(4242), Some(99_000_000_000))
        );
        assert!(got.last_activity_at > row.last_activity_at);

        s.mark_not_running(
            &row.id,
            SandboxStatus::Stopped,
            None,
            Some("2030-01-01T00:00:00.000Z"),
        )
        .await
        .unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.status, "stopped");
        assert_eq!(
            (got.net_slot, got.pid, got.pid_start_time),
            (None, None, None)
        );
        assert_eq!(got.stopped_at.as_deref(), Some("2030-01-01T00:00:00.000Z"));
        // No new stop time: the old one stays.
        s.mark_not_running(&row.id, SandboxStatus::Failed, Some("gone"), None)
            .await
            .unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.stopped_at.as_deref(), Some("2030-01-01T00:00:00.000Z"));
        assert_eq!(got.status_message.as_deref(), Some("gone"));

        // Activity only moves forward.
        let later = "2031-01-01T00:00:00.000Z";
        s.touch_activity(&row.id, later).await.unwrap();
        s.touch_activity(&row.id, "2020-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let got = s.sandbox(&row.id).await.unwrap().unwrap();
        assert_eq!(got.last_activity_at, later);

        let other = sandbox(&t.id, "other", "2024-01-01T00:00:00.000Z");
        s.insert_sandbox(&other).await.unwrap();
        let failed = s
            .sandboxes_with_status(&[SandboxStatus::Failed])
            .await
            .unwrap();
        assert_eq!(names(&failed), ["box"]);
        let mut some = s
            .sandboxes_with_status(&[SandboxStatus::Provisioning, SandboxStatus::Failed])
            .await
            .unwrap();
        some.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(names(&some), ["box", "other"]);
        assert!(s
            .sandboxes_with_status(&[SandboxStatus::Deleting])
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn sandbox_lists_filter_sort_and_page() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let u = s.create_tenant("u").await.unwrap();
        let rows = [
            ("web-1", "ready", "2024-01-01T00:00:03.000Z"),
            ("Web_2", "stopped", "2024-01-01T00:00:01.000Z"),
            ("db", "ready", "2024-01-01T00:00:02.000Z"),
            ("web%x", "failed", "2024-01-01T00:00:04.000Z"),
            ("a-c", "ready", "2024-01-01T00:00:05.000Z"),
            ("ab", "ready", "2024-01-01T00:00:06.000Z"),
        ];
        for (name, status, at) in rows {
            let mut row = sandbox(&t.id, name, at);
            row.status = status.into();
            s.insert_sandbox(&row).await.unwrap();
        }
        s.insert_sandbox(&sandbox(&u.id, "web-9", "2024-01-01T00:00:00.000Z"))
            .await
            .unwrap();
        // A warm pool member is never listed.
        let warm = format!("{}pool-1", store::warm_prefix("p"));
        s.insert_sandbox(&sandbox(&t.id, &warm, "2024-01-01T00:00:00.000Z"))
            .await
            .unwrap();

        let by_name = s
            .list_sandboxes(&t.id, &filter(SortColumn::Name, false))
            .await
            .unwrap();
        // Byte order on both databases.
        assert_eq!(
            names(&by_name),
            ["Web_2", "a-c", "ab", "db", "web%x", "web-1"]
        );
        let newest = s
            .list_sandboxes(&t.id, &filter(SortColumn::CreatedAt, true))
            .await
            .unwrap();
        assert_eq!(
            names(&newest),
            ["ab", "a-c", "web%x", "web-1", "db", "Web_2"]
        );
        let by_status = s
            .list_sandboxes(&t.id, &filter(SortColumn::Status, false))
            .await
            .unwrap();
        assert_eq!(by_status[0].status, "failed");
        assert_eq!(by_status[5].status, "stopped");

        let contains = |needle: &str| ListFilter {
            name_contains: Some(needle.into()),
            ..filter(SortColumn::Name, false)
        };
        let web = s.list_sandboxes(&t.id, &contains("WEB")).await.unwrap();
        assert_eq!(names(&web), ["Web_2", "web%x", "web-1"]);
        // LIKE wildcards in the needle are literal.
        let pct = s.list_sandboxes(&t.id, &contains("%")).await.unwrap();
        assert_eq!(names(&pct), ["web%x"]);
        let under = s.list_sandboxes(&t.id, &contains("_")).await.unwrap();
        assert_eq!(names(&under), ["Web_2"]);

        let ready = ListFilter {
            status: Some(SandboxStatus::Ready),
            ..contains("web")
        };
        assert_eq!(
            names(&s.list_sandboxes(&t.id, &ready).await.unwrap()),
            ["web-1"]
        );

        let page = |offset| ListFilter {
            limit: 2,
            offset,
            ..filter(SortColumn::Name, true)
        };
        let p0 = s.list_sandboxes(&t.id, &page(0)).await.unwrap();
        let p2 = s.list_sandboxes(&t.id, &page(4)).await.unwrap();
        let p3 = s.list_sandboxes(&t.id, &page(6)).await.unwrap();
        assert_eq!(names(&p0), ["web-1", "web%x"]);
        assert_eq!(names(&p2), ["a-c", "Web_2"]);
        assert!(p3.is_empty());
    })
    .await;
}

fn snapshot_row(tenant_id: &str, name: &str, status: &str, at: &str) -> SnapshotRow {
    SnapshotRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        status: status.into(),
        status_message: None,
        docker_image: Some("docker.io/library/alpine:3".into()),
        image_digest: None,
        source_sandbox_id: None,
        fs_capacity_bytes: 1 << 30,
        fs_used_bytes: None,
        run_config: None,
        registry_id: None,
        created_at: at.into(),
        updated_at: at.into(),
    }
}

#[tokio::test]
async fn snapshots_and_tags() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let old = snapshot_row(&t.id, "py", "ready", "2024-01-01T00:00:01.000Z");
        let new = snapshot_row(&t.id, "py", "building", "2024-01-01T00:00:02.000Z");
        let other = snapshot_row(&t.id, "Node_js", "ready", "2024-01-01T00:00:03.000Z");
        s.insert_snapshot(&old, "latest").await.unwrap();
        s.insert_snapshot(&new, "latest").await.unwrap();
        s.insert_snapshot(&other, "v1").await.unwrap();
        assert!(matches!(
            s.insert_snapshot(&old, "again").await,
            Err(StoreError::Conflict)
        ));

        // `latest` moved to the newer one; the old one has no tag left.
        let latest = s.snapshot_by_tag(&t.id, "py", "latest").await.unwrap();
        assert_eq!(latest.unwrap().id, new.id);
        assert!(s
            .snapshot_by_tag(&t.id, "py", "v9")
            .await
            .unwrap()
            .is_none());
        assert!(s.snapshot_tags_of(&old.id).await.unwrap().is_empty());
        assert_eq!(s.snapshot_tags_of(&new.id).await.unwrap(), ["latest"]);
        assert_eq!(
            s.snapshot_tags_by_name(&t.id, "py").await.unwrap(),
            Some(vec![("latest".to_string(), new.id.clone())])
        );
        assert_eq!(s.snapshot_tags_by_name(&t.id, "nope").await.unwrap(), None);

        // Ready only: the building one does not count.
        let ready = s.newest_ready_snapshot(&t.id, "py").await.unwrap();
        assert_eq!(ready.unwrap().id, old.id);
        s.finish_snapshot(&new.id, Ok(("sha256:abc", Some(r#"{"env":[]}"#), 12345)))
            .await
            .unwrap();
        let got = s.snapshot(&t.id, &new.id).await.unwrap().unwrap();
        assert_eq!(got.status, "ready");
        assert_eq!(got.image_digest.as_deref(), Some("sha256:abc"));
        assert_eq!(got.run_config.as_deref(), Some(r#"{"env":[]}"#));
        assert_eq!(got.fs_used_bytes, Some(12345));
        // Untagged only (a bare name's fallback, issue 17): the newer one
        // is ready now but carries `latest`.
        let ready = s.newest_ready_snapshot(&t.id, "py").await.unwrap();
        assert_eq!(ready.unwrap().id, old.id);
        assert!(s.snapshot("other", &new.id).await.unwrap().is_none());

        let all = s.list_snapshots(&t.id, None, 10, 0).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [&other.id, &new.id, &old.id]);
        let page = s.list_snapshots(&t.id, None, 1, 1).await.unwrap();
        assert_eq!(page[0].id, new.id);
        let node = s.list_snapshots(&t.id, Some("node_"), 10, 0).await.unwrap();
        assert_eq!(node.len(), 1);
        assert!(s
            .list_snapshots(&t.id, Some("%"), 10, 0)
            .await
            .unwrap()
            .is_empty());

        let building = snapshot_row(&t.id, "go", "building", "2024-01-01T00:00:04.000Z");
        s.insert_snapshot(&building, "latest").await.unwrap();
        s.finish_snapshot(&building.id, Err("pull failed"))
            .await
            .unwrap();
        let got = s.snapshot(&t.id, &building.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status.as_str(), got.status_message.as_deref()),
            ("failed", Some("pull failed"))
        );
        let stuck = snapshot_row(&t.id, "rs", "building", "2024-01-01T00:00:05.000Z");
        s.insert_snapshot(&stuck, "latest").await.unwrap();
        s.fail_building_snapshots("server restarted").await.unwrap();
        let got = s.snapshot(&t.id, &stuck.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status.as_str(), got.status_message.as_deref()),
            ("failed", Some("server restarted"))
        );

        assert!(s.delete_snapshot(&t.id, &new.id).await.unwrap());
        assert!(!s.delete_snapshot(&t.id, &new.id).await.unwrap());
        assert!(s
            .snapshot_by_tag(&t.id, "py", "latest")
            .await
            .unwrap()
            .is_none());
        // Published once under the name, so the name still exists.
        assert_eq!(
            s.snapshot_tags_by_name(&t.id, "py").await.unwrap(),
            Some(vec![])
        );
    })
    .await;
}

fn template_row(tenant_id: &str, name: &str) -> TemplateRow {
    TemplateRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        image: "python:3.12".into(),
        image_digest: None,
        resources: r#"{"cpu":"1"}"#.into(),
        volume_mounts: "[]".into(),
        proxy_config: None,
        created_at: store::now(),
        updated_at: store::now(),
    }
}

#[tokio::test]
async fn templates_follow_renames() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let py = template_row(&t.id, "py");
        s.insert_template(&py).await.unwrap();
        s.insert_template(&template_row(&t.id, "Go")).await.unwrap();
        assert!(matches!(
            s.insert_template(&template_row(&t.id, "py")).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.template(&t.id, "py").await.unwrap().unwrap().id, py.id);
        assert!(s.template(&t.id, "nope").await.unwrap().is_none());
        let all: Vec<String> = s
            .templates(&t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(all, ["Go", "py"]);

        s.set_template_digest(&py.id, "sha256:def").await.unwrap();
        let got = s.template(&t.id, "py").await.unwrap().unwrap();
        assert_eq!(got.image_digest.as_deref(), Some("sha256:def"));

        let mut member = sandbox(&t.id, "b", "2024-01-01T00:00:00.000Z");
        member.template_name = Some("py".into());
        let mut member2 = sandbox(&t.id, "a", "2024-01-01T00:00:00.000Z");
        member2.template_name = Some("py".into());
        s.insert_sandbox(&member).await.unwrap();
        s.insert_sandbox(&member2).await.unwrap();
        s.insert_sandbox(&sandbox(&t.id, "c", "2024-01-01T00:00:00.000Z"))
            .await
            .unwrap();
        assert_eq!(
            s.sandboxes_of_template(&t.id, "py").await.unwrap(),
            ["a", "b"]
        );
        s.insert_pool(&pool_row(&t.id, "p", "py")).await.unwrap();

        assert!(s.rename_template(&t.id, "py", "python").await.unwrap());
        assert!(!s.rename_template(&t.id, "py", "python").await.unwrap());
        assert!(matches!(
            s.rename_template(&t.id, "python", "Go").await,
            Err(StoreError::Conflict)
        ));
        assert!(s
            .sandboxes_of_template(&t.id, "py")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.sandboxes_of_template(&t.id, "python").await.unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            s.pools_for_template(&t.id, "python").await.unwrap().len(),
            1
        );

        assert!(s.delete_template(&t.id, "python").await.unwrap());
        assert!(!s.delete_template(&t.id, "python").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn volumes() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let row = |name: &str| VolumeRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: t.id.clone(),
            name: name.into(),
            size: "1Gi".into(),
            size_bytes: 1 << 30,
            extra: "{}".into(),
            created_at: store::now(),
            updated_at: store::now(),
        };
        let data = row("data");
        s.insert_volume(&data).await.unwrap();
        s.insert_volume(&row("cache")).await.unwrap();
        assert!(matches!(
            s.insert_volume(&row("data")).await,
            Err(StoreError::Conflict)
        ));
        let all: Vec<String> = s
            .volumes(&t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(all, ["cache", "data"]);

        let mut grown = s.volume(&t.id, "data").await.unwrap().unwrap();
        grown.name = "data2".into();
        grown.size = "3Gi".into();
        grown.size_bytes = 3 << 30;
        s.update_volume(&grown).await.unwrap();
        assert!(s.volume(&t.id, "data").await.unwrap().is_none());
        let got = s.volume(&t.id, "data2").await.unwrap().unwrap();
        assert_eq!(
            (got.id.as_str(), got.size_bytes),
            (data.id.as_str(), 3 << 30)
        );
        grown.name = "cache".into();
        assert!(matches!(
            s.update_volume(&grown).await,
            Err(StoreError::Conflict)
        ));

        assert!(s.delete_volume(&t.id, "data2").await.unwrap());
        assert!(!s.delete_volume(&t.id, "data2").await.unwrap());
    })
    .await;
}

fn pool_row(tenant_id: &str, name: &str, template: &str) -> PoolRow {
    PoolRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        template_name: template.into(),
        replicas: 2,
        created_at: store::now(),
        updated_at: store::now(),
    }
}

#[tokio::test]
async fn pools_and_claims() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let u = s.create_tenant("u").await.unwrap();
        let p = pool_row(&t.id, "warm", "py");
        s.insert_pool(&p).await.unwrap();
        s.insert_pool(&pool_row(&t.id, "Cold", "go")).await.unwrap();
        s.insert_pool(&pool_row(&u.id, "warm", "py")).await.unwrap();
        assert!(matches!(
            s.insert_pool(&pool_row(&t.id, "warm", "go")).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.pool(&t.id, "warm").await.unwrap().unwrap().id, p.id);
        assert!(s.pool(&t.id, "nope").await.unwrap().is_none());
        assert_eq!(s.pool_by_id(&p.id).await.unwrap().unwrap().name, "warm");
        let of_t: Vec<String> = s
            .pools(Some(&t.id))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(of_t, ["Cold", "warm"]);
        assert_eq!(s.pools(None).await.unwrap().len(), 3);
        assert_eq!(s.pools_for_template(&t.id, "py").await.unwrap().len(), 1);

        let mut renamed = p.clone();
        renamed.name = "hot".into();
        renamed.replicas = 5;
        s.update_pool(&renamed).await.unwrap();
        let got = s.pool_by_id(&p.id).await.unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.replicas), ("hot", 5));
        renamed.name = "Cold".into();
        assert!(matches!(
            s.update_pool(&renamed).await,
            Err(StoreError::Conflict)
        ));

        // Members: by name prefix, oldest first, never another pool's.
        let prefix = store::warm_prefix(&p.id);
        assert!(store::is_warm_name(&prefix));
        let w2 = sandbox(&t.id, &format!("{prefix}b"), "2024-01-01T00:00:02.000Z");
        let w1 = sandbox(&t.id, &format!("{prefix}a"), "2024-01-01T00:00:01.000Z");
        let stranger = sandbox(
            &t.id,
            &format!("{}x", store::warm_prefix("other")),
            "2024-01-01T00:00:00.000Z",
        );
        for row in [&w2, &w1, &stranger] {
            s.insert_sandbox(row).await.unwrap();
        }
        s.insert_sandbox(&sandbox(&t.id, "user-box", "2024-01-01T00:00:00.000Z"))
            .await
            .unwrap();
        let members = s.pool_members(&got).await.unwrap();
        assert_eq!(names(&members), [w1.name.as_str(), w2.name.as_str()]);

        // A claim renames the member once; a second claim of it fails.
        let mut claim = w1.clone();
        claim.name = "mine".into();
        claim.labels = r#"{"who":"me"}"#.into();
        claim.ttl_seconds = Some(60);
        assert!(s.claim_warm(&w1.name, &claim).await.unwrap());
        assert!(!s.claim_warm(&w1.name, &claim).await.unwrap());
        let claimed = s.sandbox_by_name(&t.id, "mine").await.unwrap().unwrap();
        assert_eq!(claimed.id, w1.id);
        assert_eq!(claimed.labels, r#"{"who":"me"}"#);
        assert_eq!(claimed.ttl_seconds, Some(60));
        assert!(claimed.created_at > w1.created_at);
        assert_eq!(claimed.created_at, claimed.last_activity_at);
        assert_eq!(
            names(&s.pool_members(&got).await.unwrap()),
            [w2.name.as_str()]
        );
        // Claiming into a name the tenant already uses is a conflict.
        let mut taken = w2.clone();
        taken.name = "user-box".into();
        assert!(matches!(
            s.claim_warm(&w2.name, &taken).await,
            Err(StoreError::Conflict)
        ));

        s.delete_pool_row(&p.id).await.unwrap();
        assert!(s.pool_by_id(&p.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn secrets() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let u = s.create_tenant("u").await.unwrap();
        s.put_secret(&t.id, "TOKEN", "sealed-1").await.unwrap();
        s.put_secret(&t.id, "API_KEY", "sealed-2").await.unwrap();
        s.put_secret(&u.id, "TOKEN", "sealed-u").await.unwrap();
        s.put_secret(&t.id, "TOKEN", "sealed-3").await.unwrap();
        assert_eq!(
            s.sealed_secret(&t.id, "TOKEN").await.unwrap().as_deref(),
            Some("sealed-3")
        );
        assert_eq!(
            s.sealed_secret(&u.id, "TOKEN").await.unwrap().as_deref(),
            Some("sealed-u")
        );
        assert_eq!(s.sealed_secret(&t.id, "nope").await.unwrap(), None);
        assert_eq!(s.secret_names(&t.id).await.unwrap(), ["API_KEY", "TOKEN"]);
        assert!(s.delete_secret(&t.id, "TOKEN").await.unwrap());
        assert!(!s.delete_secret(&t.id, "TOKEN").await.unwrap());
        assert_eq!(s.secret_names(&t.id).await.unwrap(), ["API_KEY"]);
    })
    .await;
}

fn registry_row(tenant_id: &str, name: &str) -> RegistryRow {
    RegistryRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        url: format!("{name}.example.test:5000"),
        auth_type: "basic".into(),
        username: Some("me".into()),
        sealed_password: Some("sealed".into()),
        created_by: None,
        updated_by: None,
        created_at: store::now(),
        updated_at: store::now(),
    }
}

#[tokio::test]
async fn registries_round_trip_page_and_update() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let names = ["Alpha_1", "alpha%2", "beta", "gamma"];
        let rows: Vec<RegistryRow> = names.iter().map(|n| registry_row(&t.id, n)).collect();
        for row in &rows {
            s.insert_registry(row).await.unwrap();
        }
        assert!(matches!(
            s.insert_registry(&registry_row(&t.id, "beta")).await,
            Err(StoreError::Conflict)
        ));
        let page = |contains: Option<&'static str>, limit, offset| {
            let s = s.clone();
            let t = t.id.clone();
            async move {
                let rows = s.registries(&t, contains, limit, offset).await.unwrap();
                rows.into_iter().map(|r| r.name).collect::<Vec<_>>()
            }
        };
        assert_eq!(page(None, 10, 0).await, names);
        assert_eq!(page(None, 2, 1).await, ["alpha%2", "beta"]);
        // Case folded; `%` and `_` are literal.
        assert_eq!(page(Some("ALPHA"), 10, 0).await, ["Alpha_1", "alpha%2"]);
        assert_eq!(page(Some("%"), 10, 0).await, ["alpha%2"]);
        assert_eq!(page(Some("_"), 10, 0).await, ["Alpha_1"]);

        let beta = rows[2].clone();
        assert_eq!(
            s.registry_by_name(&t.id, "beta").await.unwrap().as_ref(),
            Some(&beta)
        );
        assert_eq!(
            s.registry_by_id(&t.id, &beta.id).await.unwrap().as_ref(),
            Some(&beta)
        );
        let mut renamed = beta.clone();
        renamed.name = "delta".into();
        renamed.username = None;
        renamed.updated_by = Some("key-2".into());
        assert!(s.update_registry(&renamed).await.unwrap());
        assert_eq!(
            s.registry_by_id(&t.id, &beta.id).await.unwrap(),
            Some(renamed.clone())
        );
        renamed.name = "gamma".into();
        assert!(matches!(
            s.update_registry(&renamed).await,
            Err(StoreError::Conflict)
        ));
        assert!(s.delete_registry(&t.id, "delta").await.unwrap());
        assert!(!s.delete_registry(&t.id, "delta").await.unwrap());
        assert!(s.registry_by_id(&t.id, &beta.id).await.unwrap().is_none());
    })
    .await;
}

/// What one tenant stores, another can neither read, list nor delete.
#[tokio::test]
async fn one_tenants_rows_are_not_anothers() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let u = s.create_tenant("u").await.unwrap();
        let template = template_row(&t.id, "tpl");
        s.insert_template(&template).await.unwrap();
        let pool = pool_row(&t.id, "warm", "tpl");
        s.insert_pool(&pool).await.unwrap();
        let registry = registry_row(&t.id, "reg");
        s.insert_registry(&registry).await.unwrap();
        let snap = snapshot_row(&t.id, "snap", "ready", &store::now());
        s.insert_snapshot(&snap, "latest").await.unwrap();
        let sandbox = sandbox(&t.id, "box", &store::now());
        s.insert_sandbox(&sandbox).await.unwrap();
        s.put_secret(&t.id, "TOKEN", "sealed").await.unwrap();

        assert!(s.template(&u.id, "tpl").await.unwrap().is_none());
        assert!(s.templates(&u.id).await.unwrap().is_empty());
        assert!(!s.delete_template(&u.id, "tpl").await.unwrap());
        assert!(s.pool(&u.id, "warm").await.unwrap().is_none());
        assert!(s.pools(Some(&u.id)).await.unwrap().is_empty());
        assert!(s.registry_by_name(&u.id, "reg").await.unwrap().is_none());
        assert!(s
            .registry_by_id(&u.id, &registry.id)
            .await
            .unwrap()
            .is_none());
        assert!(s.registries(&u.id, None, 10, 0).await.unwrap().is_empty());
        assert!(!s.delete_registry(&u.id, "reg").await.unwrap());
        assert!(s.snapshot(&u.id, &snap.id).await.unwrap().is_none());
        assert!(s
            .list_snapshots(&u.id, None, 10, 0)
            .await
            .unwrap()
            .is_empty());
        assert!(!s.delete_snapshot(&u.id, &snap.id).await.unwrap());
        assert!(s.sandbox_by_name(&u.id, "box").await.unwrap().is_none());
        assert!(!s.delete_secret(&u.id, "TOKEN").await.unwrap());

        // All still there for their tenant.
        assert_eq!(
            s.template(&t.id, "tpl").await.unwrap().unwrap().id,
            template.id
        );
        assert_eq!(s.pool(&t.id, "warm").await.unwrap().unwrap().id, pool.id);
        assert_eq!(s.pools(None).await.unwrap().len(), 1);
        assert!(s.registry_by_name(&t.id, "reg").await.unwrap().is_some());
        assert!(s.snapshot(&t.id, &snap.id).await.unwrap().is_some());
        assert_eq!(
            s.sandbox_by_name(&t.id, "box").await.unwrap().unwrap().id,
            sandbox.id
        );
        assert_eq!(
            s.sandbox(&sandbox.id).await.unwrap().unwrap().tenant_id,
            t.id
        );
        assert!(s.sealed_secret(&t.id, "TOKEN").await.unwrap().is_some());
    })
    .await;
}

fn grant_row(sandbox: &SandboxRow, port: i64, access: &str) -> ServiceGrantRow {
    ServiceGrantRow {
        sandbox_id: sandbox.id.clone(),
        port,
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: sandbox.tenant_id.clone(),
        access: access.into(),
        embed_origins: r#"["https://app.example.test"]"#.into(),
        console_url: "http://console.example.test".into(),
        created_at: store::now(),
        updated_at: store::now(),
    }
}

#[tokio::test]
async fn service_grants_upsert_in_place() {
    on_each_db(|s| async move {
        let t = s.create_tenant("t").await.unwrap();
        let sb = sandbox(&t.id, "web", &store::now());
        s.insert_sandbox(&sb).await.unwrap();
        let first = s
            .upsert_service_grant(&grant_row(&sb, 8080, "restricted"))
            .await
            .unwrap();
        assert_eq!(first.origins(), ["https://app.example.test"]);
        // Replacing keeps the grant's id.
        let again = s
            .upsert_service_grant(&grant_row(&sb, 8080, "workspace"))
            .await
            .unwrap();
        assert_eq!(
            (again.id.as_str(), again.access.as_str()),
            (first.id.as_str(), "workspace")
        );
        s.upsert_service_grant(&grant_row(&sb, 9090, "restricted"))
            .await
            .unwrap();
        assert_eq!(s.service_grant(&sb.id, 8080).await.unwrap(), Some(again));
        assert!(s.service_grant(&sb.id, 7070).await.unwrap().is_none());
        let mut ports = s.granted_service_ports().await.unwrap();
        ports.sort();
        assert_eq!(ports, [(sb.id.clone(), 8080), (sb.id.clone(), 9090)]);
        assert_eq!(s.delete_service_grants(&sb.id).await.unwrap(), 2);
        assert_eq!(s.delete_service_grants(&sb.id).await.unwrap(), 0);

        let later = store::format_time(chrono::Utc::now() + chrono::Duration::minutes(5));
        assert!(s.spend_login_ticket("jti-1", &later).await.unwrap());
        assert!(!s.spend_login_ticket("jti-1", &later).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn nodes_and_terminal_tickets() {
    on_each_db(|s| async move {
        let node = |name: &str, beat| NodeRow {
            name: name.into(),
            url: format!("http://{name}.test:8080"),
            runs_sandboxes: 1,
            heartbeat_ms: beat,
        };
        s.heartbeat(&node("b", 1)).await.unwrap();
        s.heartbeat(&node("a", 1)).await.unwrap();
        s.heartbeat(&node("b", 2)).await.unwrap();
        assert_eq!(s.nodes().await.unwrap(), [node("a", 1), node("b", 2)]);
        assert_eq!(s.node("b").await.unwrap(), Some(node("b", 2)));
        assert_eq!(s.node("c").await.unwrap(), None);

        let ticket = TicketRow {
            ticket_hash: "hash-1".into(),
            tenant_id: "t".into(),
            key_id: "k".into(),
            is_admin: 0,
            sandbox_id: "sb".into(),
            expires_ms: chrono::Utc::now().timestamp_millis() + 60_000,
        };
        s.insert_ticket(&ticket).await.unwrap();
        assert!(matches!(
            s.insert_ticket(&ticket).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.take_ticket("hash-1").await.unwrap(), Some(ticket));
        assert_eq!(s.take_ticket("hash-1").await.unwrap(), None);
    })
    .await;
}

/// Each database has its own migrations directory; they must hold the same
/// versions under the same names.
#[test]
fn both_migration_directories_have_the_same_versions() {
    let names = |dir: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sqlite = names("migrations");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("migrations-postgres"));
}

#[test]
fn stored_times_parse_back() {
    let now = store::now();
    let parsed = store::parse_time(&now).unwrap();
    assert_eq!(store::format_time(parsed), now);
    assert!(matches!(
        store::parse_time("yesterday"),
        Err(StoreError::Corrupt(_))
    ));
}
