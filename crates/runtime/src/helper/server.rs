//! The helper's side: set up, then answer requests until stdin closes.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use thiserror::Error;

use super::lines::LineReader;
use super::protocol::{encode, Reply, Request};
use super::setup::{self, SetupError};
use crate::error::{chain, RuntimeError};
use crate::local::{LocalError, LocalRuntime};
use crate::network::firewall::{self, EgressPorts, FirewallError};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Runtime(#[from] LocalError),
    #[error("lost the connection to the server")]
    Io(#[from] io::Error),
}

/// How long, at exit, stopped sandboxes' links may take to go by themselves.
const LINK_GRACE: Duration = Duration::from_secs(1);

/// Runs the helper on this process's stdin and stdout. Returns when stdin
/// closes (the server is gone or done); sandboxes keep running.
pub fn serve(state_dir: &Path, egress: Option<EgressPorts>) -> Result<(), ServeError> {
    serve_joined(state_dir, egress, None)
}

/// [`serve`]; with `join_mounts`, in the mount namespace of that (running)
/// helper or [`hold_mounts`] process instead of a new one, and without
/// touching the firewall, which the process that made the namespace set up.
pub fn serve_joined(
    state_dir: &Path,
    egress: Option<EgressPorts>,
    join_mounts: Option<u32>,
) -> Result<(), ServeError> {
    let (mut input, mut replies, mut runtime) = ready(state_dir, egress, join_mounts)?;
    loop {
        while let Some(line) = input.next_line() {
            write(&mut replies, &handle(&mut runtime, &line))?;
        }
        // No request waits: work that was kept off the last one's path.
        runtime.make_spares();
        if input.is_eof() {
            if let Err(err) = runtime.release_dead_links(LINK_GRACE) {
                tracing::warn!(error = %chain(&err), "releasing the links of stopped sandboxes failed");
            }
            return Ok(());
        }
        let (stdin_ready, exited) = wait(&input, &runtime)?;
        for id in exited {
            runtime.reap(&id);
        }
        if stdin_ready {
            input.fill()?;
        }
    }
}

/// Sets up like the first helper (a private mount namespace, the
/// firewall), says it is ready, and answers no requests: it holds the
/// namespace the helpers join while they come and go (a helper's own
/// namespace changes while it starts a sandbox, see [`crate::mount_ns`]).
/// Returns when stdin closes, after releasing stopped sandboxes' links.
pub fn hold_mounts(state_dir: &Path, egress: Option<EgressPorts>) -> Result<(), ServeError> {
    let (mut input, _replies, runtime) = ready(state_dir, egress, None)?;
    while !input.is_eof() {
        input.fill()?;
        while input.next_line().is_some() {}
    }
    if let Err(err) = runtime.release_dead_links(LINK_GRACE) {
        tracing::warn!(error = %chain(&err), "releasing the links of stopped sandboxes failed");
    }
    Ok(())
}

/// Sets this process up ([`init`]) and says so on stdout; returns the
/// requests, the replies and the runtime. A failure is said too.
fn ready(
    state_dir: &Path,
    egress: Option<EgressPorts>,
    join_mounts: Option<u32>,
) -> Result<(LineReader<File>, File, LocalRuntime), ServeError> {
    let (requests, mut replies) = setup::take_stdio()?;
    let runtime = match init(state_dir, egress, join_mounts) {
        Ok(runtime) => runtime,
        Err(err) => {
            let reply = Reply::Error(RuntimeError::Helper(chain(&err)));
            let _ = write(&mut replies, &reply);
            return Err(err);
        }
    };
    write(
        &mut replies,
        &Reply::Ready {
            pid: std::process::id(),
            userns: runtime.userns_supported(),
        },
    )?;
    Ok((LineReader::new(requests), replies, runtime))
}

fn init(
    state_dir: &Path,
    egress: Option<EgressPorts>,
    join_mounts: Option<u32>,
) -> Result<LocalRuntime, ServeError> {
    setup::prepare(join_mounts)?;
    let runtime = LocalRuntime::new(state_dir)?;
    if join_mounts.is_none() {
        firewall::apply(egress)?;
    }
    Ok(runtime)
}

/// Waits for a request or for an init to exit; returns whether stdin is
/// readable and which sandboxes' inits exited.
fn wait(input: &LineReader<File>, runtime: &LocalRuntime) -> io::Result<(bool, Vec<String>)> {
    let children: Vec<_> = runtime.children().collect();
    let mut fds = vec![PollFd::new(input.get_ref().as_fd(), PollFlags::POLLIN)];
    fds.extend(
        children
            .iter()
            .map(|(_, pidfd)| PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)),
    );
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok((false, Vec::new())),
        Err(e) => return Err(e.into()),
    }
    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    let exited = children.iter().zip(&fds[1..]).filter(|(_, fd)| ready(fd));
    let exited = exited.map(|((id, _), _)| id.to_string()).collect();
    Ok((ready(&fds[0]), exited))
}

fn handle(runtime: &mut LocalRuntime, line: &[u8]) -> Reply {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(e) => return Reply::Error(RuntimeError::Helper(format!("malformed request: {e}"))),
    };
    let started = Instant::now();
    let name = request.name();
    let reply = dispatch(runtime, request).unwrap_or_else(Reply::Error);
    tracing::debug!(request = name, elapsed = ?started.elapsed(), "runtime helper request done");
    reply
}

fn dispatch(runtime: &mut LocalRuntime, request: Request) -> Result<Reply, RuntimeError> {
    match request {
        Request::Start { spec } => runtime
            .start(&spec)
            .map(Reply::Started)
            .map_err(LocalError::setup),
        Request::Stop { id } => runtime
            .stop(&id)
            .map(|()| Reply::Stopped)
            .map_err(LocalError::teardown),
        Request::Running => runtime
            .running()
            .map(Reply::Running)
            .map_err(|e| RuntimeError::Helper(chain(&e))),
        Request::Cleanup { keep_ids } => runtime
            .cleanup(&keep_ids)
            .map(Reply::CleanedUp)
            .map_err(LocalError::teardown),
    }
}

fn write(out: &mut File, reply: &Reply) -> io::Result<()> {
    out.write_all(&encode(reply))
}
