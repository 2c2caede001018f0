//! The web console: a static single-page app served at `/` (assets under
//! `/console/`), and the terminal tickets that let its browser WebSocket
//! reach a sandbox's exec stream without an API key in a URL; the same
//! tickets open its live-update event stream ([`events`]).
//!
//! The app itself is plain HTML, CSS and ES modules in `crates/server/console/`
//! (xterm.js vendored), embedded into the binary by [`assets`]; it talks to
//! the same public JSON API as the SDK, with the key from `sessionStorage`
//! in the `X-Api-Key` header. Nothing here shadows the API: hash routing
//! keeps every page at `/`, and service hosts and paths are routed before
//! any of these routes (see `gateway::service`).

mod assets;
mod events;
mod terminal;

use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::gateway::grants;
use crate::routes::service_url;
use crate::state::AppState;

/// Path of the terminal-ticket endpoint (an ordinary authenticated POST).
pub const TICKETS_PATH: &str = "/api/v1/console/terminal-tickets";

/// The console's routes, merged into the application router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/console/{*path}", get(assets::asset))
        .route(TICKETS_PATH, post(terminal::issue))
        .route("/console-terminal/{id}", get(terminal::connect))
        .route(events::TICKETS_PATH, post(events::issue))
        .route(events::PATH, get(events::stream))
        // Sign-in hop of login-gated service URLs (`gateway::grants`).
        .route(grants::SIGN_IN_PATH, get(service_url::sign_in_page))
        .route(
            grants::SIGN_IN_SCRIPT_PATH,
            get(service_url::sign_in_script),
        )
        .route(
            grants::SERVICE_LOGINS_PATH,
            post(service_url::service_login),
        )
        .layer(Extension(terminal::Tickets::shared()))
}
