//! The gateway: everything that enters a sandbox from outside.
//!
//! One relay core ([`relay`]) forwards HTTP/1.1 requests — streamed bodies,
//! SSE and WebSocket upgrades included — to an upstream connection; small
//! route modules decide only who may go where ([`dataplane`]).

pub mod dataplane;
pub mod relay;
