//! The HTTP layer and the relay core, without root: a fake runtime whose
//! "sandboxes" are in-process HTTP servers on the agent socket path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::extract::Request;
use axum::routing::{any, get};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use sandpit_runtime::{RunningSandbox, Runtime, RuntimeError, SandboxSpec, Started};
use sandpit_server::auth::{hash_key, Keys, DEFAULT_TENANT};
use sandpit_server::sandboxes::{Sandboxes, SandboxesConfig};
use sandpit_server::state::AppState;
use sandpit_server::store::Store;
use sandpit_server::{app, DataDirs, Defaults, ImageRootfs, ServerConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

const KEY: &str = "test-key";
const OTHER_KEY: &str = "other-tenant-key";

/// How the fake runtime's agents behave.
#[derive(Clone, Copy)]
struct AgentBehaviour {
    /// How long after its start the agent begins to accept (its socket
    /// listens from the start, as a real sandbox's does).
    accepts_after: std::time::Duration,
    /// Whether `/healthz` answers 200 (else 503).
    healthy: bool,
}

const PROMPT_AGENT: AgentBehaviour = AgentBehaviour {
    accepts_after: std::time::Duration::ZERO,
    healthy: true,
};

/// Agent stand-in: `/healthz`, `/echo` (reflects the request) and `/ws`.
fn fake_agent(healthy: bool) -> Router {
    async fn echo(req: Request) -> Json<Value> {
        let headers: HashMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        Json(
            json!({"method": req.method().as_str(), "uri": req.uri().to_string(), "headers": headers}),
        )
    }
    async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
        upgrade.on_upgrade(|mut socket| async move {
            while let Some(Ok(AxumMessage::Text(text))) = socket.recv().await {
                let _ = socket
                    .send(AxumMessage::Text(format!("echo:{text}").into()))
                    .await;
            }
        })
    }
    Router::new()
        .route(
            "/healthz",
            get(move || async move {
                match healthy {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                }
            }),
        )
        .route("/echo", any(echo))
        .route("/ws", get(ws))
}

struct FakeRuntime {
    handle: tokio::runtime::Handle,
    agent: AgentBehaviour,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Runtime for FakeRuntime {
    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError> {
        let _ = std::fs::remove_file(&spec.agent_socket);
        let listener = std::os::unix::net::UnixListener::bind(&spec.agent_socket)
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        listener.set_nonblocking(true).unwrap();
        let agent = self.agent;
        let task = self.handle.spawn(async move {
            tokio::time::sleep(agent.accepts_after).await;
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            axum::serve(listener, fake_agent(agent.healthy))
                .await
                .unwrap();
        });
        self.running.lock().unwrap().insert(spec.id.clone(), task);
        Ok(Started {
            pid: i32::try_from(std::process::id()).unwrap(),
            start_time: 1,
            sandbox_ip: "10.200.0.2".into(),
            host_ip: "10.200.0.1".into(),
            agent_listening: true,
        })
    }
    fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        if let Some(task) = self.running.lock().unwrap().remove(id) {
            task.abort();
        }
        Ok(())
    }
    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
        Ok(Vec::new())
    }
    fn cleanup(&self, _: &[String]) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
    /// Fixed numbers for a running sandbox, none for another.
    fn usage(&self, id: &str) -> Result<Option<sandpit_runtime::Usage>, RuntimeError> {
        Ok(self
            .running
            .lock()
            .unwrap()
            .contains_key(id)
            .then_some(sandpit_runtime::Usage {
                cpu_usec: 1_500_000,
                memory_bytes: 4096,
                memory_peak_bytes: Some(8192),
                processes: 2,
            }))
    }
}

async fn state(dir: &Path, max_upload_bytes: u64) -> AppState {
    state_with(dir, max_upload_bytes, PROMPT_AGENT).await
}

async fn state_with(dir: &Path, max_upload_bytes: u64, agent: AgentBehaviour) -> AppState {
    let dirs = DataDirs::create(dir).unwrap();
    // What a runtime makes when it starts: the directory `DATA/run` links to.
    std::fs::create_dir_all(sandpit_runtime::agent_socket::dir_in(&dirs.runtime_state())).unwrap();
    let store = Store::open_sqlite(&dirs.database()).await.unwrap();
    let tenant = store.ensure_tenant(DEFAULT_TENANT).await.unwrap();
    store
        .set_named_key(&tenant.id, "admin", &hash_key(KEY), "test", true)
        .await
        .unwrap();
    let other = store.ensure_tenant("other").await.unwrap();
    store
        .set_named_key(&other.id, "k", &hash_key(OTHER_KEY), "othe", false)
        .await
        .unwrap();
    let runtime = Arc::new(FakeRuntime {
        handle: tokio::runtime::Handle::current(),
        agent,
        running: Mutex::default(),
    });
    let config = SandboxesConfig {
        dirs: dirs.clone(),
        host_image: ImageRootfs {
            name: "host".into(),
            layers: Vec::new(),
            mounts: Vec::new(),
            env: Vec::new(),
            workdir: "/home/user".into(),
            user: None,
        },
        agent_binary: dir.join("agent"),
        defaults: Defaults::default(),
        agent_log: false,
        ca_bundle: None,
    };
    let sandboxes = Arc::new(Sandboxes::new(store.clone(), runtime, config));
    let secrets = Arc::new(sandpit_server::secrets::Secrets::new(
        store.clone(),
        sandpit_server::secrets::Vault::open(&dirs.secrets_key()).unwrap(),
    ));
    AppState {
        config: Arc::new(ServerConfig {
            data_dir: dir.to_path_buf(),
            max_upload_bytes,
            ..ServerConfig::default()
        }),
        store,
        keys: Arc::new(Keys::default()),
        sandboxes,
        service_keys: Arc::new(
            sandpit_server::gateway::tokens::ServiceKeys::open(&dirs.service_keys()).unwrap(),
        ),
        secrets,
        cluster: None,
        snapshots: None,
    }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sp-relay-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "sandpit.test");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `POST /boxes` with `body`, as the holder of `key`.
async fn create(router: &Router, key: &str, body: Value) -> (StatusCode, Value) {
    call(
        router,
        "POST",
        "/api/v2/sandboxes/boxes",
        Some(key),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_relay_and_credential_stripping() {
    let dir = temp_dir();
    let router = app(state(&dir, 1 << 20).await);
    let (status, created) = create(&router, KEY, json!({"name": "one"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "ready");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["dataplane_url"],
        format!("http://sandpit.test/dataplane/{id}")
    );

    let req = http::Request::get(format!("/dataplane/{id}/echo?path=/a%20b&x=1"))
        .header("x-api-key", KEY)
        .header("authorization", "Bearer secret")
        .header("x-custom", "kept")
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let echoed: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(echoed["uri"], "/echo?path=/a%20b&x=1");
    let headers = echoed["headers"].as_object().unwrap();
    assert!(!headers.contains_key("x-api-key"), "{headers:?}");
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    assert_eq!(headers["x-custom"], "kept");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn dataplane_is_per_tenant_and_needs_a_key() {
    let dir = temp_dir();
    let router = app(state(&dir, 1 << 20).await);
    let (_, created) = create(&router, KEY, json!({"name": "mine"})).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/dataplane/{id}/echo");
    assert_eq!(
        call(&router, "GET", &path, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&router, "GET", &path, Some("wrong"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&router, "GET", &path, Some(OTHER_KEY), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"]["error"], "NotFound");
    // Control routes too: another tenant sees nothing.
    assert_eq!(
        call(
            &router,
            "GET",
            "/api/v2/sandboxes/boxes/mine",
            Some(OTHER_KEY),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &router,
            "DELETE",
            "/api/v2/sandboxes/boxes/mine",
            Some(OTHER_KEY),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = call(
        &router,
        "GET",
        "/api/v2/sandboxes/boxes",
        Some(OTHER_KEY),
        None,
    )
    .await;
    assert_eq!(list["sandboxes"], json!([]));
    // The same name is free in the other tenant.
    let (status, _) = create(&router, OTHER_KEY, json!({"name": "mine"})).await;
    assert_eq!(status, StatusCode::CREATED);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_oversized_bodies_are_refused_before_the_relay() {
    let dir = temp_dir();
    let router = app(state(&dir, 1024).await);
    let (_, created) = create(&router, KEY, json!({})).await;
    let id = created["id"].as_str().unwrap();
    let req = http::Request::post(format!("/dataplane/{id}/echo"))
        .header("x-api-key", KEY)
        .header("content-length", "2048")
        .body(Body::from(vec![b'x'; 2048]))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_are_spliced() {
    let dir = temp_dir();
    let router = app(state(&dir, 1 << 20).await);
    let (_, created) = create(&router, KEY, json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut request = format!("ws://{addr}/dataplane/{id}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(
            reply.into_text().unwrap().as_str(),
            format!("echo:hello {i}")
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_the_api_shape() {
    let dir = temp_dir();
    let router = app(state(&dir, 1 << 20).await);
    for (method, uri, key, body, want) in [
        (
            "GET",
            "/api/v2/sandboxes/boxes",
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/api/v2/sandboxes/boxes/nope",
            Some(KEY),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/v2/sandboxes/boxes",
            Some(KEY),
            Some(json!({"name": "Bad Name"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/sandboxes/boxes",
            Some(KEY),
            Some(json!({"idle_ttl_seconds": 59})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "GET",
            "/api/v2/sandboxes/boxes?sort_by=size",
            Some(KEY),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/api/v2/sandboxes/boxes",
            Some(KEY),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("GET", "/nowhere", None, None, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = call(&router, method, uri, key, body).await;
        assert_eq!(status, want, "{method} {uri}: {body}");
        assert!(
            body["detail"]["error"].is_string() && body["detail"]["message"].is_string(),
            "{method} {uri}: {body}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_the_runtimes_per_tenant_and_metrics_need_the_admin_key() {
    let dir = temp_dir();
    let state = state(&dir, 1 << 20).await;
    let probes = Arc::new(sandpit_server::health::Probes {
        runtime: state.sandboxes.runtime(),
        egress: None,
    });
    let router = app(state).layer(axum::Extension(probes));
    let (status, created) = create(&router, KEY, json!({"name": "used"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let uri = "/api/v2/sandboxes/boxes/used/usage";
    let (status, usage) = call(&router, "GET", uri, Some(KEY), None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["running"], true);
    assert_eq!(usage["cpu_seconds"], 1.5);
    assert_eq!(usage["memory_bytes"], 4096);
    assert_eq!(usage["memory_peak_bytes"], 8192);
    assert_eq!(usage["processes"], 2);
    let (status, _) = call(&router, "GET", uri, Some(OTHER_KEY), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&router, "GET", uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&router, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&router, "GET", "/metrics", Some(OTHER_KEY), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    std::fs::remove_dir_all(dir).ok();
}

/// A sandbox is `ready` once its agent's socket listens: the create does not
/// wait for the agent to answer, and a request sent meanwhile waits for it.
#[tokio::test(flavor = "multi_thread")]
async fn create_answers_before_a_slow_agent_whose_first_request_waits() {
    let dir = temp_dir();
    let slow = AgentBehaviour {
        accepts_after: std::time::Duration::from_millis(1500),
        healthy: true,
    };
    let router = app(state_with(&dir, 1 << 20, slow).await);
    let begun = std::time::Instant::now();
    let (status, created) = create(&router, KEY, json!({"name": "slow"})).await;
    let created_in = begun.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "ready");
    assert!(
        created_in < slow.accepts_after,
        "the create waited {created_in:?} for the agent"
    );
    let id = created["id"].as_str().unwrap();
    let (status, echoed) = call(
        &router,
        "GET",
        &format!("/dataplane/{id}/echo"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    assert_eq!(echoed["uri"], "/echo");
    assert!(begun.elapsed() >= slow.accepts_after);
    std::fs::remove_dir_all(dir).ok();
}

/// An agent that answers its probe with an error gets its sandbox stopped
/// and marked `failed`, with the reason, after the create has answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_whose_agent_fails_its_probe_ends_failed() {
    let dir = temp_dir();
    let sick = AgentBehaviour {
        accepts_after: std::time::Duration::ZERO,
        healthy: false,
    };
    let router = app(state_with(&dir, 1 << 20, sick).await);
    let (status, created) = create(&router, KEY, json!({"name": "sick"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let box_ = loop {
        let (_, box_) = call(
            &router,
            "GET",
            "/api/v2/sandboxes/boxes/sick",
            Some(KEY),
            None,
        )
        .await;
        if box_["status"] == "failed" || std::time::Instant::now() > deadline {
            break box_;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(box_["status"], "failed", "{box_}");
    let message = box_["status_message"].as_str().unwrap_or_default();
    assert!(message.contains("503"), "{box_}");
    std::fs::remove_dir_all(dir).ok();
}
