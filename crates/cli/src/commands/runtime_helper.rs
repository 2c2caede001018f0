//! `sandpit runtime-helper`: spawned by `serve`, never by users.
//!
//! Runs the local runtime backend in this (single-threaded) process,
//! answering the server on stdin/stdout until stdin closes; see
//! `sandpit_runtime::helper`. Logs go to stderr (`RUST_LOG`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tracing_subscriber::EnvFilter;

#[derive(Args)]
pub struct RuntimeHelperArgs {
    /// Directory for the runtime's own state (container state, bundles,
    /// records); created with mode 0700.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Redirect sandbox DNS, HTTP and HTTPS to these host ports (TLS,HTTP,DNS).
    #[arg(long)]
    pub egress_ports: Option<sandpit_runtime::network::firewall::EgressPorts>,
    /// Work in the mount namespace of this running helper (one of several
    /// working in parallel) and leave the firewall to it.
    #[arg(long)]
    pub join_mounts: Option<u32>,
    /// Hold the helpers' mount namespace and the firewall; answer no
    /// requests (started once, before the helpers).
    #[arg(long, conflicts_with = "join_mounts")]
    pub anchor: bool,
}

pub fn run(args: RuntimeHelperArgs) -> ExitCode {
    // No threads may exist before the helper forks sandboxes: the fmt
    // subscriber writes from the calling thread.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,libcontainer=warn,libcgroups=error"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    let served = match args.anchor {
        true => sandpit_runtime::helper::hold_mounts(&args.state_dir, args.egress_ports),
        false => sandpit_runtime::helper::serve_joined(
            &args.state_dir,
            args.egress_ports,
            args.join_mounts,
        ),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %sandpit_runtime::error_chain(&err), "runtime helper failed");
            ExitCode::FAILURE
        }
    }
}
