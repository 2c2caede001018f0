//! One module per verb (or family of verbs).

pub mod admin;
pub mod bench;
pub mod boxes;
pub mod connect;
pub mod cp;
pub mod doctor;
pub mod exec;
pub mod gc;
pub mod kubernetes;
pub mod parse;
pub mod progress;
pub mod runtime_helper;
pub mod secrets;
pub mod serve;
pub mod snapshot;
pub mod template;
pub mod tunnel;
pub mod url;

use std::process::ExitCode;

/// Run a verb's future on a small runtime; errors print as `sandpit: ...`.
pub fn block_on<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
    done: impl FnOnce(T) -> ExitCode,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sandpit: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(value) => done(value),
        Err(e) => {
            eprintln!("sandpit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `block_on` for verbs that succeed with exit code 0.
pub fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    block_on(fut, |()| ExitCode::SUCCESS)
}
