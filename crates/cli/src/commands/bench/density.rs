//! Density: create `n` idle sandboxes, read what they cost the host, time the
//! API while they exist, delete them and check nothing is left.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandpit_client::{Client, CreateOptions};
use tokio::task::JoinSet;

use super::host::{self, Memory};
use super::{print_row, summarize, Summary};

/// How many creates run at once while filling the host.
const FILL_CONCURRENCY: usize = 16;
/// `GET /boxes/{name}` requests timed while the sandboxes exist.
const API_REQUESTS: usize = 1000;
const API_CONCURRENCY: usize = 8;
/// How long to let the new sandboxes settle before reading memory.
const SETTLE: Duration = Duration::from_secs(3);
/// How long teardown (cgroups, links) may take after the last delete.
const DRAIN: Duration = Duration::from_secs(60);
const LABEL: &str = "sandpit-bench";

pub struct Density {
    pub n: usize,
    pub per_sandbox_mib: f64,
    pub api_loaded: Summary,
}

pub async fn run(client: &Client, n: usize, server: Option<u32>) -> anyhow::Result<Density> {
    let api_idle = api_latency(client, &[]).await?;
    let before = Memory::read(server);
    let (cgroups0, links0) = (host::sandbox_cgroups(), host::host_links());
    let t0 = Instant::now();
    let made = fill(client, n).await;
    let names = match made {
        Ok(names) => names,
        Err((names, err)) => {
            super::burst::delete_all(client, names, FILL_CONCURRENCY).await?;
            return Err(err);
        }
    };
    let fill_time = t0.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after = Memory::read(server);
    let api_loaded = api_latency(client, &names).await?;
    let per_sandbox_mib = report(n, &before, &after, fill_time);
    print_row("API GET /boxes/{name}, no sandboxes", &api_idle);
    print_row(
        &format!("API GET /boxes/{{name}}, {n} sandboxes"),
        &api_loaded,
    );
    let t1 = Instant::now();
    super::burst::delete_all(client, names, FILL_CONCURRENCY).await?;
    let deleted = t1.elapsed();
    let left = drain(client, cgroups0, links0).await?;
    println!(
        "density: deleted {n} in {:.1} s; left after {:.1} s: {left}",
        deleted.as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        left == Leftovers::default(),
        "sandboxes left behind: {left}"
    );
    Ok(Density {
        n,
        per_sandbox_mib,
        api_loaded,
    })
}

/// Prints the memory rows; returns host MiB per sandbox.
fn report(n: usize, before: &Memory, after: &Memory, fill_time: Duration) -> f64 {
    let mib = |a: u64, b: u64| (b as f64 - a as f64) / n as f64 / (1 << 20) as f64;
    let cgroup = mib(before.cgroup, after.cgroup);
    let slab = mib(before.slab, after.slab);
    let tables = mib(before.page_tables, after.page_tables);
    let stacks = mib(before.kernel_stack, after.kernel_stack);
    let server = mib(before.server_rss, after.server_rss);
    let total = cgroup + slab + tables + stacks + server;
    println!(
        "density: {n} idle sandboxes created in {:.1} s ({:.1}/s)",
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64()
    );
    println!(
        "density: MiB per sandbox: cgroup {cgroup:.3}  slab {slab:.3}  page tables {tables:.3}  \
         kernel stacks {stacks:.3}  server+helpers RSS {server:.3}  = {total:.3} MiB"
    );
    println!(
        "density: totals after: cgroup {} MiB, slab {} MiB, server+helpers RSS {} MiB",
        after.cgroup >> 20,
        after.slab >> 20,
        after.server_rss >> 20
    );
    total
}

type Failed = (Vec<String>, anyhow::Error);

/// Creates `n` labelled sandboxes; on failure returns those made so far.
async fn fill(client: &Client, n: usize) -> Result<Vec<String>, Failed> {
    let next = Arc::new(AtomicUsize::new(0));
    let options = CreateOptions {
        idle_ttl_seconds: Some(0),
        labels: Some(BTreeMap::from([(LABEL.to_owned(), "density".to_owned())])),
        ..CreateOptions::default()
    };
    let mut workers = JoinSet::new();
    for _ in 0..FILL_CONCURRENCY {
        let (client, next, options) = (client.clone(), next.clone(), options.clone());
        workers.spawn(async move {
            let mut made = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                match client.create_sandbox(&options).await {
                    Ok(s) => made.push(s.name),
                    Err(e) => return (made, Err(anyhow::Error::from(e))),
                }
            }
            (made, Ok(()))
        });
    }
    let mut names = Vec::with_capacity(n);
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((made, result)) => {
                names.extend(made);
                if let Err(e) = result {
                    failure.get_or_insert(e);
                }
            }
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        }
    }
    match failure {
        None => Ok(names),
        Some(e) => Err((names, e)),
    }
}

/// p50/p99 of `GET /boxes/{name}` over `names` (a missing name when empty:
/// the 404 path still authenticates and reads the database).
async fn api_latency(client: &Client, names: &[String]) -> anyhow::Result<Summary> {
    let names: Arc<Vec<String>> = Arc::new(match names.is_empty() {
        true => vec!["sandpit-bench-absent".to_owned()],
        false => names.to_vec(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..API_CONCURRENCY {
        let (client, names, next) = (client.clone(), names.clone(), next.clone());
        workers.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= API_REQUESTS {
                    return anyhow::Ok(samples);
                }
                let name = &names[i.wrapping_mul(7919) % names.len()];
                let t0 = Instant::now();
                match client.get_sandbox(name).await {
                    Ok(_) => {}
                    Err(e) if e.status() == Some(404) => {}
                    Err(e) => return Err(e.into()),
                }
                samples.push(t0.elapsed());
            }
        });
    }
    let mut samples = Vec::with_capacity(API_REQUESTS);
    while let Some(joined) = workers.join_next().await {
        samples.extend(joined??);
    }
    Ok(summarize(samples))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Leftovers {
    sandboxes: usize,
    cgroups: usize,
    links: usize,
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::default() {
            return f.write_str("nothing");
        }
        write!(
            f,
            "{} sandboxes, {} cgroups, {} links",
            self.sandboxes, self.cgroups, self.links
        )
    }
}

/// Waits until the benchmark's sandboxes, their cgroups and their links are
/// gone (back to the counts before it), or [`DRAIN`] passes.
async fn drain(client: &Client, cgroups0: usize, links0: usize) -> anyhow::Result<Leftovers> {
    let deadline = Instant::now() + DRAIN;
    loop {
        let listed = client.list_sandboxes().await?;
        let left = Leftovers {
            sandboxes: listed
                .iter()
                .filter(|s| s.labels.contains_key(LABEL))
                .count(),
            cgroups: host::sandbox_cgroups().saturating_sub(cgroups0),
            links: host::host_links().saturating_sub(links0),
        };
        if left == Leftovers::default() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
