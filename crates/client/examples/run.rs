//! Create a sandbox, run a command in it, delete it.
//!
//! ```text
//! cargo run -p sandpit-client --example run -- http://127.0.0.1:8080 "$LANGSMITH_API_KEY" "uname -a"
//! ```

use sandpit_client::{Client, CreateOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, key, command] = args.as_slice() else {
        eprintln!("usage: run ENDPOINT API_KEY COMMAND");
        std::process::exit(2);
    };
    let client = Client::new(endpoint, key)?;
    let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
    let result = client.sandbox(&sandbox).run(command).await;
    client.delete_sandbox(&sandbox.name).await?;
    let result = result?;
    print!("{}", result.stdout);
    eprint!("{}", result.stderr);
    std::process::exit(i32::try_from(result.exit_code).unwrap_or(1));
}
