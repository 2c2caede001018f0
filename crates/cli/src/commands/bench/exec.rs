//! The `exec` row: one `run("true")` round trip on a ready sandbox, through
//! the server and, when this command runs on the server's host, straight to
//! the sandbox agent's unix socket in the same loop, so the server's share of
//! the round trip shows beside the agent's and the command's.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use sandpit_client::api::exec::{ClientMessage, ExecuteRequest, ServerMessage};
use sandpit_client::{Client, CreateOptions, SandboxHandle};
use tokio_tungstenite::tungstenite::Message;

use super::{summarize, Summary};

/// Round trips through the server, and straight to the agent if its socket
/// is under `data_dir`.
pub struct Exec {
    pub server: Summary,
    pub agent: Option<Direct>,
}

/// The direct round trips and their phases.
pub struct Direct {
    pub total: Summary,
    /// Unix connect and WebSocket handshake.
    pub handshake: Summary,
    /// `execute` sent → `started` received (the command is spawned).
    pub spawn: Summary,
    /// `started` → `exit` (the command runs and is reaped).
    pub run: Summary,
}

/// One direct round trip's phases.
#[derive(Default)]
struct Phases {
    handshake: Duration,
    spawn: Duration,
    run: Duration,
}

pub async fn round_trips(
    client: &Client,
    runs: usize,
    data_dir: Option<&Path>,
    agent_socket: Option<&Path>,
) -> anyhow::Result<Exec> {
    let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
    let handle = client.sandbox(&sandbox);
    let socket = agent_socket.map(Path::to_path_buf).or_else(|| {
        data_dir
            .map(|d| d.join("run").join(format!("{}.sock", sandbox.id)))
            .filter(|s| s.exists())
    });
    let measured = measure(&handle, socket.as_deref(), runs).await;
    client.delete_sandbox(&sandbox.name).await?;
    measured
}

async fn measure(
    handle: &SandboxHandle,
    socket: Option<&Path>,
    runs: usize,
) -> anyhow::Result<Exec> {
    for _ in 0..5 {
        handle.run("true").await?;
    }
    let mut server = Vec::with_capacity(runs);
    let mut agent: Vec<Phases> = Vec::with_capacity(runs);
    // Interleaved, so load changes hit both paths alike.
    for _ in 0..runs {
        let t0 = Instant::now();
        let result = handle.run("true").await?;
        server.push(t0.elapsed());
        anyhow::ensure!(result.exit_code == 0, "`true` failed");
        if let Some(socket) = socket {
            agent.push(direct(socket).await?);
        }
    }
    let direct = (!agent.is_empty()).then(|| Direct {
        total: summarize(
            agent
                .iter()
                .map(|p| p.handshake + p.spawn + p.run)
                .collect(),
        ),
        handshake: summarize(agent.iter().map(|p| p.handshake).collect()),
        spawn: summarize(agent.iter().map(|p| p.spawn).collect()),
        run: summarize(agent.iter().map(|p| p.run).collect()),
    });
    Ok(Exec {
        server: summarize(server),
        agent: direct,
    })
}

/// One `true` over the agent's own socket: what the agent and the command
/// cost without the server.
async fn direct(socket: &Path) -> anyhow::Result<Phases> {
    let mut phases = Phases::default();
    let t0 = Instant::now();
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut ws, _) = tokio_tungstenite::client_async("ws://sandbox/execute/ws", stream).await?;
    let t1 = Instant::now();
    phases.handshake = t1 - t0;
    let start = ClientMessage::Execute(Box::new(ExecuteRequest {
        shell: Some("/bin/bash".into()),
        ..ExecuteRequest::new("true")
    }));
    ws.send(Message::text(serde_json::to_string(&start)?))
        .await?;
    let mut started = None;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        match serde_json::from_str(&text)? {
            ServerMessage::Started { .. } => started = Some(Instant::now()),
            ServerMessage::Exit { exit_code } => {
                anyhow::ensure!(exit_code == 0, "`true` failed");
                let t2 = started.context("exit before started")?;
                phases.spawn = t2 - t1;
                phases.run = t2.elapsed();
                return Ok(phases);
            }
            _ => {}
        }
    }
    anyhow::bail!("the agent closed before the exit message")
}
