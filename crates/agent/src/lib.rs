//! The Sandpit agent: PID 1 inside every sandbox.
//!
//! It reaps zombies, runs commands (`shell -c command`) in their own process
//! groups, and serves the data-plane protocol the `langsmith` SDK speaks
//! (`/execute`, `/execute/ws`, `/execute/stream/*`, `/upload`, `/download`,
//! ...) over HTTP on a unix listener it inherits as fd 3. The server
//! authenticates callers and relays their requests here unchanged.

/// Entry point shared by `sandpit agent ...` and the static `sandpit-agent`
/// binary. `args` excludes the program name and the `agent` verb.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let _ = args;
    std::process::ExitCode::FAILURE
}
