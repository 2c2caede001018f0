//! Terminal tickets. A browser WebSocket cannot send `X-Api-Key`, and the
//! key must never appear in a URL (it would end up in logs and history), so
//! the console first asks for a ticket with an ordinary authenticated POST:
//! a random single-use secret, bound to the caller and one sandbox, valid
//! for [`TICKET_TTL`]. It then opens
//! `GET /console-terminal/{sandbox id}?ticket=...`, which redeems the ticket
//! and relays the upgrade to the sandbox's `/execute/ws` exactly like the
//! data-plane route (the query string is dropped, so the agent never sees
//! the ticket). A ticket that leaks through a log is already spent or
//! about to expire.
//!
//! With several replicas (`crate::cluster`) the ticket is a row of
//! `terminal_tickets` (its SHA-256 only), so the replica that redeems it —
//! the sandbox's owner, to which the terminal is proxied — need not be the
//! one that issued it; redeeming deletes the row, so it is spent once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::Uri;
use axum::response::Response;
use axum::{Extension, Json};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::gateway::dataplane;
use crate::routes::extract::{Body, Query};
use crate::state::AppState;

/// How long a ticket may wait before it is redeemed.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets kept at most (expired ones are pruned first).
const MAX_TICKETS: usize = 10_000;

#[derive(Debug, Clone)]
pub(super) struct Ticket {
    pub(super) caller: Caller,
    pub(super) sandbox_id: String,
    pub(super) issued: Instant,
}

/// Outstanding tickets, keyed by the ticket string.
#[derive(Default)]
pub struct Tickets {
    map: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, ticket: Ticket) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret = hex::encode(bytes);
        let mut map = self.lock();
        map.retain(|_, t| t.issued.elapsed() < TICKET_TTL);
        if map.len() >= MAX_TICKETS {
            return Err(ApiError::QuotaExceeded(
                "Too many outstanding terminal tickets; try again shortly".into(),
            ));
        }
        map.insert(secret.clone(), ticket);
        Ok(secret)
    }

    /// Spend `secret` for sandbox `id`: the caller it was issued to.
    pub(super) fn redeem(&self, secret: &str, id: &str) -> Result<Caller, ApiError> {
        let ticket = self.lock().remove(secret);
        match ticket {
            Some(t) if t.issued.elapsed() < TICKET_TTL && t.sandbox_id == id => Ok(t.caller),
            _ => Err(ApiError::Unauthorized(
                "Invalid or expired terminal ticket".into(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// Sandbox name (or id, as every `/boxes/{name}` route accepts).
    sandbox: String,
}

#[derive(Debug, Serialize)]
pub struct TicketResponse {
    ticket: String,
    /// The sandbox's id: the terminal URL is `/console-terminal/{id}`.
    sandbox_id: String,
    expires_in_seconds: u64,
}

/// `POST /api/v1/console/terminal-tickets` {sandbox}.
pub async fn issue(
    State(state): State<AppState>,
    Extension(tickets): Extension<Arc<Tickets>>,
    caller: Caller,
    Body(req): Body<TicketRequest>,
) -> Result<Json<TicketResponse>, ApiError> {
    let row = state.sandboxes.find(&caller, &req.sandbox).await?;
    let ticket = match state.cluster {
        Some(_) => shared::issue(&state.store, caller, &row.id).await?,
        None => tickets.insert(Ticket {
            caller,
            sandbox_id: row.id.clone(),
            issued: Instant::now(),
        })?,
    };
    Ok(Json(TicketResponse {
        ticket,
        sandbox_id: row.id,
        expires_in_seconds: TICKET_TTL.as_secs(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    ticket: String,
}

/// `GET /console-terminal/{id}?ticket=...`: the exec WebSocket of sandbox
/// `id` for the ticket's caller.
pub async fn connect(
    state: State<AppState>,
    Extension(tickets): Extension<Arc<Tickets>>,
    Path(id): Path<String>,
    Query(query): Query<ConnectQuery>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let caller = match state.cluster {
        Some(_) => shared::redeem(&state.store, &query.ticket, &id).await?,
        None => tickets.redeem(&query.ticket, &id)?,
    };
    *req.uri_mut() = Uri::from_static("/execute/ws");
    dataplane::forward(state, caller, id, "execute/ws".into(), req).await
}

/// Tickets in the database, for replicas.
pub(super) mod shared {
    use rand::RngCore;
    use sha2::{Digest, Sha256};

    use super::TICKET_TTL;
    use crate::auth::Caller;
    use crate::error::ApiError;
    use crate::store::{Store, TicketRow};

    fn hash(secret: &str) -> String {
        hex::encode(Sha256::digest(secret.as_bytes()))
    }

    pub async fn issue(
        store: &Store,
        caller: Caller,
        sandbox_id: &str,
    ) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret = hex::encode(bytes);
        let expires_ms = chrono::Utc::now().timestamp_millis() + TICKET_TTL.as_millis() as i64;
        store
            .insert_ticket(&TicketRow {
                ticket_hash: hash(&secret),
                tenant_id: caller.tenant_id,
                key_id: caller.key_id,
                is_admin: i64::from(caller.is_admin),
                sandbox_id: sandbox_id.to_owned(),
                expires_ms,
            })
            .await?;
        Ok(secret)
    }

    pub async fn redeem(store: &Store, secret: &str, id: &str) -> Result<Caller, ApiError> {
        match store.take_ticket(&hash(secret)).await? {
            Some(t)
                if t.sandbox_id == id && t.expires_ms > chrono::Utc::now().timestamp_millis() =>
            {
                Ok(Caller {
                    tenant_id: t.tenant_id,
                    is_admin: t.is_admin == 1,
                    key_id: t.key_id,
                })
            }
            _ => Err(ApiError::Unauthorized(
                "Invalid or expired terminal ticket".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            tenant_id: "t".into(),
            is_admin: false,
            key_id: "k".into(),
        }
    }

    fn issue(tickets: &Tickets, id: &str) -> String {
        tickets
            .insert(Ticket {
                caller: caller(),
                sandbox_id: id.into(),
                issued: Instant::now(),
            })
            .unwrap()
    }

    #[test]
    fn a_ticket_is_spent_once_and_only_for_its_sandbox() {
        let tickets = Tickets::default();
        let secret = issue(&tickets, "a");
        assert_eq!(tickets.redeem(&secret, "a").unwrap(), caller());
        assert!(tickets.redeem(&secret, "a").is_err(), "second use");
        let other = issue(&tickets, "a");
        assert!(tickets.redeem(&other, "b").is_err(), "other sandbox");
        assert!(
            tickets.redeem(&other, "a").is_err(),
            "spent by the failed try"
        );
        assert!(tickets.redeem("nope", "a").is_err());
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let tickets = Tickets::default();
        let Some(issued) = Instant::now().checked_sub(TICKET_TTL) else {
            return; // the clock is too young to go back that far
        };
        tickets.lock().insert(
            "old".into(),
            Ticket {
                caller: caller(),
                sandbox_id: "a".into(),
                issued,
            },
        );
        assert!(tickets.redeem("old", "a").is_err());
    }
}
