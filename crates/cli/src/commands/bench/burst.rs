//! Creates in a burst: `concurrency` clients, each creating a sandbox and
//! running `true` in it, until `total` sandboxes were made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandpit_client::{Client, CreateOptions};
use tokio::task::JoinSet;

use super::host::Cpu;
use super::{summarize, Summary};

pub struct Burst {
    /// Creates per second over the whole burst.
    pub rate: f64,
    /// Each create → first `run("true")` complete.
    pub latency: Summary,
    /// CPU milliseconds per create: server, runtime helpers, sandboxes.
    pub cpu: Option<(f64, f64, f64)>,
}

/// Runs the burst, then deletes what it made (not timed).
pub async fn run(
    client: &Client,
    concurrency: usize,
    total: usize,
    server: Option<u32>,
) -> anyhow::Result<Burst> {
    let cpu0 = server.map(Cpu::read);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next) = (client.clone(), next.clone());
        workers.spawn(async move { worker(&client, &next, total).await });
    }
    let mut samples = Vec::with_capacity(total);
    let mut names = Vec::with_capacity(total);
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined? {
            (made, Ok(())) => extend(&mut samples, &mut names, made),
            (made, Err(err)) => {
                extend(&mut samples, &mut names, made);
                failure.get_or_insert(err);
            }
        }
    }
    let wall = t0.elapsed();
    let cpu = server
        .zip(cpu0)
        .map(|(pid, before)| Cpu::read(pid).per(&before, samples.len().max(1)));
    delete_all(client, names, concurrency).await?;
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(Burst {
        rate: samples.len() as f64 / wall.as_secs_f64(),
        latency: summarize(samples),
        cpu,
    })
}

type Made = Vec<(Duration, String)>;

fn extend(samples: &mut Vec<Duration>, names: &mut Vec<String>, made: Made) {
    for (elapsed, name) in made {
        samples.push(elapsed);
        names.push(name);
    }
}

async fn worker(client: &Client, next: &AtomicUsize, total: usize) -> (Made, anyhow::Result<()>) {
    let mut made = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let t0 = Instant::now();
        let sandbox = match client.create_sandbox(&CreateOptions::default()).await {
            Ok(s) => s,
            Err(e) => return (made, Err(e.into())),
        };
        let result = client.sandbox(&sandbox).run("true").await;
        made.push((t0.elapsed(), sandbox.name));
        match result {
            Ok(r) if r.exit_code == 0 => {}
            Ok(r) => return (made, Err(anyhow::anyhow!("`true` exited {}", r.exit_code))),
            Err(e) => return (made, Err(e.into())),
        }
    }
    (made, Ok(()))
}

/// Deletes `names`, `concurrency` at a time.
pub async fn delete_all(
    client: &Client,
    names: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let queue = Arc::new(std::sync::Mutex::new(names));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, queue) = (client.clone(), queue.clone());
        workers.spawn(async move {
            loop {
                let name = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(name) = name else {
                    return anyhow::Ok(());
                };
                client.delete_sandbox(&name).await?;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(())
}
