//! The runtime helpers: single-threaded processes that run the local
//! backend for the multithreaded server, several in parallel.
//!
//! libcontainer forks with clone3, changes the process-wide working
//! directory and logs from its children, none of which mixes with a tokio
//! server; so the server spawns `sandpit runtime-helper --state-dir DIR`
//! and talks to it over the child's stdin and stdout, one JSON request and
//! one JSON reply per line ([`protocol`]), errors carried as
//! [`crate::RuntimeError`] data. [`HelperRuntime`] is that client (it
//! spreads calls over up to [`DEFAULT_HELPERS`] helpers, or
//! [`HELPERS_ENV`]); [`serve`] is the helper's loop.
//!
//! A holder process ([`hold_mounts`], started first) moves into a private
//! mount namespace (with `/` rprivate) and applies the firewall; the
//! helpers join that namespace ([`serve_joined`]), so no mount of theirs
//! appears in the host's mount table. Each sandbox's mounts are made in a
//! namespace of its own, copied from that one, which the shared namespace
//! keeps as one nsfs bind ([`crate::mount_ns`]). A helper survives SIGINT and SIGTERM (the server stops sandboxes first)
//! and exits when its stdin closes; sandboxes outlive it and a new helper
//! finds them again.

mod client;
mod lines;
pub mod protocol;
mod server;
mod setup;
mod turns;

pub use client::{HelperRuntime, DEFAULT_HELPERS, DEFAULT_TIMEOUT, HELPERS_ENV};
pub use server::{hold_mounts, serve, serve_joined, ServeError};
pub use setup::SetupError;
