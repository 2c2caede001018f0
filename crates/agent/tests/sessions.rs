//! Session lifecycle: reconnect from offsets, TTL, idle timeout,
//! kill-on-disconnect, retained-output bounds, backpressure, and the SSE
//! transport.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{alive, eventually, Agent, Run};
use serde_json::{json, Value};

/// The agent's ring size per stream (see `session::RING_BYTES`).
const RING_BYTES: u64 = 8 * 1024 * 1024;

/// Lines `L0001\n`..`L{n}\n` printed with a pause between them.
fn numbered_lines(n: usize, pause: &str) -> (String, String) {
    let command =
        format!("for i in $(seq -f %04g 1 {n}); do echo L$i; echo E$i >&2; sleep {pause}; done");
    let expected = (1..=n).map(|i| format!("L{i:04}\n")).collect();
    (command, expected)
}

#[tokio::test]
async fn reconnect_resumes_exactly_where_the_client_left_off() {
    let agent = Agent::start();
    let (command, expected) = numbered_lines(30, "0.02");
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": command, "command_id": "resume-me"}))
        .await;
    ws.started().await;
    let mut first = Run::default();
    while first.stdout.len() < 5 * 6 {
        first.push(ws.recv().await.expect("output"));
    }
    let (out_offset, err_offset) = (first.stdout.len() as u64, first.stderr.len() as u64);
    ws.close().await;

    let mut ws = agent.ws().await;
    ws.reconnect("resume-me", out_offset, err_offset).await;
    let started = ws.started().await;
    assert_eq!(started["command_id"], "resume-me");
    let rest = ws.collect().await;
    assert_eq!(rest.exit_code, Some(0));
    rest.assert_contiguous("stdout", out_offset);
    rest.assert_contiguous("stderr", err_offset);
    assert_eq!(
        first.stdout + &rest.stdout,
        expected,
        "no loss, no repetition"
    );
    let expected_err: String = (1..=30).map(|i| format!("E{i:04}\n")).collect();
    assert_eq!(first.stderr + &rest.stderr, expected_err);
}

#[tokio::test]
async fn reconnect_after_exit_replays_from_any_offset() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": r"printf 'abc\342\202\254def'", "command_id": "done"}))
        .await;
    assert_eq!(run.stdout, "abc€def");
    for (offset, expected) in [(0, "abc€def"), (3, "€def"), (6, "def"), (9, "")] {
        let mut ws = agent.ws().await;
        ws.reconnect("done", offset, 0).await;
        ws.started().await;
        let rest = ws.collect().await;
        assert_eq!(rest.stdout, expected, "from offset {offset}");
        rest.assert_contiguous("stdout", offset);
        assert_eq!(rest.exit_code, Some(0));
    }
}

#[tokio::test]
async fn unknown_and_expired_commands() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.reconnect("never-existed", 0, 0).await;
    let run = ws.collect().await;
    assert_eq!(run.error.expect("error")["error_type"], "CommandNotFound");

    let run = agent
        .run(json!({"command": "echo hi", "command_id": "short", "ttl_seconds": 1}))
        .await;
    assert_eq!(run.stdout, "hi\n");
    let mut ws = agent.ws().await;
    ws.reconnect("short", 0, 0).await;
    assert_eq!(
        ws.collect().await.stdout,
        "hi\n",
        "still there within the TTL"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ws = agent.ws().await;
    ws.reconnect("short", 0, 0).await;
    let run = ws.collect().await;
    assert_eq!(run.error.expect("error")["error_type"], "SessionExpired");
}

#[tokio::test]
async fn idle_timeout_kills_unattended_commands() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 30", "command_id": "idle", "idle_timeout_seconds": 1}))
        .await;
    let pid = ws.started().await["pid"].as_i64().expect("pid") as i32;
    ws.close().await;
    let detached = Instant::now();
    eventually("idle command killed", || !alive(pid)).await;
    assert!(detached.elapsed() >= Duration::from_millis(900));
    let mut ws = agent.ws().await;
    ws.reconnect("idle", 0, 0).await;
    ws.started().await;
    assert_eq!(ws.collect().await.exit_code, Some(137));
}

#[tokio::test]
async fn attaching_resets_the_idle_timer() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(
        json!({"command": "sleep 2.5; echo survived", "command_id": "kept",
        "idle_timeout_seconds": 1}),
    )
    .await;
    ws.started().await;
    ws.close().await;
    // Reattach every 0.6 s: never idle for a whole second.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut ws = agent.ws().await;
        ws.reconnect("kept", 0, 0).await;
        ws.started().await;
        ws.close().await;
    }
    let mut ws = agent.ws().await;
    ws.reconnect("kept", 0, 0).await;
    ws.started().await;
    let run = ws.collect().await;
    assert_eq!(run.stdout, "survived\n");
}

#[tokio::test]
async fn negative_idle_timeout_never_kills() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(
        json!({"command": "sleep 1.5; echo fine", "command_id": "forever",
        "idle_timeout_seconds": -1}),
    )
    .await;
    ws.started().await;
    ws.close().await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let mut ws = agent.ws().await;
    ws.reconnect("forever", 0, 0).await;
    ws.started().await;
    assert_eq!(ws.collect().await.stdout, "fine\n");
}

#[tokio::test]
async fn kill_on_disconnect() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 30", "command_id": "kod", "kill_on_disconnect": true}))
        .await;
    let pid = ws.started().await["pid"].as_i64().expect("pid") as i32;
    // A second client keeps it alive; the last one leaving kills it.
    let mut other = agent.ws().await;
    other.reconnect("kod", 0, 0).await;
    other.started().await;
    ws.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(pid), "killed while a client was still attached");
    other.close().await;
    eventually("killed after the last client left", || !alive(pid)).await;
}

#[tokio::test]
async fn unattended_output_keeps_only_the_ring() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(
        json!({"command": "sleep 0.3; head -c 20000000 /dev/zero | tr '\\0' a; echo END",
        "command_id": "flood"}),
    )
    .await;
    ws.started().await;
    ws.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ws = agent.ws().await;
    ws.reconnect("flood", 0, 0).await;
    ws.started().await;
    let run = ws.collect().await;
    assert_eq!(run.exit_code, Some(0));
    let first = run
        .messages
        .iter()
        .find(|m| m["type"] == "stdout")
        .expect("output");
    let start = first["offset"].as_u64().expect("offset");
    let end = run.assert_contiguous("stdout", start);
    assert_eq!(end, 20_000_004);
    assert!(start > 0, "the oldest output should have been dropped");
    assert!(end - start <= RING_BYTES, "kept {} bytes", end - start);
    assert!(end - start > RING_BYTES / 2);
    assert!(run.stdout.ends_with("aaaEND\n"));
}

#[tokio::test]
async fn slow_client_gets_everything_with_bounded_memory() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    let total: u64 = 200_000_000;
    // One long line: the same bytes as `yes | head -c`, far cheaper to escape
    // in a debug build.
    let command = format!("head -c {total} /dev/zero | tr '\\0' y");
    ws.execute(json!({ "command": command })).await;
    ws.started().await;
    let mut next = 0u64;
    let mut max_rss = 0u64;
    loop {
        let text = ws.recv_text().await.expect("message before close");
        let Some((offset, len)) = plain_chunk(&text) else {
            let msg: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(msg["type"], "exit", "unexpected {msg}");
            break;
        };
        assert_eq!(offset, next, "every byte, in order");
        next += len;
        // Dawdle for the first ~30 MB so the agent has to hold back.
        if next < 30_000_000 {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        max_rss = max_rss.max(rss_bytes(agent.pid()));
    }
    assert_eq!(next, total, "every byte");
    assert!(
        max_rss < 100 * 1024 * 1024,
        "agent RSS reached {max_rss} bytes"
    );
}

/// Offset and decoded length of a stdout chunk of escape-free output, read
/// without a full JSON parse (which is slow in debug builds).
fn plain_chunk(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(r#"{"type":"stdout","data":""#)?;
    let (data, offset) = rest.rsplit_once(r#"","offset":"#)?;
    let offset = offset.strip_suffix('}')?.parse().ok()?;
    Some((offset, data.len() as u64))
}

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Parses an SSE body into (event, data) pairs.
fn sse_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((event?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

fn decode(data: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(data.as_str().expect("base64 data"))
        .expect("valid base64")
}

#[tokio::test]
async fn sse_start_streams_base64_chunks_then_exit() {
    let agent = Agent::start();
    let response = agent
        .post_json(
            "/execute/stream/start",
            json!({"command": r"echo out; echo err >&2; printf '\377'; exit 5",
            "command_id": "sse1", "shell": "/bin/bash", "timeout_seconds": 10,
            "idle_timeout_seconds": 300, "ttl_seconds": 600}),
        )
        .await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .expect("type")
        .starts_with("text/event-stream"));
    let events = sse_events(&response.body);
    assert_eq!(events[0].0, "started");
    assert_eq!(events[0].1["command_id"], "sse1");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for (event, data) in &events {
        match event.as_str() {
            "stdout" => {
                assert_eq!(data["offset"].as_u64(), Some(stdout.len() as u64));
                stdout.extend(decode(&data["data"]));
            }
            "stderr" => stderr.extend(decode(&data["data"])),
            _ => {}
        }
    }
    assert_eq!(stdout, "out\n\u{FFFD}".as_bytes());
    assert_eq!(stderr, b"err\n");
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.iter().filter(|e| **e == "stream_end").count(), 2);
    assert_eq!(events.last().expect("events").0, "exit");
    assert_eq!(events.last().expect("events").1["exit_code"], 5);
    let end = events
        .iter()
        .find(|(e, d)| e == "stream_end" && d["stream"] == "stdout");
    assert_eq!(end.expect("stdout end").1["offset"], 7);

    let response = agent
        .post_json(
            "/execute/stream/resume",
            json!({"command_id": "sse1", "stdout_offset": 4, "stderr_offset": 4}),
        )
        .await;
    let events = sse_events(&response.body);
    assert_eq!(events[0].0, "started");
    let chunk = events.iter().find(|(e, _)| e == "stdout").expect("stdout");
    assert_eq!(chunk.1["offset"], 4);
    assert_eq!(decode(&chunk.1["data"]), "\u{FFFD}".as_bytes());
    assert_eq!(events.last().expect("events").0, "exit");
}

#[tokio::test]
async fn sse_errors() {
    let agent = Agent::start();
    let response = agent
        .post_json(
            "/execute/stream/resume",
            json!({"command_id": "nope", "stdout_offset": 0, "stderr_offset": 0}),
        )
        .await;
    assert_eq!(response.status, 404);
    assert_eq!(response.error_kind(), "CommandNotFound");

    let response = agent
        .post_json(
            "/execute/stream/start",
            json!({"command": "sleep 5", "command_id": "slow", "timeout_seconds": 1}),
        )
        .await;
    let events = sse_events(&response.body);
    let (event, data) = events.last().expect("events");
    assert_eq!(event, "error");
    assert_eq!(data["error_type"], "CommandTimeout");

    let response = agent
        .post_json(
            "/execute/stream/start",
            json!({"command": "true", "cwd": "/no/such/dir"}),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error_kind(), "CommandError");
}

#[tokio::test]
async fn sse_asks_for_an_ack_every_mib() {
    let agent = Agent::start();
    let response = agent
        .post_json(
            "/execute/stream/start",
            json!({"command": "head -c 30000000 /dev/zero | tr '\\0' a",
            "command_id": "big"}),
        )
        .await;
    let mut events = sse_events(&response.body);
    let mut received = 0u64;
    let mut resumes = 0;
    loop {
        let mut ack = None;
        for (event, data) in &events {
            match event.as_str() {
                "stdout" => {
                    assert_eq!(data["offset"].as_u64(), Some(received));
                    received += decode(&data["data"]).len() as u64;
                }
                "ack_required" => ack = Some(data.clone()),
                _ => {}
            }
        }
        let Some(ack) = ack else { break };
        assert_eq!(ack["stdout_offset"].as_u64(), Some(received));
        resumes += 1;
        // Come back late: the unacknowledged output must still be there
        // although the command could have overwritten the ring meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = agent
            .post_json(
                "/execute/stream/resume",
                json!({"command_id": "big",
                "stdout_offset": received, "stderr_offset": ack["stderr_offset"]}),
            )
            .await;
        events = sse_events(&response.body);
    }
    assert_eq!(received, 30_000_000);
    // One acknowledgement per MiB, as LangSmith asks (issue 17).
    assert!(resumes >= 28, "only {resumes} acks for 30 MB");
    assert_eq!(events.last().expect("events").0, "exit");
}
