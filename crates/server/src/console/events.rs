//! Live updates for the console: a server-sent event stream of the
//! tenant's sandbox status changes, so the sandboxes list and a sandbox's
//! page change as soon as a sandbox does instead of polling every 2 s.
//!
//! `EventSource` cannot send `X-Api-Key` either, so the stream is opened
//! like the terminal: an authenticated `POST` [`TICKETS_PATH`] returns a
//! single-use ticket valid for `terminal::TICKET_TTL` (in the database
//! with replicas), and `GET` [`PATH`]`?ticket=...` redeems it. The stream
//! then reads the tenant's sandboxes every [`CHECK`] — from the database,
//! so it sees changes made by any replica, the reconciler or another
//! client — and sends
//!
//! - `ready` once, when it starts (`{"sandboxes": n}`; a client reloads
//!   what it shows, so nothing between its last read and the stream is
//!   missed),
//! - `sandbox` when a sandbox appears or its status or message changes
//!   (`{"id", "name", "status", "status_message"}`),
//! - `deleted` when one is gone (`{"id", "name"}`).
//!
//! A stream ends after [`LIFETIME`] (the console then takes a new ticket,
//! so a revoked key stops getting events); a spent ticket is refused, so
//! the browser's own reconnection fails and the console falls back to
//! polling until it has a new stream.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::terminal::{self, Ticket, Tickets, TICKET_TTL};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::extract::Query;
use crate::state::AppState;
use crate::store::{SandboxState, Store};

/// Where the console asks for a stream ticket (authenticated POST).
pub const TICKETS_PATH: &str = "/api/v1/console/event-tickets";
/// The stream (`?ticket=...`).
pub const PATH: &str = "/api/v1/console/events";
/// The "sandbox" an event ticket is bound to: never a sandbox id (those
/// are UUIDs), so a terminal ticket opens no stream and the reverse.
const EVENTS: &str = "console-events";
/// How often a stream reads the tenant's sandboxes.
pub const CHECK: Duration = Duration::from_secs(1);
/// How long one stream lasts.
pub const LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
pub struct EventTicket {
    ticket: String,
    /// The stream's URL with the ticket.
    url: String,
    expires_in_seconds: u64,
}

/// `POST /api/v1/console/event-tickets`.
pub async fn issue(
    State(state): State<AppState>,
    Extension(tickets): Extension<Arc<Tickets>>,
    caller: Caller,
) -> Result<Json<EventTicket>, ApiError> {
    let ticket = match state.cluster {
        Some(_) => terminal::shared::issue(&state.store, caller, EVENTS).await?,
        None => tickets.insert(Ticket {
            caller,
            sandbox_id: EVENTS.into(),
            issued: Instant::now(),
        })?,
    };
    Ok(Json(EventTicket {
        url: format!("{PATH}?ticket={ticket}"),
        ticket,
        expires_in_seconds: TICKET_TTL.as_secs(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    ticket: String,
}

/// `GET /api/v1/console/events?ticket=...`: the tenant's status changes.
pub async fn stream(
    State(state): State<AppState>,
    Extension(tickets): Extension<Arc<Tickets>>,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = match state.cluster {
        Some(_) => terminal::shared::redeem(&state.store, &query.ticket, EVENTS).await?,
        None => tickets.redeem(&query.ticket, EVENTS)?,
    };
    let watch = Watch {
        store: state.store.clone(),
        tenant_id: caller.tenant_id,
        known: None,
        pending: VecDeque::new(),
        started: Instant::now(),
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// One stream's view of the tenant's sandboxes.
struct Watch {
    store: Store,
    tenant_id: String,
    /// By id; `None` before the first read.
    known: Option<HashMap<String, SandboxState>>,
    pending: VecDeque<Event>,
    started: Instant,
}

impl Watch {
    /// The next event; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.started.elapsed() >= LIFETIME {
                return None;
            }
            if self.known.is_some() {
                tokio::time::sleep(CHECK).await;
            }
            let now = match self.store.sandbox_states(&self.tenant_id).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "console events: reading sandboxes failed");
                    continue;
                }
            };
            let now: HashMap<String, SandboxState> =
                now.into_iter().map(|s| (s.id.clone(), s)).collect();
            match self.known.take() {
                None => self.pending.push_back(json_event(
                    "ready",
                    &serde_json::json!({ "sandboxes": now.len() }),
                )),
                Some(before) => self.pending.extend(changes(&before, &now)),
            }
            self.known = Some(now);
        }
    }
}

/// The events that turn `before` into `now`.
fn changes(
    before: &HashMap<String, SandboxState>,
    now: &HashMap<String, SandboxState>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut changed: Vec<&SandboxState> = now
        .values()
        .filter(|s| before.get(&s.id) != Some(*s))
        .collect();
    changed.sort_by(|a, b| a.name.cmp(&b.name));
    for s in changed {
        events.push(json_event(
            "sandbox",
            &serde_json::json!({
                "id": s.id, "name": s.name, "status": s.status, "status_message": s.status_message,
            }),
        ));
    }
    let mut gone: Vec<&SandboxState> = before
        .values()
        .filter(|s| !now.contains_key(&s.id))
        .collect();
    gone.sort_by(|a, b| a.name.cmp(&b.name));
    for s in gone {
        events.push(json_event(
            "deleted",
            &serde_json::json!({ "id": s.id, "name": s.name }),
        ));
    }
    events
}

fn json_event(name: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, status: &str) -> SandboxState {
        SandboxState {
            id: id.into(),
            name: format!("n-{id}"),
            status: status.into(),
            status_message: None,
        }
    }

    fn map(states: &[SandboxState]) -> HashMap<String, SandboxState> {
        states.iter().map(|s| (s.id.clone(), s.clone())).collect()
    }

    #[test]
    fn changes_are_new_changed_and_gone_sandboxes() {
        let before = map(&[
            state("a", "ready"),
            state("b", "ready"),
            state("c", "ready"),
        ]);
        let now = map(&[
            state("a", "ready"),
            state("b", "stopped"),
            state("d", "creating"),
        ]);
        let events = changes(&before, &now);
        assert_eq!(events.len(), 3);
        assert!(changes(&now, &now).is_empty());
    }
}
