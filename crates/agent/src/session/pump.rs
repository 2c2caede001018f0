//! Moving one pipe (or the PTY master) into a session's ring.
//!
//! The pump reads [`READ_BYTES`] at a time ([`BULK_READ_BYTES`] once a read
//! fills the buffer: fewer reads contend less for the pipe with a fast
//! writer), decodes incrementally and appends to the ring, waiting first
//! until the ring has room for the worst case so that a slow attached client
//! stops the reads instead of losing output.
//!
//! End of output is EOF (or `EIO` on a PTY master). A background process can
//! keep a pipe open after the command exits, so once the command has exited
//! the pump stops after [`DRAIN_IDLE`] without data, or after reading more
//! than the pipe could have held at exit: anything beyond that came from
//! somebody else.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{nonblocking, Session, Stream};
use crate::utf8::Decoder;

/// Bytes read from the pipe at a time.
pub const READ_BYTES: usize = 64 * 1024;

/// Bytes read at a time from a stream that has filled a whole read.
pub const BULK_READ_BYTES: usize = 256 * 1024;

/// Decoding can grow text: an invalid byte becomes a 3-byte U+FFFD.
fn max_decoded_bytes(read: usize) -> usize {
    3 * read + 3
}

/// How long an exited command's output may stay silent before it is
/// considered complete.
pub const DRAIN_IDLE: Duration = Duration::from_millis(50);

/// What a PTY master can hold in flight (the kernel's tty buffer is smaller).
pub const TERMINAL_BUFFER_BYTES: usize = 64 * 1024;

/// Starts pumping `fd` into `stream` of `session`.
pub(super) fn start(
    session: &Arc<Session>,
    stream: Stream,
    fd: OwnedFd,
    pipe_bytes: usize,
) -> JoinHandle<()> {
    let session = Arc::clone(session);
    let pump = async move {
        match nonblocking(fd, Interest::READABLE) {
            Ok(fd) => run(&session, stream, fd, pipe_bytes).await,
            Err(error) => tracing::warn!(%error, "cannot watch command output"),
        }
        session.end_stream(stream);
    };
    tokio::spawn(pump.instrument(tracing::debug_span!("pump", stream = stream.name())))
}

async fn run(session: &Session, stream: Stream, fd: AsyncFd<OwnedFd>, pipe_bytes: usize) {
    let mut exited = session.exited.subscribe();
    let mut buf = vec![0u8; READ_BYTES];
    let mut text = String::new();
    let mut decoder = Decoder::new();
    let mut after_exit = 0usize;
    loop {
        session
            .wait_for_room(stream, max_decoded_bytes(buf.len()))
            .await;
        let Some(n) = read_some(&fd, &mut buf, &mut exited).await else {
            break;
        };
        if n == buf.len() && n < BULK_READ_BYTES {
            buf.resize(BULK_READ_BYTES, 0);
        }
        session.push(stream, decoder.decode(&buf[..n], &mut text));
        if *exited.borrow() {
            after_exit += n;
            if after_exit > pipe_bytes {
                break;
            }
        }
    }
    if let Some(rest) = decoder.finish() {
        session.push(stream, rest);
    }
}

/// Reads what is available; `None` at the end of the output.
async fn read_some(
    fd: &AsyncFd<OwnedFd>,
    buf: &mut [u8],
    exited: &mut watch::Receiver<bool>,
) -> Option<usize> {
    loop {
        let mut ready = if *exited.borrow_and_update() {
            tokio::time::timeout(DRAIN_IDLE, fd.readable())
                .await
                .ok()?
                .ok()?
        } else {
            tokio::select! {
                ready = fd.readable() => ready.ok()?,
                _ = exited.changed() => continue,
            }
        };
        match ready.try_io(|fd| read(fd.as_raw_fd(), buf)) {
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => return Some(n),
            Ok(Err(error)) => {
                if error.raw_os_error() != Some(libc::EIO) {
                    tracing::debug!(%error, "output read failed");
                }
                return None;
            }
            Err(_would_block) => continue,
        }
    }
}

fn read(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}
