//! Progress display for long operations (image pulls, captures, large
//! copies), drawn on stderr only when stderr is a terminal and `--json` is
//! off, so scripts and pipes never see it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether to draw: a terminal on stderr and human output.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

fn bar(length: Option<u64>, template: &str, json: bool) -> ProgressBar {
    if !wanted(json) {
        return ProgressBar::hidden();
    }
    let bar = match length {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    // The templates are constants; a typo shows up in the unit test below.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// A spinner with elapsed time, for waits the server reports no progress
/// for (a pull, a capture): `⠋ pulling python:3.12 [00:00:07] building`.
pub fn spinner(message: String, json: bool) -> ProgressBar {
    let spinner = bar(None, SPINNER, json);
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// A byte counter for copies: total known (bar) or not (spinner).
pub fn bytes(total: Option<u64>, json: bool) -> ProgressBar {
    let template = match total {
        Some(_) => BYTES_BAR,
        None => BYTES_SPINNER,
    };
    let bar = bar(total, template, json);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

const SPINNER: &str = "{spinner} {msg} [{elapsed_precise}] {prefix}";
const BYTES_BAR: &str =
    "{msg} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})";
const BYTES_SPINNER: &str =
    "{spinner} {msg} [{elapsed_precise}] {binary_bytes} ({binary_bytes_per_sec})";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for t in [SPINNER, BYTES_BAR, BYTES_SPINNER] {
            ProgressStyle::with_template(t).unwrap();
        }
    }

    #[test]
    fn json_output_never_draws() {
        assert!(!wanted(true));
        assert!(spinner("x".into(), true).is_hidden());
        assert!(bytes(Some(10), true).is_hidden());
    }
}
