//! Prometheus metrics: one registry ([`Metrics`], reached through
//! [`global`]) that call sites bump with one line, a middleware in front of
//! every route that counts what the gateway serves ([`track`]), and the
//! scrape (`GET /metrics`, admin key; or unauthenticated on
//! `--metrics-listen`), which first fills the gauges that are read, not
//! counted: sandboxes by status and tenant (from the store), database
//! latency, the runtime helper's queue, the layer store's size, and this
//! process's descriptors and memory (`/proc/self`). The egress proxy's
//! counters live in `sandpit_egress::stats` and are read at each scrape.
//!
//! The text is OpenMetrics (`prometheus-client`); counters end in `_total`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub kind: &'static str,
    /// `in`: from the client; `out`: to the client.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SandboxLabels {
    pub tenant: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to ~65 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    operations: Family<OperationLabels, Counter>,
    operation_seconds: Histograms<OperationLabel>,
    execs: Counter,
    exec_seconds: Histogram,
    requests: Family<KindLabel, Counter>,
    bytes: Family<BytesLabels, Counter>,
    tunnel_bytes: Counter,
    image_pulls: Family<OutcomeLabel, Counter>,
    image_pull_seconds: Histograms<OutcomeLabel>,
    layer_store_bytes: Gauge,
    layer_gc_runs: Counter,
    layer_gc_removed: Family<KindLabel, Counter>,
    layer_gc_freed_bytes: Counter,
    sandboxes: Family<SandboxLabels, Gauge>,
    runtime_queue: Gauge,
    database_seconds: Histogram,
    open_fds: Gauge,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sandpit");
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "sandbox_operations",
            "Sandbox lifecycle calls (create, start, stop, delete) by outcome",
            operations.clone(),
        );
        let operation_seconds: Histograms<OperationLabel> = Family::new_with_constructor(seconds);
        registry.register(
            "sandbox_operation_seconds",
            "Time to answer a sandbox lifecycle call",
            operation_seconds.clone(),
        );
        let execs = Counter::default();
        registry.register(
            "execs",
            "Commands run through the data plane",
            execs.clone(),
        );
        let exec_seconds = seconds();
        registry.register(
            "exec_seconds",
            "Duration of a command request, until its response body ended",
            exec_seconds.clone(),
        );
        let requests = Family::<KindLabel, Counter>::default();
        registry.register(
            "gateway_requests",
            "Requests relayed to sandboxes: kind=dataplane (agent) or service (service URLs and endpoints)",
            requests.clone(),
        );
        let bytes = Family::<BytesLabels, Counter>::default();
        registry.register(
            "gateway_bytes",
            "Body bytes relayed to sandboxes (direction=in) and back (direction=out)",
            bytes.clone(),
        );
        let tunnel_bytes = Counter::default();
        registry.register(
            "tunnel_bytes",
            "Bytes carried by TCP tunnels, both directions",
            tunnel_bytes.clone(),
        );
        let image_pulls = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "image_pulls",
            "Image pulls from registries by outcome",
            image_pulls.clone(),
        );
        let image_pull_seconds: Histograms<OutcomeLabel> = Family::new_with_constructor(seconds);
        registry.register(
            "image_pull_seconds",
            "Duration of image pulls (snapshots and templates; a caller joining a running pull not counted)",
            image_pull_seconds.clone(),
        );
        let layer_store_bytes = Gauge::default();
        registry.register(
            "layer_store_bytes",
            "Bytes of image layers kept in the data dir",
            layer_store_bytes.clone(),
        );
        let layer_gc_runs = Counter::default();
        registry.register(
            "layer_gc_runs",
            "Garbage collections of the layer store (dry runs included)",
            layer_gc_runs.clone(),
        );
        let layer_gc_removed = Family::<KindLabel, Counter>::default();
        registry.register(
            "layer_gc_removed",
            "Entries garbage collection removed from the layer store: kind=image (records) or layer",
            layer_gc_removed.clone(),
        );
        let layer_gc_freed_bytes = Counter::default();
        registry.register(
            "layer_gc_freed_bytes",
            "Bytes of layer files garbage collection removed",
            layer_gc_freed_bytes.clone(),
        );
        let sandboxes = Family::<SandboxLabels, Gauge>::default();
        registry.register(
            "sandboxes",
            "Sandboxes by status and tenant, read from the store at scrape",
            sandboxes.clone(),
        );
        let runtime_queue = Gauge::default();
        registry.register(
            "runtime_helper_queue_depth",
            "Runtime helper calls waiting or in flight",
            runtime_queue.clone(),
        );
        let database_seconds = seconds();
        registry.register(
            "database_query_seconds",
            "Latency of the database health query (at scrape and /readyz)",
            database_seconds.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            open_fds.clone(),
        );
        let resident_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process",
            resident_bytes.clone(),
        );
        let virtual_bytes = Gauge::default();
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory of the server process",
            virtual_bytes.clone(),
        );
        registry.register_collector(Box::new(EgressCollector));
        Self {
            registry,
            operations,
            operation_seconds,
            execs,
            exec_seconds,
            requests,
            bytes,
            tunnel_bytes,
            image_pulls,
            image_pull_seconds,
            layer_store_bytes,
            layer_gc_runs,
            layer_gc_removed,
            layer_gc_freed_bytes,
            sandboxes,
            runtime_queue,
            database_seconds,
            open_fds,
            resident_bytes,
            virtual_bytes,
        }
    }

    /// A lifecycle call answered after `took`.
    pub fn operation(&self, operation: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.operations
            .get_or_create(&OperationLabels { operation, outcome })
            .inc();
        self.operation_seconds
            .get_or_create(&OperationLabel { operation })
            .observe(took.as_secs_f64());
    }

    /// A command request whose response ended after `took`.
    pub fn exec(&self, took: Duration) {
        self.execs.inc();
        self.exec_seconds.observe(took.as_secs_f64());
    }

    /// One request relayed to a sandbox (`kind`: `dataplane` or `service`).
    pub fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&KindLabel { kind }).inc();
    }

    /// Body bytes relayed for `kind`, from the client (`inbound`) or to it.
    pub fn bytes(&self, kind: &'static str, inbound: bool, n: u64) {
        if n == 0 {
            return;
        }
        let direction = if inbound { "in" } else { "out" };
        self.bytes
            .get_or_create(&BytesLabels { kind, direction })
            .inc_by(n);
    }

    /// A service request the fast path relayed itself: `body` bytes in,
    /// `length` (the response's declared length; 0 for chunked bodies,
    /// which it does not count) out.
    pub fn fast_service_request(&self, body: u64, length: u64) {
        self.request("service");
        self.bytes("service", true, body);
        self.bytes("service", false, length);
    }

    /// Bytes a tunnel carried.
    pub fn tunnel_bytes(&self, n: u64) {
        self.tunnel_bytes.inc_by(n);
    }

    /// An image pull ended.
    pub fn image_pull(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.image_pulls
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Pulls the puller recorded since the last scrape, into the histogram.
    fn take_pulls(&self) {
        for (ok, took) in sandpit_images::stats::take_pulls() {
            let outcome = if ok { "ok" } else { "error" };
            self.image_pull_seconds
                .get_or_create(&OutcomeLabel { outcome })
                .observe(took.as_secs_f64());
        }
    }

    /// A garbage collection of the layer store ran (dry runs remove
    /// nothing and count only as a run).
    pub fn layer_gc(&self, report: &sandpit_images::GcReport) {
        self.layer_gc_runs.inc();
        if report.dry_run {
            return;
        }
        self.layer_gc_removed
            .get_or_create(&KindLabel { kind: "image" })
            .inc_by(report.images_removed);
        self.layer_gc_removed
            .get_or_create(&KindLabel { kind: "layer" })
            .inc_by(report.layers_removed);
        self.layer_gc_freed_bytes.inc_by(report.bytes_freed);
    }

    /// A database query took `took`.
    pub fn observe_database(&self, took: Duration) {
        self.database_seconds.observe(took.as_secs_f64());
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The egress proxy's counters, read at scrape.
#[derive(Debug)]
struct EgressCollector;

impl Collector for EgressCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = sandpit_egress::stats::global().snapshot();
        let verdicts = [
            ("allowed", stats.allowed),
            ("denied", stats.denied),
            ("intercepted", stats.intercepted),
        ];
        let first = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "egress_connections",
            "Egress connections (plain HTTP: requests) by verdict",
            None,
            first.metric_type(),
        )?;
        for (verdict, count) in verdicts {
            let labels = [("verdict", verdict)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        let bytes = ConstCounter::new(stats.bytes);
        let metric = encoder.encode_descriptor(
            "egress_bytes",
            "Bytes relayed by the egress proxy for passed-through connections, both directions",
            None,
            bytes.metric_type(),
        )?;
        bytes.encode(metric)
    }
}

// ---- the scrape -------------------------------------------------------

/// What the scrape reads besides the store (set up by `serve`).
pub struct ScrapeSources {
    pub runtime: Arc<dyn sandpit_runtime::Runtime>,
    /// The layer store's directory.
    pub layers: PathBuf,
}

/// `GET /metrics` on the API address: admin keys only.
pub async fn scrape_authenticated(
    state: State<AppState>,
    caller: Caller,
    sources: Option<Extension<Arc<ScrapeSources>>>,
) -> Result<Response, ApiError> {
    if !caller.is_admin {
        return Err(ApiError::Forbidden("Metrics need an admin API key".into()));
    }
    Ok(scrape(state, sources).await)
}

/// `GET /metrics` on `--metrics-listen`: no key (bind it where only the
/// monitoring system reaches).
pub async fn scrape(
    State(state): State<AppState>,
    sources: Option<Extension<Arc<ScrapeSources>>>,
) -> Response {
    let metrics = global();
    refresh_sandboxes(&state, metrics).await;
    if let Some(Extension(sources)) = sources {
        if let Some(depth) = sources.runtime.queue_depth() {
            metrics
                .runtime_queue
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        let dir = sources.layers.clone();
        if let Ok(size) = tokio::task::spawn_blocking(move || dir_size(&dir)).await {
            metrics
                .layer_store_bytes
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
    }
    refresh_process(metrics);
    metrics.take_pulls();
    match metrics.encode() {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        Err(err) => ApiError::Internal(anyhow::anyhow!("encoding metrics: {err}")).into_response(),
    }
}

/// Sandboxes by tenant and status, and the database's latency.
async fn refresh_sandboxes(state: &AppState, metrics: &Metrics) {
    let started = Instant::now();
    let ping = state.store.ping().await;
    metrics.observe_database(started.elapsed());
    if let Err(err) = ping {
        tracing::warn!(error = %err, "metrics: the database did not answer");
        return;
    }
    match state.store.sandbox_counts().await {
        Ok(counts) => {
            metrics.sandboxes.clear();
            for (tenant, status, count) in counts {
                metrics
                    .sandboxes
                    .get_or_create(&SandboxLabels { tenant, status })
                    .set(count);
            }
        }
        Err(err) => tracing::warn!(error = %err, "metrics: counting sandboxes failed"),
    }
}

/// Descriptors and memory of this process.
fn refresh_process(metrics: &Metrics) {
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let open = entries.count();
        metrics
            .open_fds
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(rss) = status_kib(&status, "VmRSS:") {
        metrics.resident_bytes.set(rss.saturating_mul(1024));
    }
    if let Some(size) = status_kib(&status, "VmSize:") {
        metrics.virtual_bytes.set(size.saturating_mul(1024));
    }
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(status: &str, field: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

// ---- counting what the gateway serves ------------------------------------

/// What a request is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A lifecycle call: create, start, stop, delete.
    Operation(&'static str),
    /// A command through the data plane.
    Exec,
    /// Any other data-plane request.
    Dataplane,
    /// A request for a sandbox's service.
    Service,
}

/// Which counter `method` and `path` belong to, if any (`service`: the
/// request is for a sandbox's service, as `gateway::service` decided).
pub fn classify(method: &Method, path: &str, service: bool) -> Option<Kind> {
    if service {
        return Some(Kind::Service);
    }
    if let Some(rest) = path.strip_prefix("/dataplane/") {
        let rest = rest.split_once('/').map_or("", |(_, rest)| rest);
        return Some(match rest == "execute" || rest.starts_with("execute/") {
            true => Kind::Exec,
            false => Kind::Dataplane,
        });
    }
    operation(method, path).map(Kind::Operation)
}

/// The lifecycle call `method` `path` is, on the LangSmith and OpenSandbox
/// routes.
fn operation(method: &Method, path: &str) -> Option<&'static str> {
    let boxes = path
        .strip_prefix("/api/v2/sandboxes/boxes")
        .or_else(|| path.strip_prefix("/v2/sandboxes/boxes"));
    let segments: Vec<&str> = match (boxes, path.strip_prefix("/v1/sandboxes")) {
        (Some(rest), _) | (None, Some(rest)) => {
            rest.trim_end_matches('/').split('/').skip(1).collect()
        }
        (None, None) => return None,
    };
    let opensandbox = boxes.is_none();
    match (method.as_str(), segments.as_slice()) {
        ("POST", []) => Some("create"),
        ("DELETE", [_]) => Some("delete"),
        ("POST", [_, "start"]) if !opensandbox => Some("start"),
        ("POST", [_, "stop"]) if !opensandbox => Some("stop"),
        ("POST", [_, "resume"]) if opensandbox => Some("start"),
        ("POST", [_, "pause"]) if opensandbox => Some("stop"),
        _ => None,
    }
}

/// Middleware in front of every route: counts lifecycle calls, commands and
/// relayed requests, with their bytes and durations.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let service = crate::gateway::service::is_service(&state.config, host, req.uri().path());
    let Some(kind) = classify(req.method(), req.uri().path(), service) else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let metrics = global();
    match kind {
        Kind::Operation(operation) => {
            let response = next.run(req).await;
            let ok = response.status().is_success();
            metrics.operation(operation, ok, started.elapsed());
            response
        }
        Kind::Exec | Kind::Dataplane | Kind::Service => {
            let label = if kind == Kind::Service {
                "service"
            } else {
                "dataplane"
            };
            metrics.request(label);
            let req = req.map(|body| {
                Body::new(Counted::new(body, move |n, _| {
                    metrics.bytes(label, true, n)
                }))
            });
            let response = next.run(req).await;
            response.map(|body| {
                Body::new(Counted::new(body, move |n, _| {
                    metrics.bytes(label, false, n);
                    if kind == Kind::Exec {
                        metrics.exec(started.elapsed());
                    }
                }))
            })
        }
    }
}

/// A body that counts its data bytes and reports them once, when it ends
/// or is dropped.
struct Counted<F: FnOnce(u64, bool) + Send + 'static> {
    inner: Body,
    bytes: u64,
    done: Option<F>,
}

impl<F: FnOnce(u64, bool) + Send + 'static> Counted<F> {
    fn new(inner: Body, done: F) -> Self {
        Self {
            inner,
            bytes: 0,
            done: Some(done),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.done.take() {
            done(self.bytes, complete);
        }
    }
}

impl<F: FnOnce(u64, bool) + Send + Unpin + 'static> hyper::body::Body for Counted<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(u64, bool) + Send + 'static> Drop for Counted<F> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn lifecycle_calls_are_classified_on_both_apis() {
        let post = Method::POST;
        let delete = Method::DELETE;
        let get = Method::GET;
        let cases = [
            (
                &post,
                "/api/v2/sandboxes/boxes",
                Some(Kind::Operation("create")),
            ),
            (
                &post,
                "/v2/sandboxes/boxes/",
                Some(Kind::Operation("create")),
            ),
            (
                &post,
                "/api/v2/sandboxes/boxes/b1/start",
                Some(Kind::Operation("start")),
            ),
            (
                &post,
                "/api/v2/sandboxes/boxes/b1/stop",
                Some(Kind::Operation("stop")),
            ),
            (
                &delete,
                "/api/v2/sandboxes/boxes/b1",
                Some(Kind::Operation("delete")),
            ),
            (&get, "/api/v2/sandboxes/boxes/b1", None),
            (&post, "/api/v2/sandboxes/boxes/b1/snapshot", None),
            (&post, "/v1/sandboxes", Some(Kind::Operation("create"))),
            (
                &post,
                "/v1/sandboxes/x/pause",
                Some(Kind::Operation("stop")),
            ),
            (
                &post,
                "/v1/sandboxes/x/resume",
                Some(Kind::Operation("start")),
            ),
            (&delete, "/v1/sandboxes/x", Some(Kind::Operation("delete"))),
            (&post, "/v1/sandboxes/x/execd/command", None),
            (&post, "/dataplane/id/execute", Some(Kind::Exec)),
            (&get, "/dataplane/id/execute/ws", Some(Kind::Exec)),
            (&get, "/dataplane/id/download", Some(Kind::Dataplane)),
            (&get, "/dataplane/id", Some(Kind::Dataplane)),
            (&get, "/api/v1/admin/tenants", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path, false), want, "{method} {path}");
        }
        assert_eq!(classify(&get, "/anything", true), Some(Kind::Service));
    }

    #[test]
    fn proc_status_fields_parse() {
        let status = "Name:\tsandpit\nVmSize:\t  123 kB\nVmRSS:\t      7 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(7));
        assert_eq!(status_kib(status, "VmSize:"), Some(123));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[tokio::test]
    async fn counted_bodies_report_their_bytes_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        let body = Body::new(Counted::new(
            Body::from("hello world"),
            move |n, complete| {
                tx.send((n, complete)).unwrap();
            },
        ));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 11);
        assert_eq!(rx.try_recv().unwrap(), (11, true));
        assert!(rx.try_recv().is_err(), "reported twice");
    }

    #[test]
    fn the_registry_encodes_every_family() {
        let metrics = global();
        metrics.operation("create", true, Duration::from_millis(5));
        metrics.exec(Duration::from_millis(3));
        let text = metrics.encode().unwrap();
        for name in [
            "sandpit_sandbox_operations_total{operation=\"create\",outcome=\"ok\"}",
            "sandpit_sandbox_operation_seconds_bucket",
            "sandpit_execs_total",
            "sandpit_egress_connections_total{verdict=\"denied\"}",
            "sandpit_egress_bytes_total",
            "sandpit_process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
