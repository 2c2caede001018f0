//! `sandpit template create|ls|get|rm`: templates (the `langsmith==0.7.30`
//! API). `sandpit create --template NAME` boots a sandbox from one.

use clap::{Args, Subcommand};
use sandpit_client::{CreateTemplateRequest, ResourcesRequest, TemplateResponse, VolumeMount};

use super::connect::Connection;

#[derive(Args)]
pub struct TemplateArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: TemplateVerb,
}

#[derive(Subcommand)]
enum TemplateVerb {
    /// Create a template.
    Create {
        name: String,
        /// Image reference, or `host` for the built-in image.
        #[arg(long)]
        image: String,
        /// CPU quantity: 500m, 1, 2 (default 500m).
        #[arg(long)]
        cpu: Option<String>,
        /// Memory quantity: 256Mi, 1Gi (default 512Mi).
        #[arg(long)]
        memory: Option<String>,
        /// Writable-layer capacity: 1Gi.
        #[arg(long)]
        storage: Option<String>,
        /// VOLUME:/mount/path, repeatable.
        #[arg(long = "volume", value_parser = parse_mount)]
        volumes: Vec<VolumeMount>,
    },
    /// List templates.
    Ls,
    /// Show one template.
    Get { name: String },
    /// Delete a template (refused while sandboxes or pools use it).
    Rm { name: String },
}

fn parse_mount(s: &str) -> Result<VolumeMount, String> {
    match s.split_once(':') {
        Some((volume, path)) if !volume.is_empty() && path.starts_with('/') => Ok(VolumeMount {
            volume_name: volume.to_owned(),
            mount_path: path.to_owned(),
        }),
        _ => Err(format!("'{s}' is not VOLUME:/absolute/path")),
    }
}

pub async fn run(args: TemplateArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let json = args.conn.json;
    match args.verb {
        TemplateVerb::Create {
            name,
            image,
            cpu,
            memory,
            storage,
            volumes,
        } => {
            let req = CreateTemplateRequest {
                name,
                image,
                resources: Some(ResourcesRequest {
                    cpu,
                    memory,
                    storage,
                }),
                volume_mounts: Some(volumes).filter(|v| !v.is_empty()),
                proxy_config: None,
            };
            print_one(&client.create_template(&req).await?, json)
        }
        TemplateVerb::Ls => print_list(&client.list_templates().await?, json),
        TemplateVerb::Get { name } => print_one(&client.get_template(&name).await?, json),
        TemplateVerb::Rm { name } => {
            client.delete_template(&name).await?;
            if !json {
                eprintln!("deleted template {name}");
            }
            Ok(())
        }
    }
}

fn quantity(q: &Option<String>) -> &str {
    q.as_deref().unwrap_or("-")
}

fn mounts(t: &TemplateResponse) -> String {
    match t.volume_mounts.is_empty() {
        true => "-".into(),
        false => t
            .volume_mounts
            .iter()
            .map(|m| format!("{}:{}", m.volume_name, m.mount_path))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn print_list(list: &[TemplateResponse], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<32} {:>6} {:>8} {:>8} {:<24} CREATED",
        "NAME", "IMAGE", "CPU", "MEMORY", "STORAGE", "VOLUMES"
    );
    for t in list {
        println!(
            "{:<24} {:<32} {:>6} {:>8} {:>8} {:<24} {}",
            t.name,
            t.image,
            t.resources.cpu,
            t.resources.memory,
            quantity(&t.resources.storage),
            mounts(t),
            t.created_at
        );
    }
    Ok(())
}

fn print_one(t: &TemplateResponse, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    println!("name:        {}", t.name);
    println!("id:          {}", t.id);
    println!("image:       {}", t.image);
    println!("cpu:         {}", t.resources.cpu);
    println!("memory:      {}", t.resources.memory);
    println!("storage:     {}", quantity(&t.resources.storage));
    println!("volumes:     {}", mounts(t));
    println!("created:     {}", t.created_at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_volume_and_absolute_path() {
        let m = parse_mount("data:/mnt/data").unwrap();
        assert_eq!(
            (m.volume_name.as_str(), m.mount_path.as_str()),
            ("data", "/mnt/data")
        );
        assert!(parse_mount("data:relative").is_err());
        assert!(parse_mount(":/x").is_err());
    }
}
