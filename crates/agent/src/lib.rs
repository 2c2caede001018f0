//! The Sandpit agent: PID 1 inside every sandbox.
//!
//! It reaps zombies, runs commands (`shell -c command`) in their own process
//! groups, and serves the data-plane protocol the `langsmith` SDK speaks over
//! HTTP/1.1 on a listener it inherits (fd 3 by default; `--listen` binds one
//! for tests). The server authenticates callers and relays their requests
//! here unchanged, so everything below is exactly what the SDK expects.
//!
//! # Protocol
//!
//! | endpoint | what |
//! | --- | --- |
//! | `GET /healthz` | `{"status":"ok"}` |
//! | `POST /execute` | blocking run (langsmith 0.7): `{command, timeout, shell, env, cwd}` → `{stdout, stderr, exit_code}` |
//! | `GET /execute/ws` | WebSocket exec (below) |
//! | `POST /execute/stream/start`, `/resume` | SSE exec (below) |
//! | `POST /upload?path=P` | multipart field `file`; atomic write, 413 over `--max-upload-bytes` |
//! | `GET`/`HEAD /download?path=P` | bytes; `Range`, `If-Range`, `If-None-Match`, `ETag`, `Last-Modified` |
//! | `POST /glob`, `POST /grep` | `{matches, truncated}` |
//!
//! Errors are `{"detail": {"error": KIND, "message": TEXT}}`; see
//! `http/error.rs` for the kinds and statuses.
//!
//! **WebSocket exec.** The client's first message is `execute` {command,
//! command_id, timeout_seconds, shell, idle_timeout_seconds,
//! kill_on_disconnect, ttl_seconds, env, cwd, run_config, close_stdin, pty,
//! and our `cols`/`rows`} — get-or-create on `command_id` — or `reconnect`
//! {command_id, stdout_offset, stderr_offset}. The agent answers `started`
//! {command_id, pid}, streams `stdout` / `stderr` {data, offset} and ends
//! with `exit` {exit_code} (128 + signal for a signal death) or `error`
//! {error_type, error} (`CommandTimeout`, `CommandNotFound`,
//! `SessionExpired`, `CommandError`, `InvalidRequest`), then closes the
//! socket. The client may send `input` {data}, `kill`, `close_stdin` and
//! `resize` {cols, rows} (our extension for PTYs).
//!
//! **SSE exec.** The same session model over server-sent events: `started`,
//! `stdout`/`stderr` with base64 `data`, `stream_end`, `exit`, `error`, and
//! `ack_required` when a response has carried 1 MiB of unacknowledged
//! output (as LangSmith); resuming with the new offsets acknowledges it, and
//! until then (at most 30 s) that output stays protected from eviction.
//! Heartbeat comments every 15 s.
//!
//! **Offsets** are byte offsets in the UTF-8 text the agent emits for each
//! stream: output is decoded incrementally (a character split across reads
//! is completed by the next read; invalid bytes become U+FFFD, counted as its
//! three bytes), so `offset + len(data.encode())` of one chunk is the next
//! chunk's offset. SSE base64 carries the same emitted bytes.
//!
//! **Retention.** Each stream of each command keeps its most recent
//! `session::RING_BYTES` (8 MiB) of output in a ring. A reconnect replays
//! from the requested offset if it is still retained, else from the oldest
//! retained byte. While a client is attached and behind, the agent stops
//! reading the command's pipe (backpressure) rather than dropping output it
//! has not delivered; with no client attached the command keeps running and
//! the oldest output is dropped. A finished session (its retained output and
//! exit code) is kept for `ttl_seconds` (default 600, -1 forever); the last
//! 4096 expired ids are remembered to answer `SessionExpired`.
//!
//! **Lifecycle.** `timeout_seconds` > 0 kills the process group after that
//! long; `idle_timeout_seconds` (default 300, -1 never) kills a running
//! command no client has been attached to for that long; `kill_on_disconnect`
//! kills when the last client detaches. Kills are SIGKILL to the command's
//! process group. `exit` is sent once the output is complete: at EOF of the
//! command's pipes or, when a background process keeps them open, after
//! 50 ms without output following the exit.
//!
//! **PID 1.** The agent reaps every child (orphans included), starts each
//! command in its own session with `oom_score_adj` 0, and on SIGTERM closes
//! every exec WebSocket with 1001 (waiting at most 500 ms for the clients'
//! answers), kills every command's process group and exits 0.

mod config;
mod exec;
mod files;
mod http;
mod listener;
mod paths;
mod process;
mod pty;
mod reaper;
mod ring;
mod search;
pub mod seccomp;
mod session;
mod sessions;
mod shutdown;
mod simple;
mod user;
mod utf8;
mod wire;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use config::Args;
use exec::ExecContext;
use listener::Listener;
use reaper::Reaper;
use sessions::Sessions;

/// Entry point shared by `sandpit agent ...` and the static `sandpit-agent`
/// binary. `args` excludes the program name and the `agent` verb.
pub fn main_with_args(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("sandpit-agent")).chain(args);
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(fd) = args.seccomp_fd {
        if let Err(error) = seccomp::install_from_fd(fd) {
            eprintln!("sandpit-agent: cannot install the seccomp filter: {error}");
            return ExitCode::FAILURE;
        }
    }
    init_tracing();
    make_undumpable();
    // Before any thread exists: it removes the variable from the environment.
    let credential = listener::Credential::take_from_env();
    // One thread: a command's round trip (request, spawn, SIGCHLD, output,
    // exit) then wakes no second thread, which on a busy host halved the
    // `run("true")` round trip (docs/benchmarks.md), and an idle sandbox
    // holds one thread's stack instead of one per core. Blocking file and
    // search work still goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sandpit-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args, credential));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sandpit-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGTERM (or SIGINT), then kills every command's group.
async fn run(args: Args, credential: Option<listener::Credential>) -> anyhow::Result<()> {
    // First: claim the inherited socket (and mark it close-on-exec).
    let listener = Listener::open(&args.listen_target(), credential.as_ref()).await?;
    let shutdown = shutdown::Signals::install().context("cannot watch termination signals")?;
    let reaper = Reaper::start().context("cannot watch SIGCHLD")?;
    if let Err(error) = std::fs::create_dir_all(&args.workdir) {
        tracing::warn!(workdir = %args.workdir.display(), %error, "cannot create the working directory");
    }
    let sessions = Sessions::new(
        reaper,
        ExecContext::from_process(args.workdir.clone(), args.user.clone()),
    );
    let warming = Arc::clone(&sessions);
    tokio::spawn(async move { warming.warm_up().await });
    let state = Arc::new(http::AppState {
        sessions: Arc::clone(&sessions),
        workdir: args.workdir,
        max_upload_bytes: args.max_upload_bytes,
        shutdown: tokio::sync::watch::Sender::new(false),
    });
    let app = http::app(Arc::clone(&state));
    tracing::debug!("serving");
    tokio::select! {
        served = listener.serve(app, credential) => served.context("serving failed")?,
        signal = shutdown.recv() => tracing::info!(signal, "shutting down"),
    }
    // Exec sockets get a close frame (1001) instead of a silent drop.
    state.shutdown.send_replace(true);
    sessions.kill_all();
    let _ = tokio::time::timeout(SOCKETS_CLOSE_WAIT, state.shutdown.closed()).await;
    Ok(())
}

/// How long a stopping agent waits for its exec sockets to close.
const SOCKETS_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Commands run as the same uid as the agent; without `CAP_SYS_PTRACE` they
/// may not ptrace or read the memory of a non-dumpable process, so relayed
/// requests and other commands' output stay out of their reach. Commands get
/// the default back: `execve` resets the flag.
fn make_undumpable() {
    // SAFETY: PR_SET_DUMPABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot make the agent non-dumpable");
    }
}

/// Logs to stderr, filtered by `SANDPIT_AGENT_LOG` (default `warn`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDPIT_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
