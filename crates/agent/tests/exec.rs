//! Running commands over `/execute/ws`: output, exit codes, streaming,
//! offsets, timeouts, kill, stdin, PTY, environment and concurrency.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{alive, eventually, is_root, Agent};
use serde_json::json;

#[tokio::test]
async fn reports_stdout_stderr_and_exit_code() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "echo hello; echo oops >&2; exit 3", "command_id": "c1"}))
        .await;
    assert_eq!(run.command_id(), "c1");
    assert!(run.started()["pid"].as_i64().expect("pid") > 0);
    assert_eq!(run.stdout, "hello\n");
    assert_eq!(run.stderr, "oops\n");
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.messages.last().expect("messages")["type"], "exit");
}

#[tokio::test]
async fn generates_a_command_id_when_none_is_given() {
    let agent = Agent::start();
    let run = agent.run(json!({"command": "true"})).await;
    assert!(!run.command_id().is_empty());
    assert_eq!(run.exit_code, Some(0));
}

#[tokio::test]
async fn output_arrives_before_the_command_sleeps_out() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "echo first; sleep 1; echo second"}))
        .await;
    ws.started().await;
    let begun = Instant::now();
    let first = ws.recv().await.expect("first chunk");
    assert_eq!(first["data"], "first\n");
    assert!(
        begun.elapsed() < Duration::from_millis(700),
        "first chunk was held back"
    );
    let run = ws.collect().await;
    assert_eq!(run.stdout, "second\n");
    assert_eq!(run.exit_code, Some(0));
}

#[tokio::test]
async fn streams_are_ordered_and_offsets_contiguous() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "seq 1 200000; seq 1 50000 >&2"}))
        .await;
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    assert_eq!(run.stdout, expected);
    assert_eq!(run.assert_contiguous("stdout", 0), expected.len() as u64);
    let expected_err: String = (1..=50_000).map(|n| format!("{n}\n")).collect();
    assert_eq!(run.stderr, expected_err);
    run.assert_contiguous("stderr", 0);
}

#[tokio::test]
async fn invalid_and_split_utf8_is_decoded_across_reads() {
    let agent = Agent::start();
    // The euro sign is split across two writes (and so two reads), then an
    // invalid byte follows.
    let run = agent
        .run(json!({"command": r"printf 'a\342\202'; sleep 0.3; printf '\254b\377c'"}))
        .await;
    assert_eq!(run.stdout, "a€b\u{FFFD}c");
    // Offsets count the emitted UTF-8: 'a'(1) '€'(3) 'b'(1) U+FFFD(3) 'c'(1).
    assert_eq!(run.assert_contiguous("stdout", 0), 9);
    let first = run
        .messages
        .iter()
        .find(|m| m["type"] == "stdout")
        .expect("stdout");
    assert_eq!(
        first["data"], "a",
        "the partial character must be held back"
    );
}

#[tokio::test]
async fn timeout_kills_the_group_and_reports_command_timeout() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 30 & echo $!; wait", "timeout_seconds": 1}))
        .await;
    ws.started().await;
    let child: i32 = ws.recv().await.expect("pid line")["data"]
        .as_str()
        .expect("data")
        .trim()
        .parse()
        .expect("pid");
    let begun = Instant::now();
    let run = ws.collect().await;
    let error = run.error.expect("error message");
    assert_eq!(error["error_type"], "CommandTimeout");
    assert!(error["error"].as_str().expect("text").contains("timed out"));
    assert_eq!(run.exit_code, None);
    assert!(begun.elapsed() < Duration::from_secs(5));
    eventually("background child killed", || !alive(child)).await;
}

#[tokio::test]
async fn zero_timeout_means_none() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "sleep 1.2; echo ok", "timeout_seconds": 0}))
        .await;
    assert_eq!(run.stdout, "ok\n");
}

#[tokio::test]
async fn kill_sigkills_the_whole_process_group() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "sleep 100 & echo $!; sleep 100"}))
        .await;
    let started = ws.started().await;
    let leader = started["pid"].as_i64().expect("pid") as i32;
    let child: i32 = ws.recv().await.expect("pid line")["data"]
        .as_str()
        .expect("data")
        .trim()
        .parse()
        .expect("pid");
    ws.send(json!({"type": "kill"})).await;
    let run = ws.collect().await;
    assert_eq!(run.exit_code, Some(128 + 9));
    eventually("leader gone", || !alive(leader)).await;
    eventually("background child gone", || !alive(child)).await;
}

#[tokio::test]
async fn input_reaches_stdin() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "read line; echo got:$line"}))
        .await;
    ws.started().await;
    ws.send(json!({"type": "input", "data": "hello\n"})).await;
    let run = ws.collect().await;
    assert_eq!(run.stdout, "got:hello\n");
}

#[tokio::test]
async fn close_stdin_message_sends_eof_after_queued_input() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(json!({"command": "cat; echo done"})).await;
    ws.started().await;
    ws.send(json!({"type": "input", "data": "abc\n"})).await;
    ws.send(json!({"type": "close_stdin"})).await;
    let run = ws.collect().await;
    assert_eq!(run.stdout, "abc\ndone\n");
}

#[tokio::test]
async fn close_stdin_on_execute_gives_immediate_eof() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "cat; echo eof", "close_stdin": true, "timeout_seconds": 5}))
        .await;
    assert_eq!(run.stdout, "eof\n");
}

#[tokio::test]
async fn pty_is_a_controlling_terminal() {
    let agent = Agent::start();
    let run = agent
        .run(
            json!({"command": "tty; test -t 0 && echo in-tty; echo err >&2; stty size",
            "pty": true, "cols": 100, "rows": 40}),
        )
        .await;
    assert!(
        run.stdout.starts_with("/dev/pts/"),
        "stdout: {:?}",
        run.stdout
    );
    assert!(run.stdout.contains("in-tty\r\n"));
    assert!(
        run.stdout.contains("err\r\n"),
        "stderr is merged into stdout"
    );
    assert!(run.stdout.contains("40 100"));
    assert_eq!(run.stderr, "");
    assert_eq!(run.exit_code, Some(0));
}

#[tokio::test]
async fn pty_resize_and_input() {
    let agent = Agent::start();
    let mut ws = agent.ws().await;
    ws.execute(
        json!({"command": "read x; stty size; echo TERM=$TERM", "pty": true,
        "env": {"TERM": ""}}),
    )
    .await;
    ws.started().await;
    ws.send(json!({"type": "resize", "cols": 132, "rows": 50}))
        .await;
    ws.send(json!({"type": "input", "data": "go\r"})).await;
    let run = ws.collect().await;
    assert!(run.stdout.contains("50 132"), "stdout: {:?}", run.stdout);
}

#[tokio::test]
async fn pty_sets_term_when_unset() {
    // The harness starts the agent without TERM, like a fresh sandbox.
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "echo T=$TERM", "pty": true}))
        .await;
    assert_eq!(run.stdout, "T=xterm-256color\r\n");
    // Without a PTY nothing sets TERM (bash's own unexported "dumb" aside).
    let run = agent
        .run(json!({"command": "printenv TERM || echo none"}))
        .await;
    assert_eq!(run.stdout, "none\n");
    let run = agent
        .run(json!({"command": "echo T=$TERM", "pty": true, "env": {"TERM": "dumb"}}))
        .await;
    assert_eq!(run.stdout, "T=dumb\r\n");
}

#[tokio::test]
async fn env_cwd_and_run_config() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "echo $FOO; pwd", "env": {"FOO": "bar"}, "cwd": "/tmp"}))
        .await;
    assert_eq!(run.stdout, "bar\n/tmp\n");
    let run = agent
        .run(json!({"command": "echo $A; pwd",
            "run_config": {"env_vars": {"A": "b"}, "work_dir": "/"}}))
        .await;
    assert_eq!(run.stdout, "b\n/\n");
    let run = agent.run(json!({"command": "pwd"})).await;
    assert_eq!(run.stdout.trim(), agent.workdir.display().to_string());
    // The agent's own environment is the base.
    let run = agent
        .run(json!({"command": "test -n \"$PATH\" && echo has-path"}))
        .await;
    assert_eq!(run.stdout, "has-path\n");
}

#[tokio::test]
async fn run_config_user() {
    if !is_root() {
        return;
    }
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "id -u; id -g", "run_config": {"user": "65534:65534", "work_dir": "/"}}))
        .await;
    assert_eq!(run.stdout, "65534\n65534\n");
    let run = agent
        .run(json!({"command": "id -un", "run_config": {"user": "nobody", "work_dir": "/"}}))
        .await;
    assert_eq!(run.stdout, "nobody\n");
    let run = agent
        .run(json!({"command": "true", "run_config": {"user": "no-such-user-here"}}))
        .await;
    assert_eq!(run.error.expect("error")["error_type"], "CommandError");
}

#[tokio::test]
async fn bad_requests_get_error_messages() {
    let agent = Agent::start();
    let run = agent
        .run(json!({"command": "true", "shell": "/bin/no-such-shell"}))
        .await;
    let error = run.error.expect("error");
    assert_eq!(error["error_type"], "CommandError");
    assert!(error["error"]
        .as_str()
        .expect("text")
        .contains("/bin/no-such-shell"));

    let run = agent
        .run(json!({"command": "true", "cwd": "/no/such/dir"}))
        .await;
    assert_eq!(run.error.expect("error")["error_type"], "CommandError");

    let mut ws = agent.ws().await;
    ws.send(json!({"type": "kill"})).await;
    let run = ws.collect().await;
    assert_eq!(run.error.expect("error")["error_type"], "InvalidRequest");
}

#[tokio::test]
async fn execute_with_an_existing_id_attaches_instead_of_rerunning() {
    let agent = Agent::start();
    let mut first = agent.ws().await;
    first
        .execute(json!({"command": "echo once; sleep 0.5; echo end", "command_id": "same"}))
        .await;
    let pid = first.started().await["pid"].clone();
    let mut second = agent.ws().await;
    second
        .execute(json!({"command": "echo once; sleep 0.5; echo end", "command_id": "same"}))
        .await;
    assert_eq!(second.started().await["pid"], pid);
    let (a, b) = tokio::join!(first.collect(), second.collect());
    assert_eq!(a.stdout, "once\nend\n");
    assert_eq!(b.stdout, "once\nend\n");
}

#[tokio::test]
async fn fifty_concurrent_commands() {
    let agent = Agent::start();
    let runs = (0..50).map(|n| {
        let agent = &agent;
        async move {
            let run = agent
                .run(json!({"command": format!("sleep 0.2; seq 1 {n}; echo err{n} >&2; exit {}", n % 7)}))
                .await;
            (n, run)
        }
    });
    for (n, run) in futures_util::future::join_all(runs).await {
        let expected: String = (1..=n).map(|i| format!("{i}\n")).collect();
        assert_eq!(run.stdout, expected, "command {n}");
        assert_eq!(run.stderr, format!("err{n}\n"));
        assert_eq!(run.exit_code, Some(n % 7));
    }
}

#[tokio::test]
async fn blocking_execute() {
    let agent = Agent::start();
    let response = agent
        .post_json(
            "/execute",
            json!({"command": "echo $X; echo e >&2; exit 4",
            "timeout": 10, "shell": "/bin/bash", "env": {"X": "y"}, "cwd": "/tmp"}),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"stdout": "y\n", "stderr": "e\n", "exit_code": 4})
    );

    let response = agent
        .post_json("/execute", json!({"command": "sleep 5", "timeout": 1}))
        .await;
    assert_eq!(response.status, 408);
    assert_eq!(response.error_kind(), "CommandTimeout");

    let response = agent.post_json("/execute", json!({"nope": 1})).await;
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn health() {
    let agent = Agent::start();
    let response = agent.get("/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"status": "ok"}));
    assert_eq!(agent.get("/nope").await.error_kind(), "NotFound");
    let wrong_method = agent.get("/upload").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.error_kind(), "InvalidRequest");
    let not_upgraded = agent.get("/execute/ws").await;
    assert!(not_upgraded.status >= 400);
    assert_eq!(not_upgraded.error_kind(), "InvalidRequest");
}

/// An agent whose own environment is only `PATH` and `HOME`, as in a
/// sandbox (the test runner's `PWD` or `OLDPWD` would send every command
/// through the shell).
fn agent_with_plain_env() -> Agent {
    Agent::start_configured(|command| {
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/root");
    })
}

/// Sorted `NAME=value` lines of `env -0` output.
fn env_lines(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .split('\0')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Issue 19: a simple command runs without bash (`simple.rs`), and sees
/// exactly what it sees when bash executes it. `\env` is the same command
/// to bash (quote removal) but not plain, so it goes through bash.
#[tokio::test]
async fn simple_commands_skip_the_shell_and_see_what_bash_gives() {
    let agent = agent_with_plain_env();
    // A `bash` that notes each start and then is bash.
    let shell = agent.dir.path().join("bash");
    let log = agent.dir.path().join("bash.log");
    std::fs::write(
        &shell,
        format!(
            "#!/bin/sh\necho x >> {}\nexec /bin/bash \"$@\"\n",
            log.display()
        ),
    )
    .expect("write shell");
    std::fs::set_permissions(&shell, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = agent
        .run(json!({"command": "env -0", "shell": shell}))
        .await;
    assert_eq!(run.exit_code, Some(0));
    assert!(!log.exists(), "a simple command started the shell");
    let run = agent
        .run(json!({"command": "\\env -0", "shell": shell}))
        .await;
    assert_eq!(run.exit_code, Some(0));
    assert!(log.exists(), "a quoted word must go through the shell");

    for (request, what) in [
        (json!({}), "defaults"),
        (
            json!({"cwd": "/tmp", "env": {"SHLVL": "4", "_": "x", "A": "b c"}}),
            "cwd and env",
        ),
    ] {
        let mut direct = request.clone();
        direct["command"] = json!("env -0");
        let mut shell = request;
        shell["command"] = json!("\\env -0");
        let (direct, shell) = (agent.run(direct).await, agent.run(shell).await);
        assert_eq!(
            env_lines(&direct.stdout),
            env_lines(&shell.stdout),
            "{what}"
        );
        assert!(
            direct.stdout.contains("PWD="),
            "{what}: {:?}",
            direct.stdout
        );
    }
}

/// What fails without the shell fails as bash reports it: the child falls
/// back to the shell when the program cannot be executed.
#[tokio::test]
async fn simple_commands_that_cannot_run_fail_as_in_bash() {
    let agent = agent_with_plain_env();
    let run = agent.run(json!({"command": "false"})).await;
    assert_eq!(run.exit_code, Some(1));
    let run = agent.run(json!({"command": "no-such-program-x1"})).await;
    assert_eq!(run.exit_code, Some(127));
    assert!(run.stderr.contains("command not found"), "{}", run.stderr);
    // Found as a path but not executable: execve fails, bash says why.
    let plain = agent.dir.path().join("plain");
    std::fs::write(&plain, "echo hi\n").expect("write");
    let run = agent
        .run(json!({"command": plain.display().to_string()}))
        .await;
    assert_eq!(run.exit_code, Some(126), "{run:?}");
    assert!(run.stderr.contains("Permission denied"), "{}", run.stderr);
    // A script without `#!`: execve refuses it, bash runs it.
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = agent
        .run(json!({"command": plain.display().to_string()}))
        .await;
    assert_eq!((run.exit_code, run.stdout.as_str()), (Some(0), "hi\n"));
}
