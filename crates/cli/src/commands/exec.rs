//! `sandpit exec` (a command, output streamed, exit code passed through,
//! stdin forwarded when it is not a terminal) and `sandpit shell` (an
//! interactive shell on a pseudo-terminal, resized on SIGWINCH).

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use clap::Args;
use nix::sys::termios::{self, SetArg, Termios};
use sandpit_client::{ExecOptions, Input, SandboxHandle, Stream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use super::connect::Connection;

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    conn: Connection,
    /// Sandbox name.
    name: String,
    /// Working directory inside the sandbox.
    #[arg(long)]
    cwd: Option<String>,
    /// Kill the command after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// The command; one argument is run as a shell string, several are
    /// quoted and joined.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct ShellArgs {
    #[command(flatten)]
    conn: Connection,
    /// Sandbox name.
    name: String,
    /// Shell to start (default: bash if the image has it, else sh).
    #[arg(long)]
    shell: Option<String>,
}

/// POSIX single-quoting of one word.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => many.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "),
    }
}

/// Turns a byte stream into text without splitting a UTF-8 character
/// across two messages (invalid bytes become U+FFFD).
#[derive(Default)]
struct Utf8Chunker {
    pending: Vec<u8>,
}

impl Utf8Chunker {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let (good, rest) = self.pending.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("validated prefix"));
                    match e.error_len() {
                        // An incomplete character at the end: keep it.
                        None => {
                            self.pending = rest.to_vec();
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending = rest[bad..].to_vec();
                        }
                    }
                }
            }
        }
    }
}

/// Copy local stdin into `input` from a plain thread (stdin reads block).
fn forward_stdin(input: UnboundedSender<Input>, close_at_eof: bool) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 16 * 1024];
        let mut text = Utf8Chunker::default();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = text.push(&buf[..n]);
                    if !chunk.is_empty() && input.send(Input::Data(chunk)).is_err() {
                        return;
                    }
                }
            }
        }
        if close_at_eof {
            let _ = input.send(Input::Close);
        }
    });
}

fn write_chunk(stream: Stream, data: &str) {
    let result = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes()).and_then(|()| out.flush())
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data.as_bytes()).and_then(|()| err.flush())
        }
    };
    let _ = result;
}

fn exit_code(code: i64) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

async fn handle(conn: &Connection, name: &str) -> anyhow::Result<SandboxHandle> {
    let client = conn.client()?;
    let sandbox = client.get_sandbox(name).await?;
    Ok(client.sandbox(&sandbox))
}

pub async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let sandbox = handle(&args.conn, &args.name).await?;
    let piped = !std::io::stdin().is_terminal();
    let options = ExecOptions {
        timeout_seconds: args.timeout,
        stdin: piped,
        cwd: args.cwd,
        ..ExecOptions::default()
    };
    let (input, receiver) = tokio::sync::mpsc::unbounded_channel();
    if piped {
        forward_stdin(input.clone(), true);
    }
    // Ctrl-C kills the remote command; its exit status still comes back.
    let killer = input.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = killer.send(Input::Kill);
        }
    });
    drop(input);
    let code = sandbox
        .run_interactive(
            &command_line(&args.command),
            &options,
            receiver,
            write_chunk,
        )
        .await?;
    Ok(exit_code(code))
}

/// Puts the terminal in raw mode; restores it when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The local terminal's size (columns, rows), if stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass,
    // which points at a live, properly aligned local.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

pub async fn shell(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let sandbox = handle(&args.conn, &args.name).await?;
    let command = match &args.shell {
        Some(shell) => format!("exec {}", quote(shell)),
        None => "if [ -x /bin/bash ]; then exec /bin/bash -i; else exec /bin/sh -i; fi".to_owned(),
    };
    let options = ExecOptions {
        timeout_seconds: 0,
        shell: "/bin/sh".into(),
        stdin: true,
        pty: Some(terminal_size().unwrap_or((80, 24))),
        cwd: None,
    };
    let (input, receiver) = tokio::sync::mpsc::unbounded_channel();
    let raw = if std::io::stdin().is_terminal() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    forward_stdin(input.clone(), false);
    let resizer = input.clone();
    tokio::spawn(async move {
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((cols, rows)) = terminal_size() {
                if resizer.send(Input::Resize { cols, rows }).is_err() {
                    return;
                }
            }
        }
    });
    drop(input);
    let result = sandbox
        .run_interactive(&command, &options, receiver, write_chunk)
        .await;
    drop(raw);
    Ok(exit_code(result?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(command_line(&["echo $HOME".into()]), "echo $HOME");
        assert_eq!(
            command_line(&["printf".into(), "%s\n".into(), "it's".into(), "a b".into()]),
            r"printf '%s
' 'it'\''s' 'a b'"
        );
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn utf8_split_across_reads_is_kept_whole() {
        let mut chunker = Utf8Chunker::default();
        let snow = "☃".as_bytes();
        assert_eq!(chunker.push(&snow[..1]), "");
        assert_eq!(chunker.push(&snow[1..]), "☃");
        assert_eq!(chunker.push(b"a\xffb"), "a\u{FFFD}b");
    }
}
