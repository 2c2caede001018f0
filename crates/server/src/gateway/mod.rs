//! The gateway: everything that enters a sandbox from outside.
//!
//! One relay core ([`relay`]) forwards HTTP/1.1 requests — streamed bodies,
//! SSE and WebSocket upgrades included — to an upstream connection; small
//! route modules decide only who may go where ([`dataplane`], [`service`]
//! for service URLs and OpenSandbox endpoints). [`tokens`] signs and checks
//! the tokens service routes accept; [`netns`] opens connections inside a
//! sandbox's network namespace; [`tunnel`] carries the SDK's TCP tunnels
//! (yamux over a WebSocket) into it.

pub mod dataplane;
pub mod fastpath;
pub mod forwarding;
pub mod grants;
mod h1;
pub mod netns;
pub mod pool;
pub mod relay;
pub mod service;
pub mod tokens;
pub mod tunnel;
pub mod upstream_pod;
