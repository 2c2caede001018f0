//! PID 1 duties: reaping orphans, SIGTERM, the inherited listener and what
//! commands inherit.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alive, eventually, exists, Agent, TempDir};
use serde_json::json;

#[tokio::test]
async fn orphaned_grandchildren_are_reaped() {
    let agent = Agent::start();
    // The shell exits at once; its background child is orphaned to the agent.
    let run = agent
        .run(json!({"command": "sleep 0.3 >/dev/null 2>&1 & echo $!"}))
        .await;
    assert_eq!(run.exit_code, Some(0));
    let orphan: i32 = run.stdout.trim().parse().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{orphan}/status")).unwrap_or_default();
    let ppid_line = status
        .lines()
        .find(|l| l.starts_with("PPid:"))
        .unwrap_or("");
    if !status.is_empty() {
        assert_eq!(
            ppid_line.split_whitespace().nth(1),
            Some(agent.pid().to_string().as_str())
        );
    }
    // Gone entirely: not even a zombie entry in /proc.
    eventually("orphan reaped", || !exists(orphan)).await;
}

#[tokio::test]
async fn sigterm_kills_commands_and_exits_zero() {
    let mut agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 100 & sleep 100", "idle_timeout_seconds": -1}))
        .await;
    let pid = ws.started().await["pid"].as_i64().expect("pid") as i32;
    let status = agent.terminate();
    assert_eq!(status.code(), Some(0));
    eventually("command killed", || !alive(pid)).await;
}

#[tokio::test]
async fn commands_start_with_default_oom_score() {
    // Like the runtime, give the agent a non-default score; commands must not
    // inherit it. (The runtime lowers it, which needs CAP_SYS_RESOURCE; a
    // raised score tests the same reset without it.)
    let score: &'static [u8] = b"500";
    let dir = TempDir::new();
    let socket = dir.path().join("oom.sock");
    let workdir = dir.path().join("w");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandpit-agent"));
    command
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--workdir")
        .arg(&workdir);
    // SAFETY: open/write/close are async-signal-safe; no allocation happens.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, score.as_ptr().cast(), score.len()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let agent = Agent::adopt(command.spawn().expect("spawn"), dir, socket, workdir);
    let own = std::fs::read(format!("/proc/{}/oom_score_adj", agent.pid())).expect("score");
    assert_eq!(own.trim_ascii(), score, "the agent keeps its own score");
    let run = agent
        .run(json!({"command": "cat /proc/self/oom_score_adj"}))
        .await;
    assert_eq!(run.stdout, "0\n");
}

#[tokio::test]
async fn commands_run_in_their_own_session() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "ps -o sid= -p $$; ps -o pgid= -p $$; echo $$"}))
        .await;
    let fields: Vec<&str> = run.stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "stdout: {:?}", run.stdout);
    assert_eq!(fields[0], fields[2], "session id is the shell's pid");
    assert_eq!(fields[1], fields[2], "process group id is the shell's pid");
}

/// Starts the agent the way the runtime does: a bound, listening unix socket
/// handed over as fd 3.
#[tokio::test]
async fn serves_an_inherited_listener_that_commands_do_not_inherit() {
    let dir = TempDir::new();
    let socket = dir.path().join("inherited.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let fd = listener.as_raw_fd();
    let workdir = dir.path().join("home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandpit-agent"));
    command
        .args(["--listen-fd", "3", "--workdir"])
        .arg(&workdir)
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe and only touches descriptors.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("spawn agent");
    drop(listener);
    let agent = Agent::adopt(child, dir, socket, workdir.clone());
    let run = agent.run(json!({"command": "ls -l /proc/$$/fd/"})).await;
    assert_eq!(run.exit_code, Some(0));
    assert!(workdir.is_dir(), "the working directory is created");
    assert!(
        !run.stdout.contains("socket:"),
        "command inherited a socket: {}",
        run.stdout
    );
    let response = agent.get("/healthz").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn starts_quickly() {
    let dir = TempDir::new();
    let socket = dir.path().join("fast.sock");
    let begun = std::time::Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_sandpit-agent"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--workdir")
        .arg(dir.path().join("w"))
        .spawn()
        .expect("spawn");
    let workdir = dir.path().join("w");
    let _agent = Agent::adopt(child, dir, socket, workdir);
    // Generous: debug build, loaded CI machine. Release starts in a few ms.
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "took {:?}",
        begun.elapsed()
    );
}

/// Finished sessions are kept for reconnects (TTL) but hold no descriptors:
/// no pipes, no stdin writer, no PTY master.
#[tokio::test]
async fn finished_sessions_hold_no_descriptors() {
    let agent = Agent::start();
    let count = || std::fs::read_dir(format!("/proc/{}/fd", agent.pid())).map_or(0, |d| d.count());
    agent.run(json!({"command": "true"})).await;
    let baseline = count();
    for n in 0..5 {
        let run = agent
            .run(json!({"command": "tty >/dev/null && echo pty", "pty": true}))
            .await;
        assert_eq!(run.stdout, "pty\r\n", "pty command {n}");
        let run = agent
            .run(json!({"command": "echo piped", "close_stdin": false}))
            .await;
        assert_eq!(run.stdout, "piped\n");
    }
    eventually("descriptors released", || count() <= baseline).await;
}

/// Right after start, before any request, the agent runs `true` once (its
/// warm-up), as a command would run, and reaps it. With `BASH_ENV` set a
/// command runs through bash (`simple.rs`), which leaves a mark.
#[tokio::test]
async fn the_agent_runs_true_once_at_start_and_reaps_it() {
    let dir = TempDir::new();
    let socket = dir.path().join("agent.sock");
    let workdir = dir.path().join("work");
    // A non-interactive bash sources $BASH_ENV: the warm-up leaves a mark.
    let marks = dir.path().join("marks");
    let script = dir.path().join("bash_env.sh");
    std::fs::write(&script, format!("echo warm >> {}\n", marks.display())).expect("script");
    let agent = Agent::adopt(
        Command::new(env!("CARGO_BIN_EXE_sandpit-agent"))
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--workdir")
            .arg(&workdir)
            .env("BASH_ENV", &script)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"),
        dir,
        socket,
        workdir,
    );
    eventually("the warm-up's mark", || marks.exists()).await;
    // Reaped: the agent keeps no child (nor zombie) of it.
    let pid = agent.pid();
    eventually("no child of the agent", || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .is_ok_and(|c| c.trim().is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let marks = std::fs::read_to_string(&marks).expect("marks");
    assert_eq!(marks, "warm\n", "one warm-up, no other command");
}
