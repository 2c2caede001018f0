//! Rough performance checks, ignored by default. Run in release:
//!
//! ```text
//! cargo test -p sandpit-agent --release --test bench -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark"]
async fn ws_true_round_trip_latency() {
    let agent = Agent::start();
    let mut phases = Vec::new();
    for _ in 0..100 {
        let t0 = Instant::now();
        let mut ws = agent.ws().await;
        let t1 = t0.elapsed();
        ws.execute(json!({"command": "true"})).await;
        ws.started().await;
        let t2 = t0.elapsed();
        let msg = ws.recv().await;
        let t3 = t0.elapsed();
        let _ = ws.recv().await;
        let t4 = t0.elapsed();
        assert_eq!(msg.expect("exit")["type"], "exit");
        phases.push((t1, t2, t3, t4));
    }
    phases.sort_by_key(|p| p.3);
    println!("connect/started/exit/closed p50: {:?}", phases[50]);
    println!("connect/started/exit/closed p90: {:?}", phases[90]);
    let mut samples = Vec::new();
    for _ in 0..300 {
        let begun = Instant::now();
        let run = agent.run(json!({"command": "true"})).await;
        samples.push(begun.elapsed());
        assert_eq!(run.exit_code, Some(0));
    }
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "run(\"true\") over WS: p50 {:?} p90 {:?} p99 {:?}",
        pct(50),
        pct(90),
        pct(99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark"]
async fn ws_cat_throughput() {
    let agent = Agent::start();
    let size: u64 = 1 << 30;
    let file = agent.dir.path().join("big.txt");
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-\n".repeat(1024);
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        for _ in 0..size / line.len() as u64 {
            out.write_all(line.as_bytes()).expect("write");
        }
    }
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": format!("cat {}", file.display())}))
        .await;
    ws.started().await;
    let begun = Instant::now();
    let mut frame_bytes = 0u64;
    let mut exit = None;
    while let Some(Ok(message)) = ws.0.next().await {
        match message {
            Message::Text(text) if text.len() > 1024 => frame_bytes += text.len() as u64,
            Message::Text(text) => {
                let msg: serde_json::Value = serde_json::from_str(&text).expect("json");
                if msg["type"] == "exit" {
                    exit = msg["exit_code"].as_i64();
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let elapsed = begun.elapsed().max(Duration::from_millis(1));
    assert_eq!(exit, Some(0));
    let mb = size as f64 / 1e6;
    println!(
        "cat 1 GiB over WS: {:.0} MB/s ({} frame bytes in {:?}); agent CPU {:.2} s",
        mb / elapsed.as_secs_f64(),
        frame_bytes,
        elapsed,
        cpu_seconds(agent.pid())
    );
}

/// User plus system CPU time of a process so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf takes an integer name and touches no memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// The brief's memory check with the real `yes` (newline-heavy, so every
/// other byte is escaped): too slow for a debug build, so it lives here.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark"]
async fn yes_200_mb_with_bounded_memory() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "yes | head -c 200000000"}))
        .await;
    ws.started().await;
    let mut next = 0u64;
    let mut max_rss_kb = 0u64;
    let begun = Instant::now();
    loop {
        let msg = ws.recv().await.expect("message before close");
        if msg["type"] == "exit" {
            break;
        }
        assert_eq!(msg["offset"].as_u64(), Some(next));
        next += msg["data"].as_str().expect("data").len() as u64;
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap_or("0 kB");
        max_rss_kb = max_rss_kb.max(
            rss.trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0),
        );
    }
    assert_eq!(next, 200_000_000);
    println!(
        "yes | head -c 200 MB: {:?}, agent max RSS {} MiB",
        begun.elapsed(),
        max_rss_kb / 1024
    );
    assert!(max_rss_kb < 100 * 1024);
}
