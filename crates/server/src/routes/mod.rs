//! The HTTP surface: control API routes (under both `/api/v2/sandboxes` and
//! `/v2/sandboxes`), the data-plane gateway, service URLs and OpenSandbox
//! endpoints (`gateway::service`, in front of every route), the JWKS, the
//! web console (`crate::console`, at `/`), the probes `/healthz` and
//! `/readyz` (`crate::health`) and the API description `/openapi.json`
//! (`crate::openapi`, which lists every route registered here).

mod admin;
mod boxes;
mod download;
pub mod download_link;
pub(crate) mod extract;
mod opensandbox;
mod opensandbox_execd;
mod opensandbox_lifecycle;
mod pools;
mod registries;
mod secrets;
pub(crate) mod service_url;
mod snapshots;
mod templates;
mod usage;
mod volumes;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;

use crate::error::error_response;
use crate::gateway::{dataplane, service, tunnel};
use crate::state::AppState;

fn sandboxes_api() -> Router<AppState> {
    Router::new()
        .route("/boxes", post(boxes::create).get(boxes::list))
        .route(
            "/boxes/{name}",
            get(boxes::get).patch(boxes::update).delete(boxes::delete),
        )
        .route("/boxes/{name}/status", get(boxes::status))
        .route("/boxes/{name}/usage", get(usage::get))
        .route("/boxes/{name}/stop", post(boxes::stop))
        .route("/boxes/{name}/start", post(boxes::start))
        .route("/boxes/{name}/snapshot", post(snapshots::capture))
        .route("/snapshots", post(snapshots::create).get(snapshots::list))
        .route(
            "/snapshots/{reference}",
            get(snapshots::get).delete(snapshots::delete),
        )
        .route("/snapshots-by-name/{name}", get(snapshots::tags_by_name))
        .route("/templates", post(templates::create).get(templates::list))
        .route(
            "/templates/{name}",
            get(templates::get)
                .patch(templates::update)
                .delete(templates::delete),
        )
        .route("/volumes", post(volumes::create).get(volumes::list))
        .route(
            "/volumes/{name}",
            get(volumes::get)
                .patch(volumes::update)
                .delete(volumes::delete),
        )
        .route("/pools", post(pools::create).get(pools::list))
        .route(
            "/pools/{name}",
            get(pools::get).patch(pools::update).delete(pools::delete),
        )
        .route("/boxes/{name}/service-url", post(service_url::create))
        .route(
            "/boxes/{name}/service-url/revoke",
            post(service_url::revoke),
        )
        .route("/boxes/{name}/download-url", post(download::create))
        .route(
            "/registries",
            post(registries::create).get(registries::list),
        )
        .route(
            "/registries/{name}",
            get(registries::get)
                .patch(registries::update)
                .delete(registries::delete),
        )
}

fn admin_api() -> Router<AppState> {
    Router::new()
        .route(
            "/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route(
            "/tenants/{tenant}",
            get(admin::get_tenant).patch(admin::update_tenant),
        )
        .route("/keys", post(admin::create_key).get(admin::list_keys))
        .route("/keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/gc", post(admin::collect_garbage))
        .route("/service-keys/rotate", post(service_url::rotate))
        .route_layer(axum::middleware::from_fn(crate::audit::layer))
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NotFound", "No such route")
}

/// Give axum's bare 405 the API's error body.
async fn error_bodies(response: Response) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Method not allowed",
        );
    }
    response
}

/// The whole application, ready to serve or to test with `oneshot`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .route("/metrics", get(crate::metrics::scrape_authenticated))
        .route(crate::openapi::PATH, get(crate::openapi::serve))
        .nest("/api/v2/sandboxes", sandboxes_api())
        .nest("/v2/sandboxes", sandboxes_api())
        .nest("/api/v1/admin", admin_api())
        .route("/api/v1/workspaces/current/secrets", get(secrets::list))
        .route(
            "/api/v1/workspaces/current/secrets/{key}",
            axum::routing::put(secrets::upsert)
                .delete(secrets::delete)
                .route_layer(axum::middleware::from_fn(crate::audit::layer)),
        )
        .route("/dataplane/{id}", any(dataplane::relay_root))
        .route("/dataplane/{id}/tunnel", get(tunnel::upgrade))
        .route("/dataplane/{id}/{*rest}", any(dataplane::relay))
        .route("/.well-known/jwks.json", get(service_url::jwks))
        .route("/download/{token}", get(download::fetch))
        .route(
            "/v1/sandboxes/{id}/endpoints/{port}",
            get(opensandbox::endpoint),
        )
        .merge(opensandbox_lifecycle::router())
        .merge(opensandbox_execd::router())
        .merge(crate::console::router())
        .route(crate::cluster::rpc::PATH, post(crate::cluster::rpc::serve))
        .route(
            crate::cluster::layers::IMAGES_PATH,
            get(crate::cluster::layers::serve_image),
        )
        .route(
            crate::cluster::layers::LAYERS_PATH,
            get(crate::cluster::layers::serve_layer),
        )
        .fallback(not_found)
        // Delegated requests (access_delegation) are authorised here.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::delegation::layer,
        ))
        .layer(axum::middleware::map_response(error_bodies))
        // Outermost: service hosts and paths never reach the API routes.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            service::route,
        ))
        // Outermost: another replica's sandboxes are served by it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::forward::route,
        ))
        // Every request is counted (`crate::metrics`)...
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        // ... and has a request id, in every log line written for it.
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}
