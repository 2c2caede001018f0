//! Command-line flags of `sandpit agent` / `sandpit-agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

/// Uploads larger than this are refused unless `--max-upload-bytes` says
/// otherwise: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;

/// The descriptor the runtime passes the listening socket on.
pub const DEFAULT_LISTEN_FD: i32 = 3;

/// The in-sandbox agent: PID 1 of a sandbox, serving the data-plane protocol.
#[derive(Debug, Parser)]
#[command(name = "sandpit-agent", version)]
pub struct Args {
    /// Serve on an inherited, already listening socket (unix or TCP) on
    /// this descriptor. The default when `--listen` is not given.
    #[arg(long, conflicts_with = "listen")]
    pub listen_fd: Option<i32>,

    /// Bind and serve on `unix:/path.sock` or `tcp:HOST:PORT` instead.
    #[arg(long)]
    pub listen: Option<ListenAddr>,

    /// Default working directory of commands and base of relative file
    /// paths; created if missing.
    #[arg(long, default_value = "/home/user")]
    pub workdir: PathBuf,

    /// Default user of commands that name none (`name`, `uid`,
    /// `name:group`, `uid:gid`; resolved through the sandbox's
    /// `/etc/passwd` and `/etc/group` at each command). Root when absent.
    #[arg(long)]
    pub user: Option<String>,

    /// Install the seccomp filter (a compiled BPF program) read from this
    /// descriptor before anything else; the agent stops if it cannot.
    #[arg(long)]
    pub seccomp_fd: Option<i32>,

    /// Largest accepted upload, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,
}

/// Where to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenTarget {
    Fd(i32),
    Addr(ListenAddr),
}

/// An address to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Args {
    pub fn listen_target(&self) -> ListenTarget {
        match (&self.listen, self.listen_fd) {
            (Some(addr), _) => ListenTarget::Addr(addr.clone()),
            (None, fd) => ListenTarget::Fd(fd.unwrap_or(DEFAULT_LISTEN_FD)),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Self::Tcp)
                .map_err(|e| format!("bad tcp address {addr:?}: {e}"));
        }
        Err(format!("expected unix:/path or tcp:HOST:PORT, got {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("sandpit-agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_to_fd_3() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.listen_target(), ListenTarget::Fd(3));
        assert_eq!(args.workdir, PathBuf::from("/home/user"));
        assert_eq!(args.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
    }

    #[test]
    fn listen_forms() {
        let args = parse(&["--listen", "unix:/tmp/a.sock"]).expect("parses");
        assert_eq!(
            args.listen_target(),
            ListenTarget::Addr(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        let args = parse(&["--listen", "tcp:127.0.0.1:9000"]).expect("parses");
        assert_eq!(
            args.listen_target(),
            ListenTarget::Addr(ListenAddr::Tcp("127.0.0.1:9000".parse().expect("addr")))
        );
        assert!(parse(&["--listen", "udp:x"]).is_err());
        assert!(parse(&["--listen-fd", "3", "--listen", "unix:/x"]).is_err());
    }
}
