//! `sandpit snapshot create|capture|ls|get|rm`: snapshots (the
//! `langsmith==0.15.0` API). `create` pulls a registry image and `capture`
//! copies a running sandbox's files; both wait for the build with a spinner
//! (the server reports no byte progress for pulls) unless `--no-wait`.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sandpit_client::{CaptureSnapshotRequest, Client, CreateSnapshotRequest, SnapshotResponse};

use super::boxes::human_bytes;
use super::connect::Connection;
use super::{parse, progress};

#[derive(Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: SnapshotVerb,
}

/// How `create` and `capture` wait.
#[derive(Args)]
struct Wait {
    /// Return at once with the `building` snapshot.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (90s, 10m...).
    #[arg(long, default_value = "10m", value_parser = parse::seconds)]
    timeout: i64,
}

#[derive(Subcommand)]
enum SnapshotVerb {
    /// Build a snapshot from a registry image (pulled by the server).
    Create {
        /// Snapshot name.
        name: String,
        /// Image reference, e.g. python:3.12-slim or host:5000/app:1.
        #[arg(long)]
        image: String,
        /// Tag under the name (default: both latest and the image's own tag).
        #[arg(long)]
        tag: Option<String>,
        /// Writable-layer capacity of its sandboxes: 1GiB, 512Mi, bytes.
        #[arg(long, value_parser = parse::bytes)]
        fs_capacity: Option<i64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Capture a running sandbox's files as a snapshot.
    Capture {
        /// Sandbox to capture.
        sandbox: String,
        /// Snapshot name.
        name: String,
        /// Tag under the name (default latest).
        #[arg(long)]
        tag: Option<String>,
        /// Writable-layer capacity (default: the sandbox's).
        #[arg(long, value_parser = parse::bytes)]
        fs_capacity: Option<i64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// List snapshots, newest first.
    Ls {
        /// Only names containing this (case-insensitive).
        #[arg(long)]
        name: Option<String>,
        /// At most this many (1-500; server default 50).
        #[arg(long)]
        limit: Option<i64>,
        /// Skip this many.
        #[arg(long)]
        offset: Option<i64>,
    },
    /// Show one snapshot (id, name:tag, or name for its latest).
    Get { reference: String },
    /// Delete a snapshot (id, name:tag or name); its sandboxes keep running.
    Rm { reference: String },
}

pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let json = args.conn.json;
    match args.verb {
        SnapshotVerb::Create {
            name,
            image,
            tag,
            fs_capacity,
            wait,
        } => {
            let req = CreateSnapshotRequest {
                name,
                docker_image: image,
                fs_capacity_bytes: fs_capacity,
                tag,
                ..Default::default()
            };
            let started = client.create_snapshot(&req).await?;
            let label = format!("pulling {}", req.docker_image);
            let done = finish(&client, started, &wait, label, json).await?;
            print_one(&done, json)
        }
        SnapshotVerb::Capture {
            sandbox,
            name,
            tag,
            fs_capacity,
            wait,
        } => {
            let req = CaptureSnapshotRequest {
                name,
                tag,
                fs_capacity_bytes: fs_capacity,
                ..Default::default()
            };
            let spinner = progress::spinner(format!("capturing {sandbox}"), json);
            let started = client.capture_snapshot(&sandbox, &req).await;
            spinner.finish_and_clear();
            let label = format!("capturing {sandbox}");
            let done = finish(&client, started?, &wait, label, json).await?;
            print_one(&done, json)
        }
        SnapshotVerb::Ls {
            name,
            limit,
            offset,
        } => {
            let list = client
                .list_snapshots(name.as_deref(), limit, offset)
                .await?;
            print_list(&list, json)
        }
        SnapshotVerb::Get { reference } => print_one(&client.get_snapshot(&reference).await?, json),
        SnapshotVerb::Rm { reference } => {
            client.delete_snapshot(&reference).await?;
            if !json {
                eprintln!("deleted snapshot {reference}");
            }
            Ok(())
        }
    }
}

/// Wait for a `building` snapshot, with a spinner showing elapsed time.
async fn finish(
    client: &Client,
    started: SnapshotResponse,
    wait: &Wait,
    label: String,
    json: bool,
) -> anyhow::Result<SnapshotResponse> {
    if wait.no_wait || !started.is_building() {
        return Ok(started);
    }
    let spinner = progress::spinner(label, json);
    let timeout = Duration::from_secs(u64::try_from(wait.timeout).unwrap_or(0));
    let result = client
        .wait_for_snapshot(&started.id, Duration::from_millis(500), timeout, |s| {
            spinner.set_prefix(s.status.clone())
        })
        .await;
    spinner.finish_and_clear();
    result.with_context(|| format!("snapshot {} ({})", started.name, started.id))
}

fn print_list(list: &[SnapshotResponse], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<16} {:<9} {:>9} {:<36} {:<36} CREATED",
        "NAME", "TAGS", "STATUS", "CAPACITY", "SOURCE", "ID"
    );
    for s in list {
        println!(
            "{:<24} {:<16} {:<9} {:>9} {:<36} {:<36} {}",
            s.name,
            tags(s),
            s.status,
            human_bytes(s.fs_capacity_bytes),
            source(s),
            s.id,
            s.created_at
        );
    }
    Ok(())
}

fn tags(s: &SnapshotResponse) -> String {
    match s.tags.is_empty() {
        true => "-".into(),
        false => s.tags.join(","),
    }
}

/// The image it was pulled from, or the sandbox it was captured from.
fn source(s: &SnapshotResponse) -> String {
    match (&s.docker_image, &s.source_sandbox_id) {
        (Some(image), _) => image.clone(),
        (None, Some(sandbox)) => format!("sandbox {sandbox}"),
        (None, None) => "-".into(),
    }
}

fn print_one(s: &SnapshotResponse, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!("name:        {}", s.name);
    println!("id:          {}", s.id);
    println!("tags:        {}", tags(s));
    println!("status:      {}", s.status);
    if let Some(message) = &s.status_message {
        println!("message:     {message}");
    }
    println!("source:      {}", source(s));
    if let Some(digest) = &s.image_digest {
        println!("digest:      {digest}");
    }
    println!("capacity:    {}", human_bytes(s.fs_capacity_bytes));
    println!("created:     {}", s.created_at);
    Ok(())
}
