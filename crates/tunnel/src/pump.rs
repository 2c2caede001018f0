//! Binary WebSocket messages ⇄ the byte pipe a yamux session reads and
//! writes. Generic over the WebSocket library (axum's on the server,
//! tokio-tungstenite's in the CLI) through a [`Codec`] of plain functions.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::PIPE;

/// How long one side of a closing pump waits for the other.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a received WebSocket message means to the pump.
pub enum Frame {
    Data(Bytes),
    Close,
    /// Pings, pongs, text: ignored.
    Other,
}

/// How to read and make one library's messages.
pub struct Codec<M> {
    pub classify: fn(M) -> Frame,
    pub binary: fn(Bytes) -> M,
    /// The close frame sent when the session ends first.
    pub close: fn() -> M,
}

/// Moves bytes between `ws` and `pipe` until either ends. When one side
/// ends, the other gets `CLOSE_GRACE` to finish: a peer's close frame ends
/// the session, whose end sends the answering close frame; a session that
/// ends first sends a close frame and waits for the peer's answer. The
/// WebSocket is always closed with a close frame, never just dropped.
pub async fn pump<W, M, E>(ws: W, pipe: DuplexStream, codec: Codec<M>)
where
    W: Stream<Item = Result<M, E>> + Sink<M>,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(pipe);
    let inbound = async {
        while let Some(Ok(message)) = ws_rx.next().await {
            match (codec.classify)(message) {
                Frame::Data(data) => {
                    if pipe_tx.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Frame::Close => break,
                Frame::Other => {}
            }
        }
        let _ = pipe_tx.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; PIPE];
        loop {
            match pipe_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if ws_tx.send((codec.binary)(data)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send((codec.close)()).await;
        // After the peer's close frame that send is refused, and the answer
        // the library queued goes out only with a flush.
        let _ = ws_tx.flush().await;
    };
    tokio::pin!(inbound, outbound);
    tokio::select! {
        _ = &mut inbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut outbound).await;
        }
        _ = &mut outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut inbound).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[derive(Debug, PartialEq)]
    enum Msg {
        Bin(Bytes),
        Close,
        Ping,
    }

    fn codec() -> Codec<Msg> {
        Codec {
            classify: |m| match m {
                Msg::Bin(b) => Frame::Data(b),
                Msg::Close => Frame::Close,
                Msg::Ping => Frame::Other,
            },
            binary: Msg::Bin,
            close: || Msg::Close,
        }
    }

    /// A WebSocket stand-in: messages from the peer in, messages to it out.
    struct FakeSocket {
        incoming: mpsc::UnboundedReceiver<Result<Msg, ()>>,
        outgoing: mpsc::UnboundedSender<Msg>,
    }

    impl Stream for FakeSocket {
        type Item = Result<Msg, ()>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Msg> for FakeSocket {
        type Error = ();
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, item: Msg) -> Result<(), ()> {
            self.outgoing.send(item).map_err(|_| ())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn socket() -> (
        mpsc::UnboundedSender<Result<Msg, ()>>,
        mpsc::UnboundedReceiver<Msg>,
        FakeSocket,
    ) {
        let (peer_tx, incoming) = mpsc::unbounded_channel();
        let (outgoing, peer_rx) = mpsc::unbounded_channel();
        (peer_tx, peer_rx, FakeSocket { incoming, outgoing })
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_peer_close_is_answered() {
        let (peer_tx, mut peer_rx, ws) = socket();
        let (ours, theirs) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump(ws, theirs, codec()));
        let (mut ours_rx, mut ours_tx) = tokio::io::split(ours);
        peer_tx.send(Ok(Msg::Ping)).unwrap();
        peer_tx
            .send(Ok(Msg::Bin(Bytes::from_static(b"in"))))
            .unwrap();
        let mut got = [0u8; 2];
        ours_rx.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"in");
        ours_tx.write_all(b"out").await.unwrap();
        assert_eq!(
            peer_rx.recv().await,
            Some(Msg::Bin(Bytes::from_static(b"out")))
        );
        peer_tx.send(Ok(Msg::Close)).unwrap();
        // The session sees the end of its input, ends, and the pump answers.
        let mut rest = Vec::new();
        ours_rx.read_to_end(&mut rest).await.unwrap();
        drop(ours_tx);
        drop(ours_rx);
        assert_eq!(peer_rx.recv().await, Some(Msg::Close));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_session_that_ends_first_sends_a_close_and_waits_for_the_answer() {
        let (peer_tx, mut peer_rx, ws) = socket();
        let (ours, theirs) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump(ws, theirs, codec()));
        drop(ours);
        assert_eq!(peer_rx.recv().await, Some(Msg::Close));
        assert!(
            !task.is_finished(),
            "the pump must wait for the peer's answer"
        );
        peer_tx.send(Ok(Msg::Close)).unwrap();
        tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .expect("the pump ends once the peer answered")
            .unwrap();
    }
}
