//! What several replicas share through PostgreSQL, tested with separate
//! connection pools standing in for separate processes: the tenant
//! admission lock, leader election failing over when the leader's session
//! ends, and the shared-key and revocation-epoch rows. PostgreSQL only
//! (`SANDPIT_TEST_DATABASE_URL`, as for tests/store.rs); skipped without it.

use std::sync::Arc;
use std::time::Duration;

use sandpit_server::store::{SandboxRow, Store};
use sqlx::Connection;

const PG_ENV: &str = "SANDPIT_TEST_DATABASE_URL";

/// A fresh schema in the test database, and its URL; `None` without one.
async fn fresh_schema() -> Option<(String, String, String)> {
    let Some(admin_url) = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty()) else {
        eprintln!("{PG_ENV} is not set: skipped");
        return None;
    };
    let schema = format!("r_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::Executor::execute(&mut conn, &*format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options[search_path]={schema}");
    Some((admin_url, schema, url))
}

async fn drop_schema(admin_url: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::Executor::execute(&mut conn, &*format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

fn sandbox(tenant_id: &str, name: &str) -> SandboxRow {
    let at = sandpit_server::store::now();
    SandboxRow {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        status: "provisioning".into(),
        status_message: None,
        image: "host".into(),
        snapshot_id: None,
        template_name: None,
        vcpus: 1,
        mem_bytes: 1 << 30,
        fs_capacity_bytes: 10 << 30,
        idle_ttl_seconds: 600,
        delete_after_stop_seconds: 0,
        ttl_seconds: None,
        persistent: 1,
        proxy_config: None,
        run_config: None,
        labels: "{}".into(),
        extra: "{}".into(),
        net_slot: None,
        pid: None,
        pid_start_time: None,
        created_by: None,
        created_at: at.clone(),
        updated_at: at.clone(),
        stopped_at: None,
        last_activity_at: at,
    }
}

/// One admission as `Sandboxes::create` makes it: lock, count, insert if
/// under `max`, release. The pause widens the window a second process
/// would slip through without the lock.
async fn admit(store: Store, tenant: String, name: String, max: i64) -> bool {
    let lock = store.lock_tenant(&tenant).await.unwrap();
    let usage = store.usage(&tenant).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let admitted = usage.sandboxes < max;
    if admitted {
        store
            .insert_sandbox(&sandbox(&tenant, &name))
            .await
            .unwrap();
    }
    lock.release().await.unwrap();
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admissions_for_a_tenant_are_serialised_across_processes() {
    let Some((admin, schema, url)) = fresh_schema().await else {
        return;
    };
    // Two pools: two replicas' connections.
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    let tenant = a.ensure_tenant("team").await.unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(admit(
            store,
            tenant.clone(),
            format!("s{i}"),
            3,
        )));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += i32::from(task.await.unwrap());
    }
    assert_eq!(admitted, 3);
    assert_eq!(b.usage(&tenant).await.unwrap().sandboxes, 3);
    a.close().await;
    b.close().await;
    drop_schema(&admin, &schema).await;
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_when_the_leaders_session_ends() {
    let Some((admin, schema, url)) = fresh_schema().await else {
        return;
    };
    let one = sandpit_server::cluster::leader::spawn(url.clone(), "one".into());
    wait_until("one to lead", || *one.borrow()).await;
    let two = sandpit_server::cluster::leader::spawn(url.clone(), "two".into());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*one.borrow() && !*two.borrow(), "exactly one leader");
    // End the leader's session, as PostgreSQL does when its process dies.
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = 1396788804 AND objid = 1346982961",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(ended.len(), 1, "one session holds the leader lock");
    wait_until("two to take over", || *two.borrow() && !*one.borrow()).await;
    // The old leader comes back as a follower.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*two.borrow() && !*one.borrow());
    drop((one, two));
    drop_schema(&admin, &schema).await;
}

#[tokio::test]
async fn shared_keys_first_writer_wins_and_epochs_never_go_down() {
    let Some((admin, schema, url)) = fresh_schema().await else {
        return;
    };
    let store = Arc::new(Store::open(&url).await.unwrap());
    assert!(store.insert_cluster_key("k", "first").await.unwrap());
    assert!(!store.insert_cluster_key("k", "second").await.unwrap());
    assert_eq!(
        store.cluster_key("k").await.unwrap(),
        Some(("first".into(), 1))
    );
    // A replacement needs the version it read.
    assert!(!store.replace_cluster_key("k", "stale", 0).await.unwrap());
    assert!(store.replace_cluster_key("k", "new", 1).await.unwrap());
    assert_eq!(
        store.cluster_key("k").await.unwrap(),
        Some(("new".into(), 2))
    );

    store.record_token_epoch("sb", 3, 100).await.unwrap();
    store.record_token_epoch("sb", 2, 101).await.unwrap();
    let epochs = store.token_epochs(0).await.unwrap();
    assert_eq!(epochs, vec![("sb".to_owned(), 3, 101)]);
    // Entries older than every token they revoked are dropped.
    assert!(store.token_epochs(200).await.unwrap().is_empty());
    store.close().await;
    drop_schema(&admin, &schema).await;
}
