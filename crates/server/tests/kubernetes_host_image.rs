//! On the Kubernetes runtime the built-in `host` image (this machine's own
//! file system) cannot run: creating a sandbox from it is a 422 in the API's
//! error shape, before the runtime is asked for anything. The same request
//! with the host image available reaches the runtime (the control).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use http::StatusCode;
use sandpit_runtime::{RunningSandbox, Runtime, RuntimeError, SandboxSpec, Started};
use sandpit_server::auth::{hash_key, Keys, DEFAULT_TENANT};
use sandpit_server::sandboxes::{Sandboxes, SandboxesConfig};
use sandpit_server::state::AppState;
use sandpit_server::store::Store;
use sandpit_server::{app, DataDirs, Defaults, ImageRootfs, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY: &str = "test-key";

/// Counts starts and fails them (no sandbox is wanted here).
#[derive(Default)]
struct CountingRuntime {
    starts: AtomicUsize,
}

impl Runtime for CountingRuntime {
    fn start(&self, _: &SandboxSpec) -> Result<Started, RuntimeError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Err(RuntimeError::Helper("no sandboxes in this test".into()))
    }
    fn stop(&self, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
        Ok(Vec::new())
    }
    fn cleanup(&self, _: &[String]) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}

async fn create(host_image_available: bool) -> (StatusCode, Value, usize) {
    let dir = std::env::temp_dir().join(format!("sp-k8s-host-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dirs = DataDirs::create(&dir).expect("dirs");
    let store = Store::open_sqlite(&dirs.database()).await.expect("store");
    let tenant = store.ensure_tenant(DEFAULT_TENANT).await.expect("tenant");
    store
        .set_named_key(&tenant.id, "admin", &hash_key(KEY), "test", true)
        .await
        .expect("key");
    let runtime = Arc::new(CountingRuntime::default());
    let config = SandboxesConfig {
        dirs: dirs.clone(),
        host_image: ImageRootfs {
            name: "host".into(),
            layers: Vec::new(),
            mounts: Vec::new(),
            env: Vec::new(),
            workdir: "/".into(),
            user: None,
        },
        agent_binary: dir.join("agent"),
        defaults: Defaults {
            host_image_available,
            ..Defaults::default()
        },
        agent_log: false,
        ca_bundle: None,
    };
    let sandboxes = Arc::new(Sandboxes::new(store.clone(), runtime.clone(), config));
    let secrets = Arc::new(sandpit_server::secrets::Secrets::new(
        store.clone(),
        sandpit_server::secrets::Vault::open(&dirs.secrets_key()).expect("vault"),
    ));
    let state = AppState {
        config: Arc::new(ServerConfig {
            data_dir: dir.clone(),
            ..ServerConfig::default()
        }),
        store,
        keys: Arc::new(Keys::default()),
        sandboxes,
        service_keys: Arc::new(
            sandpit_server::gateway::tokens::ServiceKeys::open(&dirs.service_keys()).expect("keys"),
        ),
        secrets,
        cluster: None,
        snapshots: None,
    };
    let req = http::Request::post("/api/v2/sandboxes/boxes")
        .header("host", "sandpit.test")
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(Body::from(json!({"name": "one"}).to_string()))
        .expect("request");
    let resp = app(state).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    std::fs::remove_dir_all(&dir).ok();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        runtime.starts.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_image_is_a_422_on_kubernetes() {
    let (status, body, starts) = create(false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"]["error"], "ValidationError", "{body}");
    let message = body["detail"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("host image"), "{message}");
    assert!(message.contains("Kubernetes"), "{message}");
    assert_eq!(starts, 0, "refused before the runtime is asked");

    // Control: where the host image can run, the same request reaches it.
    // (This runtime fails every start, which the API reports as
    // SandboxCreationFailed.)
    let (status, body, starts) = create(true).await;
    assert_ne!(
        body["detail"]["error"], "ValidationError",
        "{status} {body}"
    );
    assert_eq!(starts, 1, "{status} {body}");
}
