//! `sandpit tunnel SANDBOX REMOTE_PORT`: listen on a local port and carry
//! every connection to `REMOTE_PORT` inside the sandbox, over the same
//! protocol as the `langsmith` SDK's `sb.tunnel()` (yamux streams over the
//! data plane's `/tunnel` WebSocket, a 3-byte connect header, a status byte).

use std::process::ExitCode;
use std::task::Poll;

use anyhow::Context;
use clap::Args;
use sandpit_client::Client;
use sandpit_tunnel::{Codec, ConnectHeader, Frame, Status, PIPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::connect::Connection;

#[derive(Args)]
pub struct TunnelArgs {
    /// Sandbox name or id.
    sandbox: String,
    /// TCP port inside the sandbox.
    remote_port: u16,
    /// Local port to listen on (default: the remote port; 0 picks one).
    #[arg(long)]
    local_port: Option<u16>,
    /// Local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: TunnelArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sandpit: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandpit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

type OpenRequest = oneshot::Sender<yamux::Stream>;

async fn main(args: TunnelArgs) -> anyhow::Result<()> {
    let login = args.conn.resolve()?;
    let key = login.api_key.clone();
    let client = Client::new(&login.endpoint, &key)?;
    let sandbox = client.get_sandbox(&args.sandbox).await?;
    let dataplane = sandbox
        .dataplane_url
        .context("the sandbox has no data-plane URL (is it ready?)")?;
    let url = format!(
        "{}/tunnel",
        dataplane
            .trim_end_matches('/')
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("x-api-key", key.parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("opening the tunnel WebSocket")?;

    let local_port = args.local_port.unwrap_or(args.remote_port);
    let listener = TcpListener::bind((args.bind.as_str(), local_port))
        .await
        .with_context(|| format!("listening on {}:{local_port}", args.bind))?;
    println!(
        "Forwarding {} -> {}:{}",
        listener.local_addr()?,
        sandbox.name,
        args.remote_port
    );

    let (opens, requests) = mpsc::channel::<OpenRequest>(64);
    let (ours, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(sandpit_tunnel::pump(ws, theirs, codec()));
    let session = tokio::spawn(drive(
        yamux::Connection::new(ours.compat(), yamux::Config::default(), yamux::Mode::Client),
        requests,
    ));
    let remote_port = args.remote_port;
    let accept = async {
        loop {
            let (tcp, _) = listener.accept().await?;
            let opens = opens.clone();
            tokio::spawn(async move {
                if let Err(err) = forward(tcp, opens, remote_port).await {
                    eprintln!("sandpit: tunnel connection: {err:#}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        res = accept => res,
        res = session => {
            res?.context("tunnel session")?;
            anyhow::bail!("the server closed the tunnel")
        }
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Own the yamux connection: open streams on request, drive I/O.
async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut requests: mpsc::Receiver<OpenRequest>,
) -> Result<(), yamux::ConnectionError>
where
    T: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin,
{
    let mut pending: Option<OpenRequest> = None;
    std::future::poll_fn(|cx| loop {
        if let Some(reply) = pending.take() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    let _ = reply.send(stream);
                    continue;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => pending = Some(reply),
            }
        }
        if pending.is_none() {
            if let Poll::Ready(request) = requests.poll_recv(cx) {
                match request {
                    Some(reply) => {
                        pending = Some(reply);
                        continue;
                    }
                    None => return Poll::Ready(Ok(())),
                }
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(_))) => continue, // the server never opens streams
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// One local connection: open a stream, send the header, check the status,
/// splice.
async fn forward(
    mut tcp: TcpStream,
    opens: mpsc::Sender<OpenRequest>,
    port: u16,
) -> anyhow::Result<()> {
    let (reply, stream) = oneshot::channel();
    opens.send(reply).await.context("tunnel closed")?;
    let mut stream = stream.await.context("tunnel closed")?.compat();
    stream.write_all(&ConnectHeader::new(port).encode()).await?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).await?;
    match Status::from_byte(status[0]) {
        Some(Status::Ok) => {}
        Some(refused) => anyhow::bail!(refused.describe(port)),
        None => anyhow::bail!("unknown tunnel status {}", status[0]),
    }
    tokio::io::copy_bidirectional(&mut tcp, &mut stream).await?;
    Ok(())
}

/// tokio-tungstenite's messages for the shared pump.
fn codec() -> Codec<Message> {
    Codec {
        classify: |message| match message {
            Message::Binary(data) => Frame::Data(data),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
        binary: Message::Binary,
        close: || Message::Close(None),
    }
}
