//! `sandpit`: one binary for the server, the in-sandbox agent and user verbs.

mod agent_binary;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sandpit",
    version,
    about = "Self-hosted sandboxes for untrusted code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Sandpit server (control API, dataplane relay, local runtime).
    Serve(commands::serve::ServeArgs),
    /// Run the in-sandbox agent (PID 1 of a sandbox).
    #[command(disable_help_flag = true)]
    Agent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Internal: the single-threaded process that forks sandboxes for `serve`.
    #[command(hide = true)]
    RuntimeHelper(commands::runtime_helper::RuntimeHelperArgs),
    /// Measure create and exec latency against a running server.
    Bench(commands::bench::BenchArgs),
    /// Admin: create, list and change tenants and their quotas.
    Tenants(commands::admin::TenantsArgs),
    /// Admin: create, list and revoke API keys.
    Keys(commands::admin::KeysArgs),
    /// Forward a local TCP port to a port inside a sandbox.
    Tunnel(commands::tunnel::TunnelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { args } => sandpit_agent::main_with_args(args),
        Command::RuntimeHelper(args) => commands::runtime_helper::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Tenants(args) => commands::admin::tenants(args),
        Command::Keys(args) => commands::admin::keys(args),
        Command::Tunnel(args) => commands::tunnel::run(args),
    }
}
