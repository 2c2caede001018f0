//! Create a sandbox, run a command in it, copy a file in and out, delete it.
//!
//! ```sh
//! cargo run -p sandpit-client --example hello -- http://127.0.0.1:8080 "$SANDPIT_API_KEY"
//! ```
//! (The endpoint and key default to `LANGSMITH_ENDPOINT` and
//! `LANGSMITH_API_KEY`.)

use sandpit_client::{Client, CreateOptions};

fn arg_or_env(index: usize, var: &str) -> Result<String, String> {
    std::env::args()
        .nth(index)
        .or_else(|| std::env::var(var).ok())
        .ok_or_else(|| format!("usage: hello ENDPOINT API_KEY (or set {var})"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::new(
        &arg_or_env(1, "LANGSMITH_ENDPOINT")?,
        &arg_or_env(2, "LANGSMITH_API_KEY")?,
    )?;
    let sandbox = client.create_sandbox(&CreateOptions::default()).await?;
    println!("created {} ({})", sandbox.name, sandbox.status.as_str());
    let handle = client.sandbox(&sandbox);
    let outcome = async {
        let result = handle.run("echo hello from $(hostname)").await?;
        print!("{}", result.stdout);
        handle.upload("/tmp/greeting.txt", b"hi there\n").await?;
        let back = handle.download("/tmp/greeting.txt").await?;
        println!(
            "read back {} bytes: {:?}",
            back.len(),
            String::from_utf8_lossy(&back)
        );
        Ok::<_, sandpit_client::ClientError>(())
    }
    .await;
    client.delete_sandbox(&sandbox.name).await?;
    println!("deleted {}", sandbox.name);
    Ok(outcome?)
}
