//! `sandpit serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SANDPIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the database, images and sandbox files.
    #[arg(long, env = "SANDPIT_DATA_DIR", default_value = ".sandpit")]
    pub data_dir: PathBuf,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let _ = (args.listen, args.data_dir, crate::agent_binary::STATIC_AGENT.len());
    ExitCode::FAILURE
}
