//! Every route of `crate::routes::app`, described: one entry per
//! registration (`tests` checks the two lists against each other).

use utoipa::openapi::path::{HttpMethod, Parameter};
use utoipa::IntoParams;

use super::{json, json_array, other, route, route_with, Auth, Errors, Op, Route, ANY};

use HttpMethod::{Delete, Get, Patch, Post, Put};

/// The prefixes the LangSmith-compatible API is mounted at.
const SANDBOX_PREFIXES: [&str; 2] = ["/api/v2/sandboxes", "/v2/sandboxes"];

pub fn all() -> Vec<Route> {
    let mut routes = Vec::new();
    for prefix in SANDBOX_PREFIXES {
        routes.extend(langsmith(prefix));
    }
    routes.extend(admin());
    routes.extend(secrets());
    routes.extend(operator());
    routes.extend(data_plane());
    routes.extend(opensandbox_lifecycle());
    routes.extend(opensandbox_execd());
    routes.extend(console());
    routes
}

fn key(tag: &'static str, summary: &'static str) -> Op {
    Op::new(tag, summary, Auth::Key)
}

fn list_boxes_query() -> Vec<Parameter> {
    sandpit_api::ListSandboxesQuery::into_params(|| None)
}

/// The LangSmith-compatible sandbox API under `prefix`.
fn langsmith(prefix: &str) -> Vec<Route> {
    let p = |path: &str| format!("{prefix}{path}");
    let sandbox = || Some(json("SandboxResponse"));
    vec![
        route(
            &[Post],
            &p("/boxes"),
            key("sandboxes", "Create a sandbox")
                .request(json("CreateSandboxRequest"))
                .ok(201, sandbox()),
        ),
        route_with(
            &[Get],
            &p("/boxes"),
            key("sandboxes", "List sandboxes").ok(200, Some(json("SandboxListResponse"))),
            list_boxes_query(),
        ),
        route(
            &[Get],
            &p("/boxes/{name}"),
            key("sandboxes", "Get a sandbox").ok(200, sandbox()),
        ),
        route(
            &[Patch],
            &p("/boxes/{name}"),
            key(
                "sandboxes",
                "Update a sandbox (rename, lifetimes, proxy, labels)",
            )
            .request(json("UpdateSandboxRequest"))
            .ok(200, sandbox()),
        ),
        route(
            &[Delete],
            &p("/boxes/{name}"),
            key("sandboxes", "Delete a sandbox").ok(204, None),
        ),
        route(
            &[Get],
            &p("/boxes/{name}/status"),
            key("sandboxes", "Status of a sandbox").ok(200, Some(json("StatusResponse"))),
        ),
        route(
            &[Get],
            &p("/boxes/{name}/usage"),
            key("sandboxes", "CPU, memory, disk and processes of a sandbox")
                .ok(200, Some(json("Usage"))),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/stop"),
            key("sandboxes", "Stop a sandbox (its filesystem is kept)").ok(200, sandbox()),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/start"),
            key("sandboxes", "Start a stopped sandbox")
                .request(json("StartSandboxRequest"))
                .ok(200, sandbox()),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/snapshot"),
            key("snapshots", "Capture a sandbox's filesystem as a snapshot")
                .request(json("CaptureSnapshotRequest"))
                .ok(201, Some(json("Snapshot"))),
        ),
        route(
            &[Post],
            &p("/snapshots"),
            key("snapshots", "Create a snapshot from an OCI image")
                .request(json("CreateSnapshotRequest"))
                .ok(201, Some(json("Snapshot"))),
        ),
        route(
            &[Get],
            &p("/snapshots"),
            key("snapshots", "List snapshots")
                .query("limit", "Page size")
                .query("offset", "First snapshot to return")
                .query("name_contains", "Only names containing this")
                .ok(200, Some(json("SnapshotList"))),
        ),
        route(
            &[Get],
            &p("/snapshots/{reference}"),
            key("snapshots", "Get a snapshot").ok(200, Some(json("Snapshot"))),
        ),
        route(
            &[Delete],
            &p("/snapshots/{reference}"),
            key("snapshots", "Delete a snapshot").ok(204, None),
        ),
        route(
            &[Get],
            &p("/snapshots-by-name/{name}"),
            key("snapshots", "Every tag of a snapshot name").ok(
                200,
                Some(other(
                    "application/json",
                    "The snapshots of that name, by tag",
                )),
            ),
        ),
        route(
            &[Post],
            &p("/templates"),
            key("templates", "Create a template")
                .request(other("application/json", "Template fields"))
                .ok(201, Some(json("Template"))),
        ),
        route(
            &[Get],
            &p("/templates"),
            key("templates", "List templates").ok(200, Some(json_array("Template"))),
        ),
        route(
            &[Get],
            &p("/templates/{name}"),
            key("templates", "Get a template").ok(200, Some(json("Template"))),
        ),
        route(
            &[Patch],
            &p("/templates/{name}"),
            key("templates", "Update a template")
                .request(other("application/json", "Template fields to change"))
                .ok(200, Some(json("Template"))),
        ),
        route(
            &[Delete],
            &p("/templates/{name}"),
            key("templates", "Delete a template").ok(204, None),
        ),
        route(
            &[Post],
            &p("/volumes"),
            key("volumes", "Create a volume")
                .request(other("application/json", "`name` and `size`"))
                .ok(201, Some(json("Volume"))),
        ),
        route(
            &[Get],
            &p("/volumes"),
            key("volumes", "List volumes").ok(200, Some(json_array("Volume"))),
        ),
        route(
            &[Get],
            &p("/volumes/{name}"),
            key("volumes", "Get a volume").ok(200, Some(json("Volume"))),
        ),
        route(
            &[Patch],
            &p("/volumes/{name}"),
            key("volumes", "Update a volume")
                .request(other("application/json", "Volume fields to change"))
                .ok(200, Some(json("Volume"))),
        ),
        route(
            &[Delete],
            &p("/volumes/{name}"),
            key("volumes", "Delete a volume").ok(204, None),
        ),
        route(
            &[Post],
            &p("/pools"),
            key("pools", "Create a warm pool")
                .request(json("CreatePoolRequest"))
                .ok(201, Some(json("PoolResponse"))),
        ),
        route(
            &[Get],
            &p("/pools"),
            key("pools", "List warm pools").ok(200, Some(json("PoolListResponse"))),
        ),
        route(
            &[Get],
            &p("/pools/{name}"),
            key("pools", "Get a warm pool").ok(200, Some(json("PoolResponse"))),
        ),
        route(
            &[Patch],
            &p("/pools/{name}"),
            key("pools", "Resize or rename a warm pool")
                .request(json("UpdatePoolRequest"))
                .ok(200, Some(json("PoolResponse"))),
        ),
        route(
            &[Delete],
            &p("/pools/{name}"),
            key("pools", "Delete a warm pool").ok(204, None),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/service-url"),
            key("service-urls", "Sign a URL for a port of the sandbox")
                .request(json("ServiceUrlRequest"))
                .ok(200, Some(json("ServiceUrl"))),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/service-url/revoke"),
            key("service-urls", "Revoke every service URL of the sandbox").ok(
                200,
                Some(other("application/json", "Confirmation of the revocation")),
            ),
        ),
        route(
            &[Post],
            &p("/boxes/{name}/download-url"),
            key(
                "sandboxes",
                "Sign a download link for one file of the sandbox",
            )
            .request(json("DownloadUrlRequest"))
            .ok(200, Some(json("DownloadUrl"))),
        ),
        route(
            &[Post],
            &p("/registries"),
            key("registries", "Add a private image registry")
                .request(json("Registry"))
                .ok(201, Some(json("Registry"))),
        ),
        route(
            &[Get],
            &p("/registries"),
            key("registries", "List registries")
                .query("limit", "Page size")
                .query("page_size", "Page size (alias of limit)")
                .query("offset", "First registry to return")
                .query("cursor", "Opaque cursor of the next page")
                .query("name_contains", "Only names containing this")
                .ok(
                    200,
                    Some(other(
                        "application/json",
                        "`registries` (Registry objects) and paging",
                    )),
                ),
        ),
        route(
            &[Get],
            &p("/registries/{name}"),
            key("registries", "Get a registry").ok(200, Some(json("Registry"))),
        ),
        route(
            &[Patch],
            &p("/registries/{name}"),
            key("registries", "Update a registry")
                .request(json("Registry"))
                .ok(200, Some(json("Registry"))),
        ),
        route(
            &[Delete],
            &p("/registries/{name}"),
            key("registries", "Delete a registry").ok(204, None),
        ),
    ]
}

fn admin_op(summary: &'static str) -> Op {
    Op::new("admin", summary, Auth::Admin)
}

/// `/api/v1/admin` (admin keys only).
fn admin() -> Vec<Route> {
    let p = |path: &str| format!("/api/v1/admin{path}");
    vec![
        route(
            &[Post],
            &p("/tenants"),
            admin_op("Create a tenant")
                .request(json("CreateTenantRequest"))
                .ok(201, Some(json("TenantResponse"))),
        ),
        route(
            &[Get],
            &p("/tenants"),
            admin_op("List tenants with quotas and usage")
                .ok(200, Some(json("TenantListResponse"))),
        ),
        route(
            &[Get],
            &p("/tenants/{tenant}"),
            admin_op("Get a tenant").ok(200, Some(json("TenantResponse"))),
        ),
        route(
            &[Patch],
            &p("/tenants/{tenant}"),
            admin_op("Change a tenant's quotas (null: unlimited)")
                .request(json("UpdateTenantRequest"))
                .ok(200, Some(json("TenantResponse"))),
        ),
        route(
            &[Post],
            &p("/keys"),
            admin_op("Create an API key (shown once)")
                .request(json("CreateKeyRequest"))
                .ok(201, Some(json("CreatedKeyResponse"))),
        ),
        route(
            &[Get],
            &p("/keys"),
            admin_op("List API keys")
                .query("tenant", "Only this tenant's keys (name or id)")
                .ok(200, Some(json("KeyListResponse"))),
        ),
        route(
            &[Delete],
            &p("/keys/{id}"),
            admin_op("Revoke an API key").ok(204, None),
        ),
        route(
            &[Post],
            &p("/gc"),
            admin_op("Garbage-collect unused image layers now")
                .query(
                    "dry_run",
                    "`true`: report what would be removed, remove nothing",
                )
                .ok(
                    200,
                    Some(other(
                        "application/json",
                        "Layers removed (or that would be) and bytes freed",
                    )),
                ),
        ),
        route(
            &[Post],
            &p("/service-keys/rotate"),
            admin_op("Rotate the service-URL signing key").ok(
                200,
                Some(other("application/json", "The new key's id (see the JWKS)")),
            ),
        ),
    ]
}

/// Workspace secrets of the caller's tenant.
fn secrets() -> Vec<Route> {
    let base = "/api/v1/workspaces/current/secrets";
    let item = format!("{base}/{{key}}");
    vec![
        route(
            &[Get],
            base,
            key("secrets", "List the names of the workspace's secrets")
                .ok(200, Some(json_array("Secret"))),
        ),
        route(
            &[Put],
            &item,
            key(
                "secrets",
                "Create or replace a secret (its value is never returned)",
            )
            .request(json("UpsertSecretRequest"))
            .ok(200, Some(json("Secret"))),
        ),
        route(
            &[Delete],
            &item,
            key("secrets", "Delete a secret (a missing one too)").ok(204, None),
        ),
    ]
}

/// Probes, metrics and this document.
fn operator() -> Vec<Route> {
    vec![
        route(
            &[Get],
            "/healthz",
            Op::new("operations", "Liveness probe", Auth::Public)
                .ok(200, Some(other("text/plain", "ok"))),
        ),
        route(
            &[Get],
            "/readyz",
            Op::new(
                "operations",
                "Readiness: database, runtime helper and egress answer (503 otherwise)",
                Auth::Public,
            )
            .ok(200, Some(other("text/plain", "ready"))),
        ),
        route(
            &[Get],
            "/metrics",
            Op::new(
                "operations",
                "Prometheus metrics (OpenMetrics text)",
                Auth::Admin,
            )
            .ok(
                200,
                Some(other(
                    "application/openmetrics-text",
                    "Counters, gauges and histograms",
                )),
            ),
        ),
        route(
            &[Get],
            super::PATH,
            Op::new("operations", "This OpenAPI document", Auth::Public).ok(
                200,
                Some(other("application/json", "An OpenAPI 3.1 document")),
            ),
        ),
        route(
            &[Get],
            "/.well-known/jwks.json",
            Op::new(
                "service-urls",
                "Public keys that verify service-URL tokens",
                Auth::Public,
            )
            .ok(200, Some(other("application/json", "A JSON Web Key Set"))),
        ),
        route(
            &[Post],
            "/internal/v1/cluster",
            Op::new(
                "internal",
                "Replica-to-replica operation on a sandbox the callee owns",
                Auth::Cluster,
            )
            .request(other("application/json", "The operation"))
            .ok(200, Some(other("application/json", "Its result"))),
        ),
        route(
            &[Get],
            "/internal/v1/cluster/images/{digest}",
            Op::new(
                "internal",
                "An image record this replica holds, for a replica that boots it",
                Auth::Cluster,
            )
            .ok(200, Some(other("application/json", "The image record"))),
        ),
        route(
            &[Get],
            "/internal/v1/cluster/layers/{digest}",
            Op::new(
                "internal",
                "A layer this replica holds, as an uncompressed OCI layer tar",
                Auth::Cluster,
            )
            .ok(200, Some(other("application/x-tar", "The layer"))),
        ),
    ]
}

/// The data plane (the `langsmith` SDK's protocol, relayed to the agent).
fn data_plane() -> Vec<Route> {
    let relay = || {
        key(
            "data-plane",
            "Relayed to the sandbox's agent (exec, files, WebSocket exec); a stopped \
             sandbox is started first",
        )
        .ok(
            200,
            Some(other("application/octet-stream", "The agent's answer")),
        )
    };
    vec![
        route(ANY, "/dataplane/{id}", relay()),
        route(ANY, "/dataplane/{id}/{*rest}", relay()),
        route(
            &[Get],
            "/dataplane/{id}/tunnel",
            key(
                "data-plane",
                "TCP tunnel: a WebSocket carrying a yamux session (`sb.tunnel()`)",
            )
            .ok(101, None),
        ),
        route(
            &[Get],
            "/download/{token}",
            Op::new(
                "sandboxes",
                "Fetch the file a signed download link names (no key)",
                Auth::Public,
            )
            .ok(200, Some(other("application/octet-stream", "The file"))),
        ),
    ]
}

fn os(summary: &'static str) -> Op {
    Op::new("opensandbox", summary, Auth::OpenSandbox).errors(Errors::OpenSandbox)
}

fn not_implemented(summary: &'static str) -> Op {
    os(summary).ok(501, Some(json("OsError")))
}

/// OpenSandbox lifecycle (`specs/sandbox-lifecycle.yml`).
fn opensandbox_lifecycle() -> Vec<Route> {
    let sandbox = || Some(json("OsSandbox"));
    vec![
        route(
            &[Post],
            "/v1/sandboxes",
            os("Create a sandbox")
                .request(json("OsCreateSandboxRequest"))
                .ok(202, sandbox()),
        ),
        route(
            &[Get],
            "/v1/sandboxes",
            os("List sandboxes")
                .query("state", "Only sandboxes in this state (repeatable)")
                .query(
                    "metadata",
                    "`k=v&k2=v2`: only sandboxes with these metadata",
                )
                .query("page", "Page number, from 1")
                .query("pageSize", "Page size")
                .ok(200, Some(json("OsSandboxList"))),
        ),
        route(
            &[Get],
            "/v1/sandboxes/{id}",
            os("Get a sandbox").ok(200, sandbox()),
        ),
        route(
            &[Delete],
            "/v1/sandboxes/{id}",
            os("Delete a sandbox").ok(204, None),
        ),
        route(
            &[Post],
            "/v1/sandboxes/{id}/pause",
            os("Pause (stop) a sandbox").ok(202, None),
        ),
        route(
            &[Post],
            "/v1/sandboxes/{id}/resume",
            os("Resume (start) a sandbox").ok(202, None),
        ),
        route(
            &[Post],
            "/v1/sandboxes/{id}/renew-expiration",
            os("Move a sandbox's expiry")
                .request(json("OsRenewRequest"))
                .ok(200, Some(json("OsRenewResponse"))),
        ),
        route(
            &[Patch],
            "/v1/sandboxes/{id}/metadata",
            os("Set (string) or remove (null) metadata keys")
                .request(other("application/json", "Metadata patch"))
                .ok(200, sandbox()),
        ),
        route(
            &[Get],
            "/v1/sandboxes/{id}/endpoints/{port}",
            os("Where to reach a port of the sandbox, with the headers to send")
                .query("use_server_proxy", "Accepted; Sandpit always proxies")
                .query("expires", "Unix second at which the endpoint stops working")
                .ok(200, Some(json("EndpointResponse"))),
        ),
        route(
            &[Post],
            "/v1/metrics/events",
            os("SDK telemetry: accepted and not recorded")
                .request(other("application/json", "Any JSON"))
                .ok(204, None),
        ),
        route(
            ANY,
            "/v1/sandboxes/{id}/networkpolicy",
            not_implemented("Network policy API: not implemented (use proxy_config)"),
        ),
        route(
            ANY,
            "/v1/sandboxes/{id}/snapshots",
            not_implemented("OpenSandbox snapshots: not implemented (use Sandpit snapshots)"),
        ),
        route(
            ANY,
            "/v1/sandboxes/{id}/diagnostics/{*rest}",
            not_implemented("Diagnostics API: not implemented"),
        ),
        route(
            ANY,
            "/v1/snapshots",
            not_implemented("OpenSandbox snapshots: not implemented (use Sandpit snapshots)"),
        ),
        route(
            ANY,
            "/v1/snapshots/{*rest}",
            not_implemented("OpenSandbox snapshots: not implemented (use Sandpit snapshots)"),
        ),
        route(
            ANY,
            "/v1/templates",
            not_implemented("OpenSandbox templates: not implemented"),
        ),
        route(
            ANY,
            "/v1/templates/{*rest}",
            not_implemented("OpenSandbox templates: not implemented"),
        ),
    ]
}

fn execd(summary: &'static str) -> Op {
    Op::new("opensandbox-execd", summary, Auth::Execd).errors(Errors::OpenSandbox)
}

fn execd_json(summary: &'static str, request: &str, response: &str) -> Op {
    execd(summary)
        .request(other("application/json", request))
        .ok(200, Some(other("application/json", response)))
}

/// OpenSandbox execd, served by Sandpit itself at the execd endpoint.
fn opensandbox_execd() -> Vec<Route> {
    let p = |path: &str| format!("/v1/sandboxes/{{id}}/execd{path}");
    let sse = |what: &str| Some(other("text/event-stream", what));
    let unimplemented = |summary| execd(summary).ok(501, Some(json("OsError")));
    vec![
        route(&[Get], &p("/ping"), execd("Is execd up").ok(200, None)),
        route(
            &[Post],
            &p("/command"),
            execd("Run a command (foreground: streamed events; background: its id)")
                .request(other(
                    "application/json",
                    "`command`, `cwd`, `background`, `envs`, `timeout`",
                ))
                .ok(200, sse("Command events")),
        ),
        route(
            &[Delete],
            &p("/command"),
            execd("Interrupt a command")
                .query("id", "Command id")
                .ok(200, None),
        ),
        route(
            &[Post],
            &p("/command/{cid}/interrupt"),
            execd("Interrupt a command").ok(200, None),
        ),
        route(
            &[Get],
            &p("/command/status/{cid}"),
            execd("Status of a background command").ok(
                200,
                Some(other("application/json", "Running, exit code, times")),
            ),
        ),
        route(
            &[Get],
            &p("/command/{cid}/logs"),
            execd("Output of a background command")
                .query("cursor", "Where to continue from")
                .ok(200, Some(other("text/plain", "Output since the cursor"))),
        ),
        route(
            &[Delete],
            &p("/files"),
            execd("Remove files")
                .query("path", "File (repeatable)")
                .ok(200, None),
        ),
        route(
            &[Get],
            &p("/files/info"),
            execd("File metadata")
                .query("path", "File (repeatable)")
                .ok(200, Some(other("application/json", "Metadata by path"))),
        ),
        route(
            &[Post],
            &p("/files/permissions"),
            execd_json("Change modes and owners", "Permissions by path", "Empty"),
        ),
        route(
            &[Post],
            &p("/files/mv"),
            execd_json("Rename files", "`src`/`dest` pairs", "Empty"),
        ),
        route(
            &[Get],
            &p("/files/search"),
            execd("Find files by glob")
                .query("path", "Directory to search")
                .query("pattern", "Glob")
                .ok(200, Some(other("application/json", "Matching files"))),
        ),
        route(
            &[Post],
            &p("/files/replace"),
            execd_json("Replace text in files", "Replacements by path", "Empty"),
        ),
        route(
            &[Post],
            &p("/files/upload"),
            execd("Upload files (multipart: metadata and file parts)")
                .request(other("multipart/form-data", "metadata + file parts"))
                .ok(200, None),
        ),
        route(
            &[Get],
            &p("/files/download"),
            execd("Download a file (Range supported)")
                .query("path", "File")
                .ok(200, Some(other("application/octet-stream", "The file"))),
        ),
        route(
            &[Post],
            &p("/directories"),
            execd_json("Create directories", "Modes by path", "Empty"),
        ),
        route(
            &[Delete],
            &p("/directories"),
            execd("Remove directories")
                .query("path", "Directory (repeatable)")
                .ok(200, None),
        ),
        route(
            &[Get],
            &p("/directories/list"),
            execd("List a directory")
                .query("path", "Directory")
                .ok(200, Some(other("application/json", "Entries"))),
        ),
        route(
            &[Get],
            &p("/metrics"),
            execd("CPU and memory of the sandbox")
                .ok(200, Some(other("application/json", "Metrics"))),
        ),
        route(
            &[Get],
            &p("/metrics/watch"),
            execd("CPU and memory, every second").ok(200, sse("Metrics events")),
        ),
        route(
            &[Post],
            &p("/code"),
            execd("Run code in a context (streamed events)")
                .request(other("application/json", "`code` and `context`"))
                .ok(200, sse("Execution events")),
        ),
        route(
            &[Delete],
            &p("/code"),
            execd("Interrupt running code")
                .query("id", "Context id")
                .ok(200, None),
        ),
        route(
            &[Post],
            &p("/code/context"),
            execd_json("Create a code context", "`language`", "The context"),
        ),
        route(
            &[Get],
            &p("/code/contexts"),
            execd("List code contexts")
                .query("language", "Only this language")
                .ok(200, Some(other("application/json", "Contexts"))),
        ),
        route(
            &[Delete],
            &p("/code/contexts"),
            execd("Delete the code contexts of a language")
                .query("language", "Language")
                .ok(200, None),
        ),
        route(
            &[Get],
            &p("/code/contexts/{ctx}"),
            execd("Get a code context").ok(200, Some(other("application/json", "The context"))),
        ),
        route(
            &[Delete],
            &p("/code/contexts/{ctx}"),
            execd("Delete a code context").ok(200, None),
        ),
        route(
            ANY,
            &p("/command/operations"),
            unimplemented("Caller-bound operations: not implemented"),
        ),
        route(
            ANY,
            &p("/execution/{*rest}"),
            unimplemented("Caller-bound operations: not implemented"),
        ),
        route(
            ANY,
            &p("/pty"),
            unimplemented("PTY sessions: not implemented"),
        ),
        route(
            ANY,
            &p("/pty/{*rest}"),
            unimplemented("PTY sessions: not implemented"),
        ),
        route(
            ANY,
            &p("/session"),
            unimplemented("Bash sessions: not implemented"),
        ),
        route(
            ANY,
            &p("/session/{*rest}"),
            unimplemented("Bash sessions: not implemented"),
        ),
        route(
            ANY,
            &p("/v1/isolated/{*rest}"),
            unimplemented("Isolated sessions: not implemented"),
        ),
    ]
}

/// The web console.
fn console() -> Vec<Route> {
    vec![
        route(
            &[Get],
            "/",
            Op::new("console", "The web console", Auth::Public)
                .ok(200, Some(other("text/html", "The console's page"))),
        ),
        route(
            &[Get],
            "/console/{*path}",
            Op::new("console", "The console's static files", Auth::Public)
                .ok(200, Some(other("application/octet-stream", "A file"))),
        ),
        route(
            &[Post],
            "/api/v1/console/terminal-tickets",
            key("console", "A single-use ticket for a terminal WebSocket")
                .request(other("application/json", "`sandbox`: the sandbox id"))
                .ok(
                    200,
                    Some(other("application/json", "`ticket` and its expiry")),
                ),
        ),
        route(
            &[Post],
            "/api/v1/console/event-tickets",
            key(
                "console",
                "A single-use ticket for the live-update event stream",
            )
            .ok(
                200,
                Some(other("application/json", "`ticket` and its expiry")),
            ),
        ),
        route(
            &[Get],
            "/api/v1/console/events",
            Op::new(
                "console",
                "Server-sent events of the tenant's sandbox changes (redeems `ticket`)",
                Auth::Public,
            )
            .query("ticket", "The single-use ticket")
            .ok(
                200,
                Some(other(
                    "text/event-stream",
                    "`ready`, `sandbox` and `deleted` events",
                )),
            ),
        ),
        route(
            &[Post],
            "/api/v1/console/service-logins",
            key(
                "service-urls",
                "A sign-in ticket for a login-gated service URL",
            )
            .request(other(
                "application/json",
                "`service` (`{sandbox id}--{port}`) and `next`",
            ))
            .ok(
                200,
                Some(other("application/json", "`login_url` (single use)")),
            ),
        ),
        route(
            &[Get],
            "/service-sign-in",
            Op::new(
                "service-urls",
                "Sign-in page of login-gated service URLs",
                Auth::Public,
            )
            .ok(200, Some(other("text/html", "The page"))),
        ),
        route(
            &[Get],
            "/service-sign-in.js",
            Op::new("service-urls", "The sign-in page's script", Auth::Public)
                .ok(200, Some(other("text/javascript", "The script"))),
        ),
        route(
            &[Get],
            "/console-terminal/{id}",
            Op::new(
                "console",
                "Terminal WebSocket of a sandbox (redeems `ticket`)",
                Auth::Public,
            )
            .query("ticket", "The single-use ticket")
            .ok(101, None),
        ),
    ]
}
