//! `sandpit bench`: latency figures through the public API.
//!
//! Measures, over `--runs` iterations each, (a) create → first `run("true")`
//! complete and (b) one `run("true")` round trip on a ready sandbox, with the
//! Rust client (so the server, runtime and agent are what is measured), and
//! optionally a reference command run the same number of times (e.g.
//! `podman run --rm ... true`). Prints p50/p90/p99 in milliseconds. Then
//! (c) the throughput of `cat` of a large file streamed over the exec
//! WebSocket, beside the host's own `cat` into a pipe as the floor.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sandpit_client::{Client, CreateOptions, ExecOptions};

use super::connect::Connection;

#[derive(Args)]
pub struct BenchArgs {
    /// Server and key: flags, LANGSMITH_ENDPOINT/LANGSMITH_API_KEY, or
    /// `sandpit login`'s.
    #[command(flatten)]
    conn: Connection,
    /// Iterations per measurement.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// A shell command to time the same number of times as a reference.
    #[arg(long)]
    reference: Option<String>,
    /// Size of the file `cat` streams through the data plane (0 skips it).
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
}

/// Text the streaming benchmark cats (JSON-escaping free, like most output).
const STREAM_LINE: &str =
    "sandpit streaming benchmark: the quick brown fox jumps over the lazy dog";
const STREAM_REPEATS: usize = 3;

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

/// MB/s of `cat` of a `mib` MiB file inside a sandbox, streamed to this
/// client over the exec WebSocket; best and median of a few runs.
async fn stream_throughput(client: &Client, mib: u64) -> anyhow::Result<(f64, f64)> {
    let sandbox = client
        .create_sandbox(&CreateOptions {
            mem_bytes: Some(2 << 30),
            ..CreateOptions::default()
        })
        .await?;
    let handle = client.sandbox(&sandbox);
    let measured = async {
        let bytes = mib << 20;
        let make = format!("yes '{STREAM_LINE}' | head -c {bytes} > /home/user/stream.txt");
        anyhow::ensure!(
            handle.run(&make).await?.exit_code == 0,
            "creating the stream file failed"
        );
        let options = ExecOptions {
            timeout_seconds: 600,
            ..ExecOptions::default()
        };
        let mut rates = Vec::new();
        for _ in 0..STREAM_REPEATS {
            let mut received = 0u64;
            let t0 = Instant::now();
            let code = handle
                .run_streaming("cat /home/user/stream.txt", &options, |_, data| {
                    received += data.len() as u64
                })
                .await?;
            let elapsed = t0.elapsed();
            anyhow::ensure!(
                code == 0 && received == bytes,
                "cat streamed {received} of {bytes} bytes"
            );
            rates.push(bytes as f64 / elapsed.as_secs_f64() / 1e6);
        }
        Ok(best_and_median(rates))
    }
    .await;
    client.delete_sandbox(&sandbox.name).await?;
    measured
}

/// MB/s of the host's own `cat` of the same content into a pipe: the floor.
fn host_cat_throughput(mib: u64) -> anyhow::Result<(f64, f64)> {
    use std::io::Read;
    let bytes = mib << 20;
    let path = std::env::temp_dir().join(format!("sandpit-bench-{}.txt", std::process::id()));
    let make = format!("yes '{STREAM_LINE}' | head -c {bytes} > {}", path.display());
    let status = std::process::Command::new("sh")
        .args(["-c", &make])
        .status()?;
    anyhow::ensure!(status.success(), "creating the host file failed");
    let mut rates = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..STREAM_REPEATS {
        let t0 = Instant::now();
        let mut child = std::process::Command::new("cat")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut out = child.stdout.take().context("cat stdout")?;
        let mut received = 0u64;
        loop {
            let n = out.read(&mut buf)?;
            if n == 0 {
                break;
            }
            received += n as u64;
        }
        child.wait()?;
        anyhow::ensure!(
            received == bytes,
            "host cat read {received} of {bytes} bytes"
        );
        rates.push(bytes as f64 / t0.elapsed().as_secs_f64() / 1e6);
    }
    let _ = std::fs::remove_file(&path);
    Ok(best_and_median(rates))
}

fn best_and_median(mut rates: Vec<f64>) -> (f64, f64) {
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() - 1], rates[rates.len() / 2])
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
    let client = args.conn.client()?;
    let a = create_to_first_exec(&client, args.runs).await?;
    print_row("create -> first run(\"true\") complete", &a);
    let b = exec_round_trip(&client, args.runs).await?;
    print_row("run(\"true\") round trip (WebSocket)", &b);
    if let Some(command) = &args.reference {
        let r = tokio::task::block_in_place(|| reference(command, args.runs))?;
        print_row("reference command", &r);
        println!("reference: {command}");
    }
    if args.stream_mib > 0 {
        let (best, median) = stream_throughput(&client, args.stream_mib).await?;
        println!("cat of {} MiB over the exec WebSocket        best={best:>7.0} MB/s  median={median:>7.0} MB/s", args.stream_mib);
        let (best, median) = tokio::task::block_in_place(|| host_cat_throughput(args.stream_mib))?;
        println!("host cat of the same file into a pipe (floor)  best={best:>7.0} MB/s  median={median:>7.0} MB/s");
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
