//! Sandbox verbs: `login`, `create`, `ls`, `get`, `rm`, `stop`, `start`.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{bail, Context};
use clap::Args;
use sandpit_client::api::SandboxResponse;
use sandpit_client::{Client, CreateOptions};

use super::connect::{self, Connection, Saved};

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: Connection,
}

/// `sandpit login`: check the endpoint and key, then save them (0600).
/// Without `--api-key` (or LANGSMITH_API_KEY) the key is read from stdin.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let endpoint = args
        .conn
        .endpoint
        .clone()
        .context("--endpoint is required (e.g. http://127.0.0.1:8080)")?;
    let api_key = match args.conn.api_key.clone() {
        Some(key) => key,
        None => {
            eprint!("API key: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    if api_key.is_empty() {
        bail!("no API key given");
    }
    let client = Client::new(&endpoint, &api_key)?;
    client
        .list_sandboxes()
        .await
        .context("the server refused the key")?;
    let path = connect::save(&Saved { endpoint, api_key })?;
    eprintln!("logged in; saved to {}", path.display());
    Ok(())
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    conn: Connection,
    /// Name (default: generated).
    name: Option<String>,
    /// Snapshot (name, name:tag or id) to boot from.
    #[arg(long, conflicts_with = "template")]
    snapshot: Option<String>,
    /// Template (by name) to boot from.
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    vcpus: Option<i64>,
    /// Memory, bytes.
    #[arg(long)]
    mem_bytes: Option<i64>,
    /// Stop after this many seconds without activity (multiple of 60, 0 = never).
    #[arg(long)]
    idle_ttl_seconds: Option<i64>,
    /// Delete this long after stopping (multiple of 60, 0 = never).
    #[arg(long)]
    delete_after_stop_seconds: Option<i64>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let options = CreateOptions {
        name: args.name,
        snapshot: args.snapshot,
        template_name: args.template,
        vcpus: args.vcpus,
        mem_bytes: args.mem_bytes,
        idle_ttl_seconds: args.idle_ttl_seconds,
        delete_after_stop_seconds: args.delete_after_stop_seconds,
        labels: (!args.labels.is_empty())
            .then(|| args.labels.into_iter().collect::<BTreeMap<_, _>>()),
        timeout: None,
    };
    let sandbox = client.create_sandbox(&options).await?;
    print_one(&sandbox, args.conn.json)
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Connection,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let sandboxes = args.conn.client()?.list_sandboxes().await?;
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&sandboxes)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<12} {:>5} {:>8} {:<20} CREATED",
        "NAME", "STATUS", "VCPUS", "MEMORY", "IMAGE"
    );
    for s in &sandboxes {
        println!(
            "{:<28} {:<12} {:>5} {:>8} {:<20} {}",
            s.name,
            s.status.as_str(),
            s.vcpus,
            human_bytes(s.mem_bytes),
            s.template_name.as_deref().unwrap_or(&s.image),
            s.created_at
        );
    }
    Ok(())
}

pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn print_one(s: &SandboxResponse, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!("name:        {}", s.name);
    println!("id:          {}", s.id);
    println!("status:      {}", s.status.as_str());
    if let Some(message) = &s.status_message {
        println!("message:     {message}");
    }
    println!(
        "image:       {}",
        s.template_name.as_deref().unwrap_or(&s.image)
    );
    println!("vcpus:       {}", s.vcpus);
    println!("memory:      {}", human_bytes(s.mem_bytes));
    println!("idle ttl:    {}s", s.idle_ttl_seconds);
    println!("created:     {}", s.created_at);
    if let Some(stopped) = &s.stopped_at {
        println!("stopped:     {stopped}");
    }
    Ok(())
}

/// Verbs that take one sandbox name.
#[derive(Args)]
pub struct NameArgs {
    #[command(flatten)]
    conn: Connection,
    name: String,
}

pub async fn get(args: NameArgs) -> anyhow::Result<()> {
    let sandbox = args.conn.client()?.get_sandbox(&args.name).await?;
    print_one(&sandbox, args.conn.json)
}

pub async fn remove(args: NameArgs) -> anyhow::Result<()> {
    args.conn.client()?.delete_sandbox(&args.name).await?;
    if !args.conn.json {
        eprintln!("deleted {}", args.name);
    }
    Ok(())
}

pub async fn stop(args: NameArgs) -> anyhow::Result<()> {
    let sandbox = args.conn.client()?.stop_sandbox(&args.name).await?;
    print_one(&sandbox, args.conn.json)
}

pub async fn start(args: NameArgs) -> anyhow::Result<()> {
    let sandbox = args.conn.client()?.start_sandbox(&args.name).await?;
    print_one(&sandbox, args.conn.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_api_quantities() {
        assert_eq!(human_bytes(512 << 20), "512MiB");
        assert_eq!(human_bytes(1536 << 20), "1.5GiB");
        assert_eq!(human_bytes(100), "100B");
    }

    #[test]
    fn labels_are_key_value() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("nope").is_err());
    }
}
