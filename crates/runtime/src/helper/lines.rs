//! Newline-framed reading from a pipe, with poll-based waiting so neither
//! side blocks forever.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Bytes read so far, split into lines on demand.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read + AsFd> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// A complete line already buffered, without its newline.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        Some(line)
    }

    /// True once the writer closed its end.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// One `read` into the buffer (call when poll says readable).
    pub fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        match self.inner.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The next line, waiting at most `timeout` for it.
    pub fn read_line(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.next_line() {
                return Ok(line);
            }
            if self.eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if wait_readable(&self.inner, left)? {
                self.fill()?;
            }
        }
    }
}

/// Waits until `fd` is readable (or hung up); false on timeout.
fn wait_readable(fd: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn splits_lines_across_reads_and_times_out() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut reader = LineReader::new(b);
        a.write_all(b"one\ntw").unwrap();
        assert_eq!(reader.read_line(Duration::from_secs(1)).unwrap(), b"one");
        let err = reader.read_line(Duration::from_millis(20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        a.write_all(b"o\n").unwrap();
        assert_eq!(reader.read_line(Duration::from_secs(1)).unwrap(), b"two");
        drop(a);
        let err = reader.read_line(Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
