//! `sandpit`: one binary for the server, the in-sandbox agent and user verbs.

mod agent_binary;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the gateway allocates per request (headers, bodies, futures),
/// and glibc's malloc showed as ~6 % of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

// `serve`'s flags make its variant large; the enum is parsed once per
// process, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Check that this host can run `sandpit serve`, and say what to fix.
    Doctor(commands::doctor::DoctorArgs),
    /// Measure create and exec latency against a running server.
    Bench(commands::bench::BenchArgs),
    /// Check an endpoint and API key and save them for the other verbs.
    Login(commands::boxes::LoginArgs),
    /// Create a sandbox.
    Create(commands::boxes::CreateArgs),
    /// List sandboxes.
    Ls(commands::boxes::ListArgs),
    /// Show one sandbox.
    Get(commands::boxes::NameArgs),
    /// Delete a sandbox and its files.
    Rm(commands::boxes::NameArgs),
    /// Stop a sandbox (files are kept).
    Stop(commands::boxes::NameArgs),
    /// Start a stopped sandbox.
    Start(commands::boxes::NameArgs),
    /// Run a command in a sandbox; its exit code becomes sandpit's.
    Exec(commands::exec::ExecArgs),
    /// An interactive shell in a sandbox.
    Shell(commands::exec::ShellArgs),
    /// Copy files or directories between the host and a sandbox.
    Cp(commands::cp::CpArgs),
    /// Admin: create, list and change tenants and their quotas.
    Tenants(commands::admin::TenantsArgs),
    /// Admin: create, list and revoke API keys.
    Keys(commands::admin::KeysArgs),
    /// Forward a local TCP port to a port inside a sandbox.
    Tunnel(commands::tunnel::TunnelArgs),
    /// A signed link to an HTTP port inside a sandbox.
    Url(commands::url::UrlArgs),
    /// Build, capture, list and delete snapshots.
    Snapshot(commands::snapshot::SnapshotArgs),
    /// Create, list and delete templates.
    Template(commands::template::TemplateArgs),
    /// Workspace secrets for egress header injection: set, list, delete.
    Secrets(commands::secrets::SecretsArgs),
    /// Admin: remove image layers no snapshot, template or sandbox uses
    /// (after the server's grace period); --dry-run only reports.
    Gc(commands::gc::GcArgs),
    /// Dev: the objects the Kubernetes runtime creates (`render --out DIR`).
    #[command(hide = true)]
    Kubernetes(commands::kubernetes::KubernetesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent { args } => sandpit_agent::main_with_args(args),
        Command::RuntimeHelper(args) => commands::runtime_helper::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Login(args) => commands::run(commands::boxes::login(args)),
        Command::Create(args) => commands::run(commands::boxes::create(args)),
        Command::Ls(args) => commands::run(commands::boxes::list(args)),
        Command::Get(args) => commands::run(commands::boxes::get(args)),
        Command::Rm(args) => commands::run(commands::boxes::remove(args)),
        Command::Stop(args) => commands::run(commands::boxes::stop(args)),
        Command::Start(args) => commands::run(commands::boxes::start(args)),
        Command::Exec(args) => commands::block_on(commands::exec::exec(args), |code| code),
        Command::Shell(args) => commands::block_on(commands::exec::shell(args), |code| code),
        Command::Cp(args) => commands::run(commands::cp::cp(args)),
        Command::Tenants(args) => commands::admin::tenants(args),
        Command::Keys(args) => commands::admin::keys(args),
        Command::Tunnel(args) => commands::tunnel::run(args),
        Command::Url(args) => commands::run(commands::url::url(args)),
        Command::Snapshot(args) => commands::run(commands::snapshot::run(args)),
        Command::Template(args) => commands::run(commands::template::run(args)),
        Command::Secrets(args) => commands::secrets::run(args),
        Command::Gc(args) => commands::run(commands::gc::gc(args)),
        Command::Kubernetes(args) => commands::run(async { commands::kubernetes::run(args) }),
    }
}
