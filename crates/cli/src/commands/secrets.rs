//! `sandpit secrets set|list|delete`: the caller's tenant's workspace
//! secrets, which egress rules inject into requests (`${NAME}`,
//! `workspace_secret`). Values are write-only: `list` shows names.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::connect::Connection;

#[derive(Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: SecretVerb,
}

#[derive(Subcommand)]
enum SecretVerb {
    /// Create or replace a secret. The value is read from stdin (one
    /// trailing newline dropped) unless --value is given.
    Set {
        name: String,
        /// The value (visible in the process list: prefer stdin).
        #[arg(long)]
        value: Option<String>,
    },
    /// List secret names (values are never shown).
    List,
    /// Delete a secret.
    Delete { name: String },
}

pub fn run(args: SecretsArgs) -> ExitCode {
    super::run(main(args))
}

fn read_stdin() -> anyhow::Result<String> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("reading the secret value from stdin")?;
    let value = value.strip_suffix('\n').unwrap_or(&value);
    Ok(value.strip_suffix('\r').unwrap_or(value).to_owned())
}

async fn main(args: SecretsArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    match args.verb {
        SecretVerb::Set { name, value } => {
            let value = match value {
                Some(v) => v,
                None => read_stdin()?,
            };
            client.set_secret(&name, &value).await?;
            eprintln!("secret {name} set");
        }
        SecretVerb::List => {
            let names = client.list_secrets().await?;
            if args.conn.json {
                println!("{}", serde_json::to_string_pretty(&names)?);
            } else {
                names.iter().for_each(|n| println!("{n}"));
            }
        }
        SecretVerb::Delete { name } => {
            client.delete_secret(&name).await?;
            eprintln!("secret {name} deleted");
        }
    }
    Ok(())
}
