//! An in-process stand-in for the Kubernetes API server — NOT a real one.
//!
//! It implements only what the Kubernetes runtime calls, for namespaced
//! pods, secrets, persistentvolumeclaims (core/v1) and networkpolicies
//! (networking.k8s.io/v1): create (409 if present), get (404 if absent),
//! delete, list with a label selector (`key=value` and `key` terms) and
//! watch (newline-delimited watch events). It plays the kubelet too: a pod
//! is `Running` and `Ready` with an IP as soon as it is created, unless a
//! test asked for the next pod to fail. Secrets' `stringData` turns into
//! base64 `data`, as on a real server. It records every object created.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Default)]
pub struct Objects {
    /// (resource, name) → object.
    pub live: BTreeMap<(String, String), Value>,
    /// Every object created, in order: (resource, object as posted).
    pub created: Vec<(String, Value)>,
    pub deleted: Vec<(String, String)>,
    version: u64,
    next_ip: u8,
    /// The next pod created fails with this reason instead of running.
    pub fail_next_pod: Option<String>,
    /// Pods on a node that is lost: a graceful delete only marks them
    /// (no kubelet confirms their end); a forced one removes them.
    pub on_lost_node: std::collections::BTreeSet<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub objects: Arc<Mutex<Objects>>,
    events: broadcast::Sender<(String, Value)>,
    pub url: String,
}

impl Fake {
    pub async fn start() -> Fake {
        let (events, _) = broadcast::channel(1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let fake = Fake {
            objects: Arc::new(Mutex::new(Objects::default())),
            events,
            url: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/{resource}", get(list).post(create))
            .route(
                "/api/v1/namespaces/{ns}/{resource}/{name}",
                get(fetch).delete(remove),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/{resource}",
                get(list).post(create),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/{resource}/{name}",
                get(fetch).delete(remove),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn client(&self) -> kube::Client {
        sandpit_kubernetes::runtime::install_crypto_provider();
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    pub fn created(&self, resource: &str) -> Vec<Value> {
        let objects = self.objects.lock().expect("lock");
        objects
            .created
            .iter()
            .filter(|(r, _)| r == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn live_names(&self, resource: &str) -> Vec<String> {
        let objects = self.objects.lock().expect("lock");
        objects
            .live
            .keys()
            .filter(|(r, _)| r == resource)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The node of pod `name` is lost: after the node controller's eviction
    /// the pod is not ready and being deleted, and stays so until deleted
    /// by force (as on a real cluster until the node object goes).
    pub fn lose_node(&self, name: &str) {
        let mut objects = self.objects.lock().expect("lock");
        objects.version += 1;
        let version = objects.version.to_string();
        objects.on_lost_node.insert(name.to_owned());
        let key = ("pods".to_owned(), name.to_owned());
        let pod = objects.live.get_mut(&key).expect("pod exists");
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:05:00Z");
        pod["metadata"]["resourceVersion"] = json!(version);
        pod["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False", "reason": "NodeLost"},
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
        ]);
        let pod = pod.clone();
        let _ = self
            .events
            .send(("pods".into(), json!({"type": "MODIFIED", "object": pod})));
    }

    /// Sets a live pod's phase (the kubelet saw its container exit).
    pub fn set_phase(&self, name: &str, phase: &str) {
        let mut objects = self.objects.lock().expect("lock");
        objects.version += 1;
        let version = objects.version.to_string();
        let key = ("pods".to_owned(), name.to_owned());
        let pod = objects.live.get_mut(&key).expect("pod exists");
        pod["status"]["phase"] = json!(phase);
        pod["metadata"]["resourceVersion"] = json!(version);
        let pod = pod.clone();
        let _ = self
            .events
            .send(("pods".into(), json!({"type": "MODIFIED", "object": pod})));
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

async fn create(
    State(fake): State<Fake>,
    Path((ns, resource)): Path<(String, String)>,
    Json(mut object): Json<Value>,
) -> Response {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut objects = fake.objects.lock().expect("lock");
    let key = (resource.clone(), name.clone());
    if objects.live.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{resource} {name:?} already exists"),
        );
    }
    objects.created.push((resource.clone(), object.clone()));
    objects.version += 1;
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["resourceVersion"] = json!(objects.version.to_string());
    object["metadata"]["uid"] = json!(format!("uid-{}", objects.version));
    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    if resource == "secrets" {
        if let Some(Value::Object(data)) = object.get("stringData").cloned() {
            let encoded: serde_json::Map<String, Value> = data
                .into_iter()
                .map(|(k, v)| {
                    let raw = v.as_str().unwrap_or_default().as_bytes().to_vec();
                    (
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    )
                })
                .collect();
            object["data"] = Value::Object(encoded);
            object.as_object_mut().expect("object").remove("stringData");
        }
    }
    if resource == "pods" {
        objects.next_ip += 1;
        let ip = format!("10.244.0.{}", objects.next_ip);
        object["status"] = match objects.fail_next_pod.take() {
            Some(reason) => json!({
                "phase": "Failed", "podIP": ip, "hostIP": "192.168.0.10",
                "startTime": "2026-01-01T00:00:01Z",
                "containerStatuses": [{
                    "name": "sandbox", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                    "state": {"waiting": {"reason": reason, "message": "pull access denied"}}
                }]
            }),
            None => json!({
                "phase": "Running", "podIP": ip, "hostIP": "192.168.0.10",
                "startTime": "2026-01-01T00:00:01Z",
                "conditions": [{"type": "Ready", "status": "True"}]
            }),
        };
    }
    objects.live.insert(key, object.clone());
    let _ = fake
        .events
        .send((resource, json!({"type": "ADDED", "object": object.clone()})));
    (StatusCode::CREATED, Json(object)).into_response()
}

async fn fetch(
    State(fake): State<Fake>,
    Path((_ns, resource, name)): Path<(String, String, String)>,
) -> Response {
    let objects = fake.objects.lock().expect("lock");
    match objects.live.get(&(resource.clone(), name.clone())) {
        Some(object) => Json(object.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} {name:?} not found"),
        ),
    }
}

async fn remove(
    State(fake): State<Fake>,
    Path((_ns, resource, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let mut objects = fake.objects.lock().expect("lock");
    let key = (resource.clone(), name.clone());
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let forced = options["gracePeriodSeconds"].as_i64() == Some(0);
    if resource == "pods" && objects.on_lost_node.contains(&name) && !forced {
        // No kubelet will confirm it: it stays, being deleted.
        if let Some(object) = objects.live.get(&key) {
            return Json(object.clone()).into_response();
        }
    }
    match objects.live.remove(&key) {
        Some(object) => {
            objects.deleted.push((resource.clone(), name));
            let _ = fake.events.send((
                resource,
                json!({"type": "DELETED", "object": object.clone()}),
            ));
            Json(object).into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} {name:?} not found"),
        ),
    }
}

/// `key=value` and bare `key` terms, comma-separated; field selectors
/// `metadata.name=...` and `status.podIP=...` only.
fn matches(object: &Value, query: &BTreeMap<String, String>) -> bool {
    let labels = &object["metadata"]["labels"];
    let by_label = query.get("labelSelector").is_none_or(|selector| {
        selector
            .split(',')
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => labels[k].as_str() == Some(v),
                None => !labels[term].is_null(),
            })
    });
    let by_field = query.get("fieldSelector").is_none_or(|selector| {
        selector.split(',').all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => object["metadata"]["name"].as_str() == Some(v),
            Some(("status.podIP", v)) => object["status"]["podIP"].as_str() == Some(v),
            _ => false,
        })
    });
    by_label && by_field
}

async fn list(
    State(fake): State<Fake>,
    Path((_ns, resource)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("watch").map(String::as_str) == Some("true") {
        return watch(fake, resource, query);
    }
    let objects = fake.objects.lock().expect("lock");
    let items: Vec<Value> = objects
        .live
        .iter()
        .filter(|((r, _), o)| *r == resource && matches(o, &query))
        .map(|(_, o)| o.clone())
        .collect();
    Json(json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": objects.version.to_string()},
        "items": items,
    }))
    .into_response()
}

/// Events from now on (a real server replays from `resourceVersion`; the
/// runtime reads the current state first, so nothing in between is lost
/// unless it changes within that gap, which these tests never do).
fn watch(fake: Fake, resource: String, query: BTreeMap<String, String>) -> Response {
    let events = tokio_stream_of(fake.events.subscribe()).filter_map(move |(r, event)| {
        let wanted = r == resource && matches(&event["object"], &query);
        async move { wanted.then(|| Ok::<_, std::io::Error>(format!("{event}\n"))) }
    });
    Response::new(Body::from_stream(events))
}

fn tokio_stream_of(
    rx: broadcast::Receiver<(String, Value)>,
) -> impl futures_util::Stream<Item = (String, Value)> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
