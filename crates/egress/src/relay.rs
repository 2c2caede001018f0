//! Relaying a passed-through stream to its upstream until both sides close.
//!
//! Between two TCP sockets (a redirected connection) the bytes go through
//! the kernel with `splice(2)`: socket → pipe → socket, one pipe per
//! direction, so they are never copied into the proxy. A `CONNECT` tunnel
//! is one too once hyper hands back its socket (with the bytes it had read
//! past the request, written first); only an upgraded connection that is
//! not a plain socket is copied in user space. Either way a direction that reaches end-of-file half-closes the
//! other side and the relay ends when both directions have.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};

use crate::prefixed::Prefixed;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most bytes moved by one `splice` (the default pipe capacity).
const CHUNK: usize = 64 * 1024;

/// A sandbox-side stream the TLS path can pass through.
pub(crate) trait Passthrough: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Relay between `self` and `upstream` until both directions end, or
    /// until no byte moved either way for `idle`.
    fn relay(
        self,
        upstream: TcpStream,
        idle: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

impl Passthrough for TcpStream {
    async fn relay(self, upstream: TcpStream, idle: Duration) -> io::Result<()> {
        splice_bidirectional_idle(&self, &upstream, idle).await
    }
}

/// A `CONNECT` tunnel's socket, after the bytes hyper read past the request.
impl Passthrough for Prefixed<TcpStream> {
    async fn relay(self, mut upstream: TcpStream, idle: Duration) -> io::Result<()> {
        let (unread, socket) = self.into_parts();
        upstream.write_all(&unread).await?;
        splice_bidirectional_idle(&socket, &upstream, idle).await
    }
}

impl Passthrough for TokioIo<Upgraded> {
    async fn relay(mut self, mut upstream: TcpStream, _idle: Duration) -> io::Result<()> {
        tokio::io::copy_bidirectional(&mut self, &mut upstream)
            .await
            .map(|(up, down)| crate::stats::global().bytes(up + down))
    }
}

/// When a relay last moved a byte, for its idle timeout.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// [`splice_bidirectional`], ended with a `TimedOut` error once no byte
/// moved either way for `idle`.
pub async fn splice_bidirectional_idle(
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
) -> io::Result<()> {
    let activity = Activity::new();
    let relay = async {
        tokio::try_join!(
            splice_one_way(a, b, &activity),
            splice_one_way(b, a, &activity)
        )
        .map(|_| ())
    };
    tokio::select! {
        done = relay => done,
        _ = activity.idle_for(idle) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Relay between two sockets with `splice(2)`, both directions at once.
pub async fn splice_bidirectional(a: &TcpStream, b: &TcpStream) -> io::Result<()> {
    let activity = Activity::new();
    tokio::try_join!(
        splice_one_way(a, b, &activity),
        splice_one_way(b, a, &activity)
    )
    .map(|_| ())
}

/// Move everything `from` sends to `to`, then half-close `to`; the bytes
/// moved.
async fn splice_one_way(from: &TcpStream, to: &TcpStream, activity: &Activity) -> io::Result<u64> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let mut moved = 0u64;
    loop {
        let n = fill(from, &pipe_in).await?;
        if n == 0 {
            // The peer may already be gone; nothing is lost by ignoring it.
            let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
            return Ok(moved);
        }
        activity.touch();
        drain(&pipe_out, to, n).await?;
        activity.touch();
        moved += n as u64;
        crate::stats::global().bytes(n as u64);
    }
}

/// Splice what `from` has into the (empty) pipe: the byte count, 0 at
/// end-of-file.
async fn fill(from: &TcpStream, pipe_in: &OwnedFd) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || splice_once(from, pipe_in, CHUNK)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// Splice `n` bytes from the pipe into `to`.
async fn drain(pipe_out: &OwnedFd, to: &TcpStream, mut n: usize) -> io::Result<()> {
    while n > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || splice_once(pipe_out, to, n)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(moved) => n -= moved,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn splice_once(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    splice(from, None, to, None, len, flags).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const LONG: Duration = Duration::from_secs(60);

    /// A connected pair of sockets: (the end we keep, the end we relay).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (ours.unwrap(), theirs.unwrap().0)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_half_closes_pass_on() {
        let (mut client, sandbox_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        let relay = tokio::spawn(async move { sandbox_side.relay(upstream_side, LONG).await });
        // More than a pipe holds, so the drain loop runs more than once.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), big.len());
        assert!(got == big);
        // The other direction still works after the first half-closed.
        let mut client = writer.await.unwrap();
        server.write_all(b"answer").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        relay.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_tunnel_sends_its_unread_prefix_first() {
        let (mut client, sandbox_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        let mut tunnel = Prefixed::new(b"early ".to_vec(), sandbox_side);
        let mut first = [0u8; 2];
        tunnel.read_exact(&mut first).await.unwrap(); // "ea" consumed
        let relay = tokio::spawn(async move { tunnel.relay(upstream_side, LONG).await });
        client.write_all(b"late").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"rly late");
        drop(server);
        relay.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_idle_relay_is_ended_and_a_busy_one_is_not() {
        let (mut client, sandbox_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        let idle = Duration::from_millis(300);
        let relay = tokio::spawn(async move { sandbox_side.relay(upstream_side, idle).await });
        // Bytes every 100 ms for 600 ms keep it open...
        for _ in 0..6 {
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            server.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!relay.is_finished());
        // ...then silence ends it, and both sides see the end.
        let ended = tokio::time::timeout(Duration::from_secs(5), relay).await;
        let err = ended.expect("ended in time").unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
