//! `sandpit bench`: latency figures through the public API.
//!
//! Measures, over `--runs` iterations each, (a) create → first `run("true")`
//! complete and (b) one `run("true")` round trip on a ready sandbox, with the
//! Rust client (so the server, runtime and agent are what is measured), and
//! optionally a reference command run the same number of times (e.g.
//! `podman run --rm ... true`). Prints p50/p90/p99 in milliseconds.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sandpit_client::{Client, CreateOptions};

#[derive(Args)]
pub struct BenchArgs {
    /// Server base URL (`LANGSMITH_ENDPOINT` works too; a trailing /api is fine).
    #[arg(
        long,
        env = "LANGSMITH_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: String,
    #[arg(long, env = "LANGSMITH_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Iterations per measurement.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// A shell command to time the same number of times as a reference.
    #[arg(long)]
    reference: Option<String>,
}

/// Percentiles of a set of durations.
struct Summary {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    n: usize,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| {
        let rank = ((samples.len() as f64) * q).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    Summary {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        n: samples.len(),
    }
}

fn print_row(label: &str, s: &Summary) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<44} n={:<4} p50={:>8.2} ms  p90={:>8.2} ms  p99={:>8.2} ms",
        s.n,
        ms(s.p50),
        ms(s.p90),
        ms(s.p99)
    );
}

async fn create_to_first_exec(client: &Client, runs: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
        let result = client.sandbox(&sandbox).run("true").await;
        samples.push(t0.elapsed());
        client.delete_sandbox(&sandbox.name).await?;
        anyhow::ensure!(result?.exit_code == 0, "`true` failed");
    }
    Ok(summarize(samples))
}

async fn exec_round_trip(client: &Client, runs: usize) -> anyhow::Result<Summary> {
    let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
    let handle = client.sandbox(&sandbox);
    let measured = async {
        for _ in 0..5 {
            handle.run("true").await?;
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = Instant::now();
            let result = handle.run("true").await?;
            samples.push(t0.elapsed());
            anyhow::ensure!(result.exit_code == 0, "`true` failed");
        }
        Ok(summarize(samples))
    }
    .await;
    client.delete_sandbox(&sandbox.name).await?;
    measured
}

fn reference(command: &str, runs: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let status = std::process::Command::new("sh")
            .args(["-c", command])
            .status()
            .context("running the reference command")?;
        samples.push(t0.elapsed());
        anyhow::ensure!(status.success(), "reference command failed: {status}");
    }
    Ok(summarize(samples))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint, &args.api_key)?;
    let a = create_to_first_exec(&client, args.runs).await?;
    print_row("create -> first run(\"true\") complete", &a);
    let b = exec_round_trip(&client, args.runs).await?;
    print_row("run(\"true\") round trip (WebSocket)", &b);
    if let Some(command) = &args.reference {
        let r = tokio::task::block_in_place(|| reference(command, args.runs))?;
        print_row("reference command", &r);
        println!("reference: {command}");
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(samples);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.n),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                100
            )
        );
        let one = summarize(vec![Duration::from_millis(7)]);
        assert_eq!(one.p99, Duration::from_millis(7));
    }
}
