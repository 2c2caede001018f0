//! `sandpit tenants ...` and `sandpit keys ...`: the admin API from a shell.
//!
//! Both talk to a running server with an admin key (the key `sandpit serve`
//! prints on first start is one).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use sandpit_client::api::admin::{
    CreateKeyRequest, CreateTenantRequest, KeyResponse, TenantResponse, UpdateTenantRequest,
};
use serde_json::Value;

use super::connect::Connection;
use super::run;

#[derive(Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: TenantVerb,
}

/// Quotas as flags; `--max-vcpus none` clears one on update.
#[derive(Args)]
struct QuotaFlags {
    /// Most sandboxes the tenant may have at once ("none" = unlimited).
    #[arg(long)]
    max_sandboxes: Option<Quota>,
    /// Most vCPUs over the tenant's running sandboxes.
    #[arg(long)]
    max_vcpus: Option<Quota>,
    /// Most memory (bytes) over the tenant's running sandboxes.
    #[arg(long)]
    max_mem_bytes: Option<Quota>,
}

#[derive(Clone, Copy)]
enum Quota {
    Unlimited,
    Limit(i64),
}

impl std::str::FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "unlimited" => Ok(Quota::Unlimited),
            n => n
                .parse()
                .map(Quota::Limit)
                .map_err(|_| format!("'{n}' is not a number or 'none'")),
        }
    }
}

impl Quota {
    fn limit(self) -> Option<i64> {
        match self {
            Quota::Unlimited => None,
            Quota::Limit(n) => Some(n),
        }
    }
    fn json(self) -> Value {
        self.limit().map_or(Value::Null, Value::from)
    }
}

#[derive(Subcommand)]
enum TenantVerb {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        quotas: QuotaFlags,
    },
    /// List tenants with quotas and usage.
    List,
    /// Change a tenant's quotas.
    Update {
        /// Tenant name or id.
        tenant: String,
        #[command(flatten)]
        quotas: QuotaFlags,
    },
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    verb: KeyVerb,
}

#[derive(Subcommand)]
enum KeyVerb {
    /// Create an API key for a tenant; prints the key once.
    Create {
        /// Tenant name or id.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// The key may use the admin API.
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

pub fn tenants(args: TenantsArgs) -> ExitCode {
    run(tenants_main(args))
}

pub fn keys(args: KeysArgs) -> ExitCode {
    run(keys_main(args))
}

async fn tenants_main(args: TenantsArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let tenants = match args.verb {
        TenantVerb::Create { name, quotas } => {
            let req = CreateTenantRequest {
                name,
                max_sandboxes: quotas.max_sandboxes.and_then(Quota::limit),
                max_vcpus: quotas.max_vcpus.and_then(Quota::limit),
                max_mem_bytes: quotas.max_mem_bytes.and_then(Quota::limit),
            };
            vec![client.create_tenant(&req).await?]
        }
        TenantVerb::List => client.list_tenants().await?,
        TenantVerb::Update { tenant, quotas } => {
            let req = UpdateTenantRequest {
                max_sandboxes: quotas.max_sandboxes.map(Quota::json),
                max_vcpus: quotas.max_vcpus.map(Quota::json),
                max_mem_bytes: quotas.max_mem_bytes.map(Quota::json),
            };
            vec![client.update_tenant(&tenant, &req).await?]
        }
    };
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
    } else {
        print_tenants(&tenants);
    }
    Ok(())
}

async fn keys_main(args: KeysArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    match args.verb {
        KeyVerb::Create {
            tenant,
            name,
            admin,
        } => {
            let req = CreateKeyRequest {
                tenant,
                name,
                admin,
            };
            let created = client.create_key(&req).await?;
            if args.conn.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "key {} for tenant {} (shown once; store it now)",
                    created.info.id, created.info.tenant
                );
            }
        }
        KeyVerb::List { tenant } => {
            let keys = client.list_keys(tenant.as_deref()).await?;
            if args.conn.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_keys(&keys);
            }
        }
        KeyVerb::Revoke { id } => {
            client.revoke_key(&id).await?;
            if !args.conn.json {
                eprintln!("revoked {id}");
            }
        }
    }
    Ok(())
}

fn or_unlimited(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn print_tenants(tenants: &[TenantResponse]) {
    println!(
        "{:<20} {:<38} {:>10} {:>10} {:>14}",
        "NAME", "ID", "SANDBOXES", "VCPUS", "MEMORY"
    );
    for t in tenants {
        println!(
            "{:<20} {:<38} {:>10} {:>10} {:>14}",
            t.name,
            t.id,
            format!("{}/{}", t.sandboxes, or_unlimited(t.max_sandboxes)),
            format!("{}/{}", t.vcpus_in_use, or_unlimited(t.max_vcpus)),
            format!("{}/{}", t.mem_bytes_in_use, or_unlimited(t.max_mem_bytes)),
        );
    }
}

fn print_keys(keys: &[KeyResponse]) {
    println!(
        "{:<38} {:<16} {:<12} {:<20} {:<6} {:<8}",
        "ID", "NAME", "PREFIX", "TENANT", "ADMIN", "STATE"
    );
    for k in keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:<38} {:<16} {:<12} {:<20} {:<6} {:<8}",
            k.id, k.name, k.prefix, k.tenant, k.admin, state
        );
    }
}
