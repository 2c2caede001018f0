//! `sandpit bench`: the performance targets of issue 19, through the public
//! API, in one run.
//!
//! Rows (pick some with `--only`): `burst` — creates per second at
//! `--concurrency` (each to its first `run("true")`), p50/p99; `cold` —
//! create → first `run("true")` one at a time, beside `--reference` (e.g.
//! `podman run --rm ... true`) run the same number of times; `exec` — one
//! `run("true")` round trip on a ready sandbox; `pool` — create from a
//! template with a warm pool → first exec; `restart` — stop, then start →
//! first exec of a sandbox with files; `density` — `--density` idle
//! sandboxes, their host memory and the API's latency meanwhile (see
//! [`density`]); `stream` — `cat` of a large file over the exec WebSocket
//! beside the host's own `cat`. A table of the targets closes the output.
//! The Rust client is used, so the server, runtime and agent are what is
//! measured; memory readings need this command on the server's host.

mod burst;
mod density;
mod exec;
mod host;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sandpit_client::api::pools::CreatePoolRequest;
use sandpit_client::{Client, CreateOptions, CreateTemplateRequest, ExecOptions};

use super::connect::Connection;

const ROWS: [&str; 7] = [
    "burst", "cold", "exec", "pool", "restart", "density", "stream",
];

#[derive(Args)]
pub struct BenchArgs {
    /// Server and key: flags, LANGSMITH_ENDPOINT/LANGSMITH_API_KEY, or
    /// `sandpit login`'s.
    #[command(flatten)]
    conn: Connection,
    /// Iterations per latency measurement.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// A shell command to time the same number of times as a reference.
    #[arg(long)]
    reference: Option<String>,
    /// Size of the file `cat` streams through the data plane (0 skips it).
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
    /// Clients creating at once in the burst row.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Sandboxes the burst row creates in all.
    #[arg(long, default_value_t = 128)]
    burst: usize,
    /// Idle sandboxes the density row holds at once (0 skips it).
    #[arg(long, default_value_t = 50)]
    density: usize,
    /// Pid of `sandpit serve` for its RSS (default: the only one running).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The exec row's direct comparison: this agent socket instead of the
    /// sandbox's (e.g. an agent run by hand on the host).
    #[arg(long, hide = true)]
    agent_socket: Option<std::path::PathBuf>,
    /// Only these rows (comma-separated): burst, cold, exec, pool, restart,
    /// density, stream.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl BenchArgs {
    fn wants(&self, row: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|r| r == row)
    }
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

/// Warm pool → first exec: create from a template whose pool has a ready
/// sandbox, `run("true")`; then (untimed) delete it and wait for the refill.
async fn pool_to_first_exec(client: &Client, runs: usize) -> anyhow::Result<Summary> {
    let name = format!("bench-warm-{}", std::process::id());
    client
        .create_template(&CreateTemplateRequest {
            name: name.clone(),
            image: "host".into(),
            ..CreateTemplateRequest::default()
        })
        .await?;
    let created = client
        .create_pool(&CreatePoolRequest {
            name: name.clone(),
            template_name: name.clone(),
            replicas: 2,
            wait_for_ready: true,
            timeout: Some(120),
        })
        .await;
    let measured = match created {
        Ok(_) => pooled_runs(client, &name, runs).await,
        Err(e) => Err(e.into()),
    };
    let _ = client.delete_pool(&name).await;
    let _ = client.delete_template(&name).await;
    measured
}

async fn pooled_runs(client: &Client, pool: &str, runs: usize) -> anyhow::Result<Summary> {
    let options = CreateOptions {
        template_name: Some(pool.to_owned()),
        ..CreateOptions::default()
    };
    let mut samples = Vec::with_capacity(runs);
    let mut claims = Vec::with_capacity(runs);
    for _ in 0..runs {
        wait_pool_full(client, pool).await?;
        let t0 = Instant::now();
        let sandbox = client.create_sandbox(&options).await?;
        claims.push(t0.elapsed());
        let result = client.sandbox(&sandbox).run("true").await;
        samples.push(t0.elapsed());
        client.delete_sandbox(&sandbox.name).await?;
        anyhow::ensure!(result?.exit_code == 0, "`true` failed");
    }
    print_row("  of which the create (claim)", &summarize(claims));
    Ok(summarize(samples))
}

async fn wait_pool_full(client: &Client, pool: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = client.get_pool(pool).await?;
        if state.ready_replicas >= state.replicas {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "pool {pool} did not refill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stop, then start → first exec, of a sandbox holding files (a 1 MiB file
/// uploaded, one written by a command), read back each time.
async fn restart_to_first_exec(client: &Client, runs: usize) -> anyhow::Result<Summary> {
    let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
    let measured = async {
        let handle = client.sandbox(&sandbox);
        handle
            .upload("/home/user/data.bin", &[7u8; 1 << 20])
            .await?;
        let wrote = handle.run("echo kept > /home/user/note.txt").await?;
        anyhow::ensure!(wrote.exit_code == 0, "writing a file failed");
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            client.stop_sandbox(&sandbox.name).await?;
            let t0 = Instant::now();
            let started = client.start_sandbox(&sandbox.name).await?;
            let read = client
                .sandbox(&started)
                .run("cat /home/user/note.txt")
                .await?;
            samples.push(t0.elapsed());
            anyhow::ensure!(
                read.stdout.trim() == "kept",
                "the file did not survive a restart"
            );
        }
        let size = handle.run("stat -c %s /home/user/data.bin").await?;
        anyhow::ensure!(
            size.stdout.trim() == "1048576",
            "the upload did not survive"
        );
        Ok(summarize(samples))
    }
    .await;
    client.delete_sandbox(&sandbox.name).await?;
    measured
}

/// What each row measured, for the closing table of targets.
#[derive(Default)]
struct Measured {
    burst: Option<burst::Burst>,
    cold: Option<Summary>,
    reference: Option<Summary>,
    exec: Option<Summary>,
    pool: Option<Summary>,
    restart: Option<Summary>,
    density: Option<density::Density>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// The targets of issue 19 with this run's numbers.
fn print_targets(m: &Measured, concurrency: usize) {
    println!("\n| measure | target | this run | |");
    println!("| --- | --- | --- | --- |");
    if let Some(b) = &m.burst {
        let (p50, p99) = (ms(b.latency.p50), ms(b.latency.p99));
        let met = b.rate >= 50.0 && p99 <= 200.0 && concurrency >= 16;
        println!(
            "| creates/s at concurrency {concurrency}, each to first run(\"true\") | >= 50/s, p99 <= 200 ms | {:.1}/s, p50 {p50:.0} ms, p99 {p99:.0} ms | {} |",
            b.rate,
            verdict(met)
        );
    }
    if let Some(c) = &m.cold {
        let p50 = ms(c.p50);
        let ratio = m.reference.as_ref().map(|r| ms(r.p50) / p50);
        let shown = ratio.map_or("no reference".to_owned(), |r| {
            format!("{r:.1}x faster than the reference")
        });
        let met = p50 <= 25.0 && ratio.is_some_and(|r| r >= 10.0);
        println!(
            "| create -> first exec p50, cold | <= 25 ms and >= 10x podman | {p50:.1} ms, {shown} | {} |",
            verdict(met)
        );
    }
    if let Some(e) = &m.exec {
        let p50 = ms(e.p50);
        println!(
            "| run(\"true\") round trip p50 | <= 2 ms | {p50:.2} ms | {} |",
            verdict(p50 <= 2.0)
        );
    }
    if let Some(p) = &m.pool {
        let p50 = ms(p.p50);
        println!(
            "| warm pool -> first exec p50 | <= 5 ms | {p50:.1} ms | {} |",
            verdict(p50 <= 5.0)
        );
    }
    if let Some(d) = &m.density {
        let p99 = ms(d.api_loaded.p99);
        let met = d.n >= 2000 && d.per_sandbox_mib <= 2.0 && p99 <= 50.0;
        println!(
            "| idle sandboxes, host memory each, API p99 | >= 2000 at <= 2 MiB, p99 <= 50 ms | {} at {:.2} MiB, p99 {p99:.1} ms | {} |",
            d.n,
            d.per_sandbox_mib,
            if d.n < 2000 { "small form (run --density 2000)" } else { verdict(met) }
        );
    }
    if let Some(r) = &m.restart {
        let p50 = ms(r.p50);
        println!(
            "| stop/start with files: start -> first exec p50 | <= 40 ms | {p50:.1} ms | {} |",
            verdict(p50 <= 40.0)
        );
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    for row in &args.only {
        anyhow::ensure!(
            ROWS.contains(&row.as_str()),
            "unknown row {row:?}; rows: {}",
            ROWS.join(", ")
        );
    }
    let client = args.conn.client()?;
    let server = args.server_pid.or_else(host::find_server);
    if let Some(pid) = server {
        println!(
            "server pid {pid}, {} runtime helper(s)",
            host::helper_count(pid)
        );
    }
    let mut m = Measured::default();
    if args.wants("burst") {
        let b = burst::run(&client, args.concurrency, args.burst, server).await?;
        print_row(
            &format!(
                "burst: {} creates at concurrency {}",
                args.burst, args.concurrency
            ),
            &b.latency,
        );
        println!(
            "burst: {:.1} creates/s (each to its first run(\"true\"))",
            b.rate
        );
        if let Some((server, helpers, sandboxes)) = b.cpu {
            println!(
                "burst: CPU per create: server {server:.1} ms, runtime helpers {helpers:.1} ms, \
                 sandboxes {sandboxes:.1} ms = {:.1} ms ({} cores: at most {:.0} creates/s)",
                server + helpers + sandboxes,
                cores(),
                cores() as f64 * 1000.0 / (server + helpers + sandboxes).max(0.001)
            );
        }
        m.burst = Some(b);
    }
    if args.wants("cold") {
        let c = create_to_first_exec(&client, args.runs).await?;
        print_row("create -> first run(\"true\") complete", &c);
        m.cold = Some(c);
        if let Some(command) = &args.reference {
            let r = tokio::task::block_in_place(|| reference(command, args.runs))?;
            print_row("reference command", &r);
            println!("reference: {command}");
            m.reference = Some(r);
        }
    }
    if args.wants("exec") {
        let data_dir = server.and_then(host::data_dir);
        let e = exec::round_trips(
            &client,
            args.runs,
            data_dir.as_deref(),
            args.agent_socket.as_deref(),
        )
        .await?;
        print_row("run(\"true\") round trip (WebSocket)", &e.server);
        if let Some(agent) = &e.agent {
            print_row("  same, straight to the agent's socket", &agent.total);
            print_row("    connect + WebSocket handshake", &agent.handshake);
            print_row("    execute -> started (spawn)", &agent.spawn);
            print_row("    started -> exit (run, reap)", &agent.run);
        }
        m.exec = Some(e.server);
    }
    if args.wants("pool") {
        let p = pool_to_first_exec(&client, args.runs).await?;
        print_row("warm pool -> first run(\"true\")", &p);
        m.pool = Some(p);
    }
    if args.wants("restart") {
        let r = restart_to_first_exec(&client, args.runs.min(30)).await?;
        print_row("stop; start -> first run (files kept)", &r);
        m.restart = Some(r);
    }
    if args.wants("density") && args.density > 0 {
        m.density = Some(density::run(&client, args.density, server).await?);
    }
    if args.wants("stream") && args.stream_mib > 0 {
        let (best, median) = stream_throughput(&client, args.stream_mib).await?;
        println!("cat of {} MiB over the exec WebSocket        best={best:>7.0} MB/s  median={median:>7.0} MB/s", args.stream_mib);
        let (best, median) = tokio::task::block_in_place(|| host_cat_throughput(args.stream_mib))?;
        println!("host cat of the same file into a pipe (floor)  best={best:>7.0} MB/s  median={median:>7.0} MB/s");
    }
    print_targets(&m, args.concurrency);
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
