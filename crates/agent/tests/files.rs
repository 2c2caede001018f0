//! `/upload`, `/download` (ranges, validators, HEAD), `/glob`, `/grep` and
//! path errors.

mod common;

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use common::{request, Agent, HttpResponse};
use serde_json::json;

const BOUNDARY: &str = "sandpit-test-boundary";

fn multipart(field: &str, content: &[u8]) -> Bytes {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"file\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

async fn upload(agent: &Agent, path: &str, content: &[u8]) -> HttpResponse {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let uri = format!("/upload?path={}", encode(path));
    agent
        .http(request(
            "POST",
            &uri,
            &[("content-type", &content_type)],
            multipart("file", content),
        ))
        .await
}

async fn download(agent: &Agent, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let uri = format!("/download?path={}", encode(path));
    agent
        .http(request("GET", &uri, headers, Bytes::new()))
        .await
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn upload_then_download_round_trips() {
    let agent = Agent::start();
    let content: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let response = upload(&agent, "nested/dir/data.bin", &content).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let on_disk = agent.workdir.join("nested/dir/data.bin");
    assert_eq!(std::fs::read(&on_disk).expect("written"), content);
    assert_eq!(
        std::fs::metadata(&on_disk)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    let response = download(&agent, &on_disk.display().to_string(), &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, content);
    assert_eq!(
        response.header("content-length"),
        Some(content.len().to_string())
    );
    let leftovers: Vec<_> = std::fs::read_dir(on_disk.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn overwriting_keeps_the_mode() {
    let agent = Agent::start();
    std::fs::create_dir_all(&agent.workdir).expect("workdir");
    let script = agent.workdir.join("run.sh");
    std::fs::write(&script, "old").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(
        upload(&agent, "run.sh", b"#!/bin/sh\necho new\n")
            .await
            .status,
        200
    );
    assert_eq!(
        std::fs::read_to_string(&script).expect("read"),
        "#!/bin/sh\necho new\n"
    );
    let mode = std::fs::metadata(&script)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755);
}

#[tokio::test]
async fn head_and_ranges() {
    let agent = Agent::start();
    assert_eq!(upload(&agent, "r.txt", b"0123456789").await.status, 200);
    let uri = "/download?path=r.txt";
    let head = agent.http(request("HEAD", uri, &[], Bytes::new())).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("10"));
    assert!(head.body.is_empty());
    let etag = head.header("etag").expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert!(head
        .header("last-modified")
        .expect("last-modified")
        .ends_with(" GMT"));
    assert!(head.header("content-type").is_some());

    let part = download(&agent, "r.txt", &[("range", "bytes=2-5")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &b"2345"[..]);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 2-5/10")
    );

    let tail = download(&agent, "r.txt", &[("range", "bytes=-3")]).await;
    assert_eq!((tail.status, &tail.body[..]), (206, &b"789"[..]));
    let clamped = download(&agent, "r.txt", &[("range", "bytes=8-100")]).await;
    assert_eq!((clamped.status, &clamped.body[..]), (206, &b"89"[..]));

    let past = download(&agent, "r.txt", &[("range", "bytes=10-")]).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range").as_deref(), Some("bytes */10"));

    let same = download(
        &agent,
        "r.txt",
        &[("range", "bytes=1-1"), ("if-range", &etag)],
    )
    .await;
    assert_eq!((same.status, &same.body[..]), (206, &b"1"[..]));
    let stale = download(
        &agent,
        "r.txt",
        &[("range", "bytes=1-1"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((stale.status, &stale.body[..]), (200, &b"0123456789"[..]));

    let unchanged = download(&agent, "r.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert_eq!(upload(&agent, "r.txt", b"changed!!!!").await.status, 200);
    let changed = download(&agent, "r.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(
        (changed.status, &changed.body[..]),
        (200, &b"changed!!!!"[..])
    );
}

#[tokio::test]
async fn missing_files_and_directories() {
    let agent = Agent::start();
    let missing = download(&agent, "/definitely/not/here.txt", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_kind(), "FileNotFound");
    let head = agent
        .http(request(
            "HEAD",
            "/download?path=/not/here",
            &[],
            Bytes::new(),
        ))
        .await;
    assert_eq!(head.status, 404);
    let dir = download(&agent, "/tmp", &[]).await;
    assert_eq!(dir.status, 400);
    assert_eq!(dir.error_kind(), "ReadError");
    let onto_dir = upload(&agent, "/tmp", b"x").await;
    assert_eq!(onto_dir.status, 400);
    assert_eq!(onto_dir.error_kind(), "WriteError");
}

#[tokio::test]
async fn bad_paths_are_rejected() {
    let agent = Agent::start();
    let empty = download(&agent, "", &[]).await;
    assert_eq!(empty.status, 400);
    assert!(empty.error_message().contains("empty"));
    let nul = agent.get("/download?path=a%00b").await;
    assert_eq!(nul.status, 400);
    assert!(nul.error_message().contains("NUL"));
    let escape = upload(&agent, "../../../../../../../../../etc/evil", b"x").await;
    assert_eq!(escape.status, 400);
    assert_eq!(escape.error_kind(), "WriteError");
    assert_eq!(escape.error_message(), "path escapes the sandbox root");
    let no_query = agent.get("/download").await;
    assert_eq!(no_query.status, 400);
    assert!(no_query.json()["detail"]["message"].is_string());
}

#[tokio::test]
async fn relative_paths_resolve_against_the_workdir() {
    let agent = Agent::start();
    assert_eq!(upload(&agent, "a/../b.txt", b"rel").await.status, 200);
    assert_eq!(
        std::fs::read(agent.workdir.join("b.txt")).expect("b.txt"),
        b"rel"
    );
    let run = agent.run(json!({"command": "cat b.txt"})).await;
    assert_eq!(run.stdout, "rel");
}

#[tokio::test]
async fn oversized_uploads_are_refused_without_a_trace() {
    let agent = Agent::start_with(&["--max-upload-bytes", "1000"]);
    let ok = upload(&agent, "small.bin", &[7u8; 1000]).await;
    assert_eq!(ok.status, 200);
    let too_big = upload(&agent, "big.bin", &[7u8; 1001]).await;
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.error_kind(), "WriteError");
    // Declared length far over the limit: refused before writing anything.
    let huge = upload(&agent, "huge.bin", &vec![7u8; 200_000]).await;
    assert_eq!(huge.status, 413);
    let names: Vec<String> = std::fs::read_dir(&agent.workdir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["small.bin".to_string()]);
}

#[tokio::test]
async fn glob_and_ls() {
    let agent = Agent::start();
    for (path, content) in [
        ("src/main.py", "x"),
        ("src/lib/util.py", "yy"),
        ("README.md", "r"),
        (".hidden", ""),
    ] {
        assert_eq!(upload(&agent, path, content.as_bytes()).await.status, 200);
    }
    let root = agent.workdir.display().to_string();
    let found = agent
        .post_json("/glob", json!({"pattern": "**/*.py", "path": root}))
        .await
        .json();
    let paths: Vec<&str> = found["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        vec![
            format!("{root}/src/lib/util.py"),
            format!("{root}/src/main.py")
        ]
    );
    assert_eq!(found["truncated"], false);
    let util = &found["matches"][0];
    assert_eq!(util["is_dir"], false);
    assert_eq!(util["size_bytes"], 2);
    assert!(util["modified_at"].as_str().expect("time").ends_with('Z'));

    let ls = agent
        .post_json("/glob", json!({"pattern": "*", "path": root}))
        .await
        .json();
    let names: Vec<(&str, bool)> = ls["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| {
            (
                m["path"].as_str().expect("path"),
                m["is_dir"].as_bool().expect("is_dir"),
            )
        })
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&(&format!("{root}/src"), true)));

    let limited = agent
        .post_json("/glob", json!({"pattern": "**", "path": root, "limit": 2}))
        .await
        .json();
    assert_eq!(limited["matches"].as_array().expect("matches").len(), 2);
    assert_eq!(limited["truncated"], true);

    let missing = agent
        .post_json("/glob", json!({"pattern": "*", "path": "/no/such/dir"}))
        .await;
    assert_eq!(missing.status, 404);
    let bad = agent
        .post_json("/glob", json!({"pattern": "[oops", "path": root}))
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn grep_finds_literal_lines() {
    let agent = Agent::start();
    upload(&agent, "a.py", b"import os\nprint('needle.*')\n").await;
    upload(&agent, "deep/b.txt", b"no\nneedle.* here\r\nneedle\n").await;
    upload(&agent, "bin.dat", b"needle.*\0binary").await;
    let root = agent.workdir.display().to_string();
    let found = agent
        .post_json("/grep", json!({"pattern": "needle.*", "path": root}))
        .await
        .json();
    let hits: Vec<(String, u64, String)> = found["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| {
            let path = m["path"]
                .as_str()
                .expect("path")
                .trim_start_matches(&root)
                .to_string();
            (
                path,
                m["line"].as_u64().expect("line"),
                m["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        vec![
            ("/a.py".to_string(), 2, "print('needle.*')".to_string()),
            ("/deep/b.txt".to_string(), 2, "needle.* here".to_string()),
        ]
    );
    let only_txt = agent
        .post_json(
            "/grep",
            json!({"pattern": "needle", "path": root, "glob": "*.txt"}),
        )
        .await
        .json();
    assert_eq!(only_txt["matches"].as_array().expect("matches").len(), 2);
    let limited = agent
        .post_json(
            "/grep",
            json!({"pattern": "needle", "path": root, "limit": 1}),
        )
        .await
        .json();
    assert_eq!(limited["matches"].as_array().expect("matches").len(), 1);
    assert_eq!(limited["truncated"], true);
    let empty = agent
        .post_json("/grep", json!({"pattern": "", "path": root}))
        .await;
    assert_eq!(empty.status, 400);
}
