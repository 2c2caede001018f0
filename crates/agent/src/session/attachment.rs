//! One client's view of a session's output.
//!
//! An [`Attachment`] has a cursor per stream and yields, in order: output
//! chunks (at most [`CHUNK_BYTES`], alternating between streams that both
//! have output), one [`Next::StreamEnd`] per stream, then the outcome.
//! While it exists the session counts a client as attached (idle timeout
//! paused); dropping it detaches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Hold, Outcome, Session, Stream, CHUNK_BYTES};

/// How long a parked hold (an SSE client between `ack_required` and its
/// resume) keeps the command from overwriting unacknowledged output.
pub const PARK_GRACE: Duration = Duration::from_secs(30);

/// What an attachment protects from eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    /// Everything not yet taken by this client (WebSocket).
    Cursor,
    /// Everything after the offsets the client acknowledged when attaching
    /// (SSE, whose client can only acknowledge by resuming).
    Acked,
}

/// The next thing to send to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// UTF-8 text of `stream` starting at byte `offset`.
    Output {
        stream: Stream,
        offset: u64,
        data: Vec<u8>,
    },
    /// `stream` has no more output; `offset` is its final length.
    StreamEnd { stream: Stream, offset: u64 },
    /// The command finished and all output was delivered.
    Finished(Outcome),
}

/// A client attached to a session.
pub struct Attachment {
    session: Arc<Session>,
    key: u64,
    mode: HoldMode,
    cursor: [u64; 2],
    acked: [u64; 2],
    reported_end: [bool; 2],
    /// Stream to look at first, alternating for fairness.
    first: usize,
    /// Leave the hold in place when dropped (see [`Attachment::park`]).
    park: bool,
}

impl Session {
    /// Attaches a client reading from `from` (stdout, stderr offsets). An
    /// offset past the end starts at the end; one older than the ring starts
    /// at the oldest retained output.
    pub fn attach(self: &Arc<Self>, from: [u64; 2], mode: HoldMode) -> Attachment {
        let mut state = self.lock();
        let key = state.next_key;
        state.next_key += 1;
        let cursor = [0, 1].map(|i| from[i].min(state.rings[i].end()));
        let acked = [0, 1].map(|i| cursor[i].max(state.rings[i].start()));
        if mode == HoldMode::Acked {
            // A resume acknowledges what a previous response parked.
            state.holds.retain(|_, hold| !hold.parked);
        }
        let hold = Hold {
            offsets: acked,
            parked: false,
        };
        state.holds.insert(key, hold);
        state.detached_since = None;
        drop(state);
        self.room.notify_waiters();
        self.clients.notify_waiters();
        Attachment {
            session: Arc::clone(self),
            key,
            mode,
            cursor,
            acked,
            reported_end: [false; 2],
            first: 0,
            park: false,
        }
    }

    /// Detaches `key`, leaving its hold parked at `park` if given.
    fn detach(&self, key: u64, park: Option<[u64; 2]>) {
        let mut state = self.lock();
        match (park, state.holds.get_mut(&key)) {
            (Some(offsets), Some(hold)) => {
                *hold = Hold {
                    offsets,
                    parked: true,
                }
            }
            _ => drop(state.holds.remove(&key)),
        }
        let last = !state.has_clients();
        if last {
            state.detached_since = Some(Instant::now());
        }
        drop(state);
        self.room.notify_waiters();
        self.clients.notify_waiters();
        if last && self.lifecycle.kill_on_disconnect {
            self.kill();
        }
    }
}

impl Attachment {
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Offsets just past what this client has been given.
    pub fn cursors(&self) -> [u64; 2] {
        self.cursor
    }

    /// Most bytes handed out beyond the acknowledged offsets, over streams.
    pub fn unacked(&self) -> u64 {
        (0..2)
            .map(|i| self.cursor[i] - self.acked[i].min(self.cursor[i]))
            .max()
            .unwrap_or(0)
    }

    /// Detaches but keeps everything after the current cursors until a client
    /// resumes with [`HoldMode::Acked`] or [`PARK_GRACE`] passes.
    pub fn park(mut self) {
        self.park = true;
        let (session, key) = (Arc::clone(&self.session), self.key);
        drop(self);
        tokio::spawn(async move {
            tokio::time::sleep(PARK_GRACE).await;
            session.unpark(key);
        });
    }

    /// Waits for the next thing to send. Cancel-safe.
    pub async fn next(&mut self) -> Next {
        let session = Arc::clone(&self.session);
        loop {
            let notified = session.output.notified();
            if let Some(next) = self.poll() {
                return next;
            }
            notified.await;
        }
    }

    fn poll(&mut self) -> Option<Next> {
        if let Some(output) = self.take_output() {
            return Some(output);
        }
        let state = self.session.lock();
        for stream in Stream::ALL {
            let i = stream.index();
            if state.ended[i] && !self.reported_end[i] {
                self.reported_end[i] = true;
                let offset = state.rings[i].end();
                return Some(Next::StreamEnd { stream, offset });
            }
        }
        let all_ended = self.reported_end.iter().all(|e| *e);
        state.outcome.filter(|_| all_ended).map(Next::Finished)
    }

    fn take_output(&mut self) -> Option<Next> {
        let mut state = self.session.lock();
        for turn in 0..2 {
            let i = (self.first + turn) % 2;
            let mut data = Vec::new();
            let Some(offset) = state.rings[i].read(self.cursor[i], CHUNK_BYTES, &mut data) else {
                continue;
            };
            self.cursor[i] = offset + data.len() as u64;
            self.first = 1 - i;
            if self.mode == HoldMode::Cursor {
                if let Some(hold) = state.holds.get_mut(&self.key) {
                    hold.offsets[i] = self.cursor[i];
                }
                drop(state);
                self.session.room.notify_waiters();
            }
            let stream = Stream::ALL[i];
            return Some(Next::Output {
                stream,
                offset,
                data,
            });
        }
        None
    }
}

impl Session {
    fn unpark(&self, key: u64) {
        let removed = self.lock().holds.remove(&key).is_some();
        if removed {
            self.room.notify_waiters();
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let park = self.park.then_some(self.cursor);
        self.session.detach(self.key, park);
    }
}
