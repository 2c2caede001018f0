//! `sandpit runtime-helper`: spawned by `serve`, never by users.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    ExitCode::FAILURE
}
