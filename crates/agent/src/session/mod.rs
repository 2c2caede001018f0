//! Command sessions: one running (or recently finished) command and its
//! output.
//!
//! A [`Session`] owns the command's process group, a [`Ring`] per output
//! stream ([`RING_BYTES`] each), the writer of its stdin and its lifecycle.
//! Clients read output through [`Attachment`]s; each attachment *holds* an
//! offset per stream below which the pump may not evict output. A WebSocket
//! client holds what it has taken so far, so a slow client makes the pump stop
//! reading the pipe (backpressure) instead of losing output; an SSE client
//! holds what it has acknowledged, and keeps holding it between the end of
//! one response and the resume that acknowledges it. With no attachment the
//! command keeps running and the oldest output is dropped.
//!
//! The pieces: [`pump`] moves a pipe into a ring, [`stdin`] writes input,
//! [`lifecycle`] enforces timeout / idle timeout / exit, [`attachment`]
//! hands output to one client.

mod attachment;
mod lifecycle;
mod pump;
mod stdin;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch, Notify};
use tracing::Instrument;

pub use attachment::{Attachment, HoldMode, Next};

use crate::exec::Lifecycle;
use crate::process::{self, Child, ChildIo};
use crate::pty::{self, WindowSize};
use crate::ring::Ring;
use stdin::StdinOp;

/// Output retained per stream for reconnects: 8 MiB.
pub const RING_BYTES: usize = 8 * 1024 * 1024;

/// Most bytes of text carried by one output message. Kept well under the
/// SDK's 1 MiB WebSocket frame limit even if every byte is JSON-escaped
/// (6 bytes for `\u00XX`: 768 KiB).
pub const CHUNK_BYTES: usize = 128 * 1024;

/// One of a command's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a finished command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code, or 128 + signal.
    Exited(i32),
    /// Killed for running longer than its timeout.
    TimedOut(Duration),
}

/// One command and its retained output.
pub struct Session {
    id: String,
    pid: i32,
    lifecycle: Lifecycle,
    state: Mutex<State>,
    /// Wakes attachments: output appended, a stream ended, or finished.
    output: Notify,
    /// Wakes pumps: a hold advanced or went away.
    room: Notify,
    /// Wakes the lifecycle task: a client attached or detached.
    clients: Notify,
    /// Becomes true once the command's process has exited.
    exited: watch::Sender<bool>,
    /// Counts WebSocket reconnects: a socket attached before the latest one
    /// has been taken over (see [`Session::take_over`]).
    takeovers: watch::Sender<u64>,
    stdin: Option<mpsc::UnboundedSender<StdinOp>>,
    /// Whether the command runs on a PTY.
    pty: bool,
}

struct State {
    rings: [Ring; 2],
    ended: [bool; 2],
    outcome: Option<Outcome>,
    holds: HashMap<u64, Hold>,
    next_key: u64,
    /// When the last client detached, while none is attached (and since
    /// any ever was).
    detached_since: Option<Instant>,
    /// The PTY master, for resizing; closed when the command finishes so a
    /// session kept for reconnects does not hold a terminal.
    terminal: Option<OwnedFd>,
}

impl Session {
    /// Takes over a started child: spawns its pumps, stdin writer and
    /// lifecycle task. Must run inside the tokio runtime.
    pub fn start(
        id: String,
        child: Child,
        lifecycle: Lifecycle,
        close_stdin: bool,
    ) -> io::Result<Arc<Self>> {
        let Child { pid, io, exit } = child;
        let span = tracing::debug_span!("session", id = %id, pid);
        let _entered = span.enter();
        let Wiring {
            stdout,
            stderr,
            stdin,
            terminal,
            pipe_bytes,
        } = Wiring::new(io, close_stdin)?;
        let session = Arc::new(Self {
            id,
            pid,
            lifecycle,
            pty: terminal.is_some(),
            state: Mutex::new(State::new(terminal)),
            output: Notify::new(),
            room: Notify::new(),
            clients: Notify::new(),
            exited: watch::Sender::new(false),
            takeovers: watch::Sender::new(0),
            stdin,
        });
        let mut pumps = vec![pump::start(&session, Stream::Stdout, stdout, pipe_bytes)];
        match stderr {
            Some(fd) => pumps.push(pump::start(&session, Stream::Stderr, fd, pipe_bytes)),
            None => session.end_stream(Stream::Stderr),
        }
        let supervise = lifecycle::supervise(Arc::clone(&session), exit, pumps);
        tokio::spawn(supervise.in_current_span());
        Ok(session)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The outcome, once the command has exited and its output is complete.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome
    }

    /// Waits until the session has an outcome.
    pub async fn finished(&self) -> Outcome {
        loop {
            let notified = self.output.notified();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            notified.await;
        }
    }

    /// The current takeover generation: a socket attached now is current
    /// until the next [`Session::take_over`].
    pub fn generation(&self) -> u64 {
        *self.takeovers.borrow()
    }

    /// A reconnecting client takes the command over: every socket attached
    /// before it is superseded. Returns the new generation.
    pub fn take_over(&self) -> u64 {
        self.takeovers.send_modify(|generation| *generation += 1);
        self.generation()
    }

    /// Resolves once a client attached after `generation` took over.
    pub async fn superseded(&self, generation: u64) {
        let mut takeovers = self.takeovers.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = takeovers.wait_for(|current| *current > generation).await;
    }

    /// How long to keep the session once finished; `None` forever.
    pub fn ttl(&self) -> Option<Duration> {
        self.lifecycle.ttl
    }

    /// SIGKILLs the process group, unless the command already finished.
    pub fn kill(&self) {
        if self.outcome().is_none() {
            process::kill_group(self.pid);
        }
    }

    /// Queues `data` for the command's stdin (or terminal).
    pub fn write_input(&self, data: String) {
        if let Some(stdin) = &self.stdin {
            let _ = stdin.send(StdinOp::Data(data.into_bytes()));
        }
    }

    /// Closes stdin after queued input. A no-op under a PTY.
    pub fn close_stdin(&self) {
        if let (Some(stdin), false) = (&self.stdin, self.pty) {
            let _ = stdin.send(StdinOp::Close);
        }
    }

    /// Sets the PTY's window size. A no-op without a PTY.
    pub fn resize(&self, size: WindowSize) {
        if let Some(terminal) = &self.lock().terminal {
            if let Err(error) = pty::set_size(terminal.as_fd(), size) {
                tracing::debug!(%error, "resize");
            }
        }
    }

    /// Appends decoded output and wakes readers.
    fn push(&self, stream: Stream, text: &str) {
        if text.is_empty() {
            return;
        }
        self.lock().rings[stream.index()].append(text);
        self.output.notify_waiters();
    }

    fn end_stream(&self, stream: Stream) {
        self.lock().ended[stream.index()] = true;
        self.output.notify_waiters();
    }

    /// Records the outcome and lets go of the command's stdin and terminal.
    fn finish(&self, outcome: Outcome) {
        if let Some(stdin) = &self.stdin {
            let _ = stdin.send(StdinOp::Close);
        }
        let mut state = self.lock();
        state.outcome = Some(outcome);
        state.terminal = None;
        drop(state);
        self.output.notify_waiters();
        self.clients.notify_waiters();
    }

    /// Waits until `len` more bytes fit in `stream` without evicting output
    /// an attached client still holds.
    async fn wait_for_room(&self, stream: Stream, len: usize) {
        loop {
            let notified = self.room.notified();
            if self.lock().has_room(stream, len) {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn new(terminal: Option<OwnedFd>) -> Self {
        Self {
            rings: [Ring::new(RING_BYTES), Ring::new(RING_BYTES)],
            ended: [false; 2],
            outcome: None,
            holds: HashMap::new(),
            next_key: 0,
            // The client that starts a command attaches at once; the idle
            // timer starts when the last client leaves.
            detached_since: None,
            terminal,
        }
    }

    fn has_room(&self, stream: Stream, len: usize) -> bool {
        let i = stream.index();
        let start = self.rings[i].start_after_append(len);
        self.holds.values().all(|hold| hold.offsets[i] >= start)
    }

    /// Whether a client (not just a parked hold) is attached.
    fn has_clients(&self) -> bool {
        self.holds.values().any(|hold| !hold.parked)
    }
}

/// Output, per stream, that must not be evicted.
#[derive(Debug, Clone, Copy)]
struct Hold {
    offsets: [u64; 2],
    /// Left behind by an SSE response that asked for an ack: protects the
    /// output until the client resumes (or [`attachment::PARK_GRACE`]).
    parked: bool,
}

/// The parent's ends of a child's stdio, ready for the runtime.
struct Wiring {
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    stdin: Option<mpsc::UnboundedSender<StdinOp>>,
    terminal: Option<OwnedFd>,
    /// Bytes a pipe can hold: the most output an exited command can still
    /// have in flight.
    pipe_bytes: usize,
}

impl Wiring {
    fn new(io: ChildIo, close_stdin: bool) -> io::Result<Self> {
        match io {
            ChildIo::Pipes {
                stdin,
                stdout,
                stderr,
                pipe_bytes,
            } => Ok(Self {
                stdout,
                stderr: Some(stderr),
                stdin: (!close_stdin)
                    .then(|| stdin::spawn_writer(stdin))
                    .transpose()?,
                terminal: None,
                pipe_bytes,
            }),
            ChildIo::Terminal { master } => Ok(Self {
                stdout: master.try_clone()?,
                stderr: None,
                stdin: Some(stdin::spawn_writer(master.try_clone()?)?),
                terminal: Some(master),
                pipe_bytes: pump::TERMINAL_BUFFER_BYTES,
            }),
        }
    }
}

/// Sets `O_NONBLOCK` and registers `fd` with the runtime for `interest`.
fn nonblocking(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    // SAFETY: an `OwnedFd` keeps its descriptor open, referring to the same
    // file description, until it is dropped with the `AsyncFd`, and always
    // reports the same number.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}
