//! The runtime helper on its own, for this crate's integration tests:
//! `sandpit-runtime-helper runtime-helper --state-dir DIR`, the same command
//! line the `sandpit` binary accepts.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let state_dir = match args.as_slice() {
        [verb, flag, dir] if verb == "runtime-helper" && flag == "--state-dir" => {
            PathBuf::from(dir)
        }
        _ => {
            eprintln!("usage: sandpit-runtime-helper runtime-helper --state-dir DIR");
            return ExitCode::from(2);
        }
    };
    match sandpit_runtime::helper::serve(&state_dir, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("runtime helper: {}", sandpit_runtime::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
