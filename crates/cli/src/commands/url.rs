//! `sandpit url SANDBOX PORT`: a signed link to a port inside a sandbox.
//!
//! Prints the `browser_url` (anyone holding it can open the service until
//! it expires); `--json` prints `browser_url`, `service_url`, `token` and
//! `expires_at`; `--open` also hands the link to the desktop's browser.

use anyhow::Context;
use clap::Args;

use super::connect::Connection;
use super::parse;

#[derive(Args)]
pub struct UrlArgs {
    #[command(flatten)]
    conn: Connection,
    /// Sandbox name.
    sandbox: String,
    /// Port inside the sandbox (1-65535).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// How long the link works: 90s, 10m, 2h... (1s to 24h).
    #[arg(long, default_value = "10m", value_parser = parse::seconds)]
    expires: i64,
    /// Open the link with xdg-open (or $BROWSER).
    #[arg(long)]
    open: bool,
}

pub async fn url(args: UrlArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let url = client
        .service_url(&args.sandbox, args.port, args.expires)
        .await?;
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&url)?);
    } else {
        println!("{}", url.browser_url);
        eprintln!(
            "expires at {} (anyone with the link can open it until then)",
            url.expires_at
        );
    }
    if args.open {
        open(&url.browser_url)?;
    }
    Ok(())
}

fn open(link: &str) -> anyhow::Result<()> {
    let opener = std::env::var("BROWSER").unwrap_or_else(|_| "xdg-open".into());
    let status = std::process::Command::new(&opener)
        .arg(link)
        .status()
        .with_context(|| format!("could not run {opener} to open the link"))?;
    anyhow::ensure!(status.success(), "{opener} failed ({status})");
    Ok(())
}
