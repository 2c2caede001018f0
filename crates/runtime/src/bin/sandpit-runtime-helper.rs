//! The runtime helper on its own, for this crate's integration tests:
//! `sandpit-runtime-helper runtime-helper --state-dir DIR [--join-mounts PID | --anchor]`,
//! the same command line the `sandpit` binary accepts.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (state_dir, join) = match args.as_slice() {
        [verb, flag, dir] if verb == "runtime-helper" && flag == "--state-dir" => {
            (PathBuf::from(dir), None)
        }
        [verb, flag, dir, anchor]
            if verb == "runtime-helper" && flag == "--state-dir" && anchor == "--anchor" =>
        {
            return finish(sandpit_runtime::helper::hold_mounts(
                &PathBuf::from(dir),
                None,
            ));
        }
        [verb, flag, dir, join, pid]
            if verb == "runtime-helper" && flag == "--state-dir" && join == "--join-mounts" =>
        {
            (PathBuf::from(dir), pid.parse().ok())
        }
        _ => {
            eprintln!(
                "usage: sandpit-runtime-helper runtime-helper --state-dir DIR [--join-mounts PID | --anchor]"
            );
            return ExitCode::from(2);
        }
    };
    finish(sandpit_runtime::helper::serve_joined(
        &state_dir, None, join,
    ))
}

fn finish(served: Result<(), sandpit_runtime::helper::ServeError>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("runtime helper: {}", sandpit_runtime::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
