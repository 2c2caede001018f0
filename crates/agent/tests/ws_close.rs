//! No exec WebSocket is left half-open: whatever state the command and the
//! other sockets are in, a client's close frame is answered at once, and the
//! agent closes a socket itself once it has nothing more to say (issue 22).

mod common;

use std::time::Duration;

use common::{alive, eventually, signal, Agent, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Far below the SDK's close timeouts, far above a local round trip.
const PROMPT: Duration = Duration::from_secs(1);

/// The issue's command: 20 lines over two seconds.
const LINES: &str = "for i in $(seq 1 20); do echo line$i; sleep 0.1; done";

/// How a socket ended, as the client saw it.
#[derive(Debug)]
struct Closed {
    /// The server's close frame (code, reason), if one came.
    frame: Option<(u16, String)>,
    /// Text messages read before it.
    messages: usize,
}

/// Reads until the server has closed the connection (its close frame, then
/// the end of the stream); fails if that takes longer than `limit`.
async fn read_to_end(ws: &mut Ws, limit: Duration) -> Closed {
    let deadline = Instant::now() + limit;
    let mut closed = Closed {
        frame: None,
        messages: 0,
    };
    loop {
        let next = tokio::time::timeout_at(deadline, ws.0.next())
            .await
            .unwrap_or_else(|_| panic!("connection still open after {limit:?}: {closed:?}"));
        match next {
            Some(Ok(Message::Close(frame))) => {
                closed.frame = Some(frame.map_or((1005, String::new()), |f| {
                    (f.code.into(), f.reason.to_string())
                }))
            }
            Some(Ok(Message::Text(_))) => closed.messages += 1,
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return closed,
        }
    }
}

/// Sends a close frame and checks that the server answers it (with a close
/// frame of its own) and ends the connection within [`PROMPT`].
async fn close_promptly(ws: &mut Ws) -> Closed {
    let started = Instant::now();
    ws.0.send(Message::Close(None)).await.expect("send close");
    let closed = read_to_end(ws, PROMPT).await;
    assert!(
        closed.frame.is_some(),
        "the close frame was not answered: {closed:?}"
    );
    assert!(started.elapsed() < PROMPT);
    closed
}

#[tokio::test]
async fn a_reconnect_takes_the_command_over_and_closes_the_old_socket() {
    let agent = Agent::start();
    let mut first = agent.ws().await;
    first
        .execute(json!({"command": LINES, "command_id": "taken"}))
        .await;
    first.started().await;
    let mut second = agent.ws().await;
    second.reconnect("taken", 0, 0).await;
    second.started().await;
    // The old socket is closed by the agent right away, long before the
    // command ends, with a code and reason that say why.
    let closed = read_to_end(&mut first, PROMPT).await;
    assert_eq!(
        closed.frame.as_ref().map(|(code, _)| *code),
        Some(4000),
        "{closed:?}"
    );
    assert!(
        closed
            .frame
            .as_ref()
            .is_some_and(|(_, r)| r.contains("superseded")),
        "{closed:?}"
    );
    // The new one gets everything and the exit.
    let run = second.collect().await;
    assert_eq!(run.exit_code, Some(0));
    let expected: String = (1..=20).map(|i| format!("line{i}\n")).collect();
    assert_eq!(run.stdout, expected);
}

#[tokio::test]
async fn the_issue_sequence_closes_the_first_socket_at_once() {
    // As reported: read the second socket to `exit`, and only then close the
    // first one (which nobody read meanwhile).
    let agent = Agent::start();
    let mut first = agent.ws().await;
    first.execute(json!({"command": LINES})).await;
    let id = first.started().await["command_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut second = agent.ws().await;
    second.reconnect(&id, 0, 0).await;
    assert_eq!(second.collect().await.exit_code, Some(0));
    let started = Instant::now();
    let _ = first.0.send(Message::Close(None)).await;
    let closed = read_to_end(&mut first, PROMPT).await;
    assert!(started.elapsed() < PROMPT);
    assert_eq!(closed.frame.map(|(code, _)| code), Some(4000));
    // Superseded early: the old socket did not get the whole output.
    assert!(closed.messages < 20, "{} messages", closed.messages);
}

#[tokio::test]
async fn a_close_is_answered_at_once_while_the_command_runs() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 30"})).await;
    ws.started().await;
    close_promptly(&mut ws).await;
}

#[tokio::test]
async fn a_close_is_answered_before_the_first_message() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    close_promptly(&mut ws).await;
}

#[tokio::test]
async fn a_finished_command_nobody_read_still_answers_a_close() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "echo done"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = close_promptly(&mut ws).await;
    // started, stdout, exit: nothing lost.
    assert_eq!(closed.messages, 3, "{closed:?}");
}

#[tokio::test]
async fn the_agent_closes_after_exit_by_itself() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "echo done"})).await;
    let closed = read_to_end(&mut ws, PROMPT).await;
    assert_eq!(closed.frame.map(|(code, _)| code), Some(1000));
}

#[tokio::test]
async fn a_client_that_goes_away_is_detached() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 30", "kill_on_disconnect": true}))
        .await;
    let pid = ws.started().await["pid"].as_i64().expect("pid") as i32;
    // No close frame: the connection just ends.
    drop(ws);
    eventually("the command of a vanished client killed", || !alive(pid)).await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_going_away() {
    let mut agent = Agent::start();
    let mut running = agent.ws().await;
    running.execute(json!({"command": "sleep 30"})).await;
    running.started().await;
    let mut waiting = agent.ws().await;
    signal(agent.pid(), libc::SIGTERM);
    for ws in [&mut running, &mut waiting] {
        let closed = read_to_end(ws, PROMPT).await;
        assert_eq!(
            closed.frame.as_ref().map(|(code, _)| *code),
            Some(1001),
            "{closed:?}"
        );
    }
    assert!(agent.terminate().success());
}
