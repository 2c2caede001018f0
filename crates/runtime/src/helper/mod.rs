//! The runtime helper: the single-threaded process that runs the local
//! backend for the multithreaded server.
//!
//! libcontainer forks with clone3, changes the process-wide working
//! directory and logs from its children, none of which mixes with a tokio
//! server; so the server spawns `sandpit runtime-helper --state-dir DIR`
//! and talks to it over the child's stdin and stdout, one JSON request and
//! one JSON reply per line ([`protocol`]), errors carried as
//! [`crate::RuntimeError`] data. [`HelperRuntime`] is that client;
//! [`serve`] is the helper's loop.
//!
//! The helper moves into a private mount namespace first (with `/`
//! rprivate), so its overlay mounts never appear in the host's mount table;
//! containers' mount namespaces are cloned from it. It survives SIGINT and
//! SIGTERM (the server stops sandboxes first) and exits when its stdin
//! closes; sandboxes outlive it and a new helper finds them again.

mod client;
mod lines;
pub mod protocol;
mod server;
mod setup;

pub use client::{HelperRuntime, DEFAULT_TIMEOUT};
pub use server::{serve, ServeError};
pub use setup::SetupError;
