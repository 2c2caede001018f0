//! Writing client input to a command's stdin (or its PTY).
//!
//! Input is queued to one writer task per session, so a command that does not
//! read its stdin never blocks the client connection (which must stay free to
//! deliver `kill`). The queue is unbounded: it only ever holds what the
//! sandbox's own client sent.

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::nonblocking;

/// One queued operation on stdin.
#[derive(Debug)]
pub enum StdinOp {
    Data(Vec<u8>),
    /// Close the write end after everything queued before it.
    Close,
}

/// Starts the writer for `fd`; the returned sender queues operations.
pub(super) fn spawn_writer(fd: OwnedFd) -> io::Result<mpsc::UnboundedSender<StdinOp>> {
    let fd = nonblocking(fd, Interest::WRITABLE)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(fd, rx).in_current_span());
    Ok(tx)
}

async fn run(fd: AsyncFd<OwnedFd>, mut rx: mpsc::UnboundedReceiver<StdinOp>) {
    while let Some(op) = rx.recv().await {
        let StdinOp::Data(data) = op else {
            break;
        };
        if let Err(error) = write_all(&fd, &data).await {
            tracing::debug!(%error, "stdin closed by the command");
            break;
        }
    }
    // Dropping `fd` closes the write end: the command reads EOF.
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|fd| write(fd.get_ref(), data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(error)) => return Err(error),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

fn write(fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::write(fd, data) {
            Err(Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}
