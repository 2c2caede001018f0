//! The way out for a sandbox's mount clients (`git`, `rclone`), which run
//! on the host: a `CONNECT`-only proxy on loopback, one per sandbox with
//! mounts, that resolves and dials like the egress proxy (`--egress-resolve`
//! overrides, reserved addresses refused, the sandbox's own allow and deny
//! lists, ports 80 and 443 unless the allow list names another). So a
//! tenant cannot point a mount at the host's loopback, the metadata
//! service or a private network. Only `https` endpoints are accepted
//! (`config.rs`), so `CONNECT` is all it speaks.

use std::sync::Arc;
use std::time::Duration;

use sandpit_egress::dial::Dialer;
use sandpit_egress::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy; stops when dropped.
pub struct MountProxy {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for MountProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MountProxy {
    /// Listen on loopback: on `port` if given and free (an adopted
    /// sandbox's rclones still point there), else on any port.
    pub async fn start(
        dialer: Arc<Dialer>,
        policy: Policy,
        port: Option<u16>,
    ) -> std::io::Result<Self> {
        let listener = match port {
            Some(p) => match TcpListener::bind(("127.0.0.1", p)).await {
                Ok(l) => l,
                Err(_) => TcpListener::bind(("127.0.0.1", 0)).await?,
            },
            None => TcpListener::bind(("127.0.0.1", 0)).await?,
        };
        let port = listener.local_addr()?.port();
        let policy = Arc::new(policy);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (dialer, policy) = (dialer.clone(), policy.clone());
                tokio::spawn(async move {
                    if let Err(message) = serve(stream, &dialer, &policy).await {
                        tracing::debug!(%message, "mount proxy refused a connection");
                    }
                });
            }
        });
        Ok(Self { port, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn serve(mut client: TcpStream, dialer: &Dialer, policy: &Policy) -> Result<(), String> {
    let (head, rest) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client))
        .await
        .map_err(|_| "no request head in time".to_owned())??;
    let target = match connect_target(&head) {
        Ok(target) => target,
        Err(why) => {
            let _ = client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                .await;
            return Err(why);
        }
    };
    let (host, port) = target;
    let checked = policy
        .check_port(Some(&host), None, port)
        .map_err(|d| d.to_string());
    let upstream = match checked {
        Ok(()) => dialer
            .dial(policy, Some(&host), None, port)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(why) => {
            let _ = client
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await;
            return Err(format!("{host}:{port}: {why}"));
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    upstream.write_all(&rest).await.map_err(|e| e.to_string())?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

/// The request head and whatever followed it in the same reads.
async fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too long".into());
        }
        let n = client.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a request".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `CONNECT host:port HTTP/1.x` → (host, port).
fn connect_target(head: &[u8]) -> Result<(String, u16), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("malformed request head".into()),
    }
    if request.method != Some("CONNECT") {
        return Err(format!("{:?} is not CONNECT", request.method));
    }
    let authority: http::uri::Authority = request
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| "bad CONNECT target".to_owned())?;
    let port = authority
        .port_u16()
        .ok_or("CONNECT target without a port")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_with_a_port_is_understood() {
        let ok = connect_target(b"CONNECT s3.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(ok, Ok(("s3.example.com".into(), 443)));
        assert!(connect_target(b"GET http://a/ HTTP/1.1\r\n\r\n").is_err());
        assert!(connect_target(b"CONNECT a HTTP/1.1\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn loopback_targets_are_refused() {
        let target = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = target.local_addr().unwrap().port();
        let proxy = MountProxy::start(
            Arc::new(Dialer::new(Default::default())),
            Policy::default(),
            None,
        )
        .await
        .unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        let req = format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n");
        client.write_all(req.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = client.read(&mut answer).await.unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 403"),
            "{:?}",
            &answer[..n]
        );
    }
}
