//! `sandpit cp`: files and directory trees between the host and a sandbox.
//!
//! `sandpit cp ./dir box:/home/user/dir` uploads every file under `./dir`
//! to the same relative path under the target; `sandpit cp box:/path ./local`
//! downloads a file or a whole tree (listed with `find` inside the sandbox).
//! A target ending in `/` receives the source under its own base name.
//! Files go through the data plane's `/upload` and `/download`, byte for byte.
//! On a terminal, stderr shows the bytes moved (a bar with the total for
//! uploads, a counter updated per received chunk for downloads).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use sandpit_client::{ExecOptions, SandboxHandle};

use super::connect::Connection;
use super::progress;

#[derive(Args)]
pub struct CpArgs {
    #[command(flatten)]
    conn: Connection,
    /// `LOCAL` or `SANDBOX:PATH`.
    source: String,
    /// `LOCAL` or `SANDBOX:PATH` (the other kind).
    target: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Remote { sandbox: String, path: String },
}

fn parse_place(arg: &str) -> Place {
    match arg.split_once(':') {
        Some((sandbox, path))
            if !sandbox.is_empty() && !sandbox.contains('/') && path.starts_with('/') =>
        {
            Place::Remote {
                sandbox: sandbox.to_owned(),
                path: path.to_owned(),
            }
        }
        _ => Place::Local(PathBuf::from(arg)),
    }
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Every regular file under `root`, as paths relative to it.
fn local_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

struct Tally {
    files: usize,
    bytes: usize,
}

/// Total size of the regular files `rels` under `root`.
fn local_size(root: &Path, rels: &[PathBuf]) -> u64 {
    rels.iter()
        .filter_map(|rel| std::fs::metadata(root.join(rel)).ok())
        .map(|m| m.len())
        .sum()
}

async fn upload(
    sandbox: &SandboxHandle,
    local: &Path,
    remote: &str,
    bar: &ProgressBar,
) -> anyhow::Result<Tally> {
    let mut tally = Tally { files: 0, bytes: 0 };
    let meta = std::fs::metadata(local).with_context(|| format!("{}", local.display()))?;
    let remote = if remote.ends_with('/') {
        format!("{remote}{}", base_name(&local.to_string_lossy()))
    } else {
        remote.to_owned()
    };
    if meta.is_file() {
        bar.set_length(meta.len());
        let data = std::fs::read(local)?;
        sandbox.upload(&remote, &data).await?;
        bar.inc(meta.len());
        return Ok(Tally {
            files: 1,
            bytes: data.len(),
        });
    }
    let files = local_files(local)?;
    bar.set_length(local_size(local, &files));
    for rel in files {
        bar.set_message(rel.to_string_lossy().into_owned());
        let data = std::fs::read(local.join(&rel))?;
        let target = format!("{}/{}", remote.trim_end_matches('/'), rel.to_string_lossy());
        sandbox
            .upload(&target, &data)
            .await
            .with_context(|| format!("uploading {target}"))?;
        bar.inc(data.len() as u64);
        tally.files += 1;
        tally.bytes += data.len();
    }
    Ok(tally)
}

/// Files under `path` in the sandbox (relative), or `None` if it is a file.
async fn remote_files(sandbox: &SandboxHandle, path: &str) -> anyhow::Result<Option<Vec<String>>> {
    let quoted = format!("'{}'", path.replace('\'', r"'\''"));
    let script = format!(
        "if [ -d {quoted} ]; then cd {quoted} && find . -type f -print0; \
         elif [ -e {quoted} ]; then printf 'FILE'; else echo 'No such file or directory' >&2; exit 2; fi"
    );
    let options = ExecOptions {
        shell: "/bin/sh".into(),
        ..ExecOptions::default()
    };
    let listing = sandbox.run_with(&script, &options).await?;
    if listing.exit_code != 0 {
        bail!("{path}: {}", listing.stderr.trim());
    }
    if listing.stdout == "FILE" {
        return Ok(None);
    }
    let mut files: Vec<String> = listing
        .stdout
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(|f| f.trim_start_matches("./").to_owned())
        .collect();
    files.sort();
    Ok(Some(files))
}

async fn download(
    sandbox: &SandboxHandle,
    remote: &str,
    local: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Tally> {
    let local = if local.to_string_lossy().ends_with('/') || local.is_dir() {
        local.join(base_name(remote))
    } else {
        local.to_owned()
    };
    let Some(files) = remote_files(sandbox, remote).await? else {
        let data = sandbox.download_with(remote, |n| bar.inc(n as u64)).await?;
        write_local(&local, &data)?;
        return Ok(Tally {
            files: 1,
            bytes: data.len(),
        });
    };
    std::fs::create_dir_all(&local)?;
    if let Some(bad) = files.iter().find(|rel| rel.split('/').any(|p| p == "..")) {
        bail!("refusing a path that leaves the target: {bad}");
    }
    // A few downloads at a time: one after another, each waits a round
    // trip (and small responses on a kept-alive connection are slow).
    let sizes: Vec<usize> = futures_util::stream::iter(files)
        .map(|rel| download_one(sandbox, remote, &local, rel, bar))
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect()
        .await?;
    Ok(Tally {
        files: sizes.len(),
        bytes: sizes.iter().sum(),
    })
}

const PARALLEL_DOWNLOADS: usize = 8;

/// Download `remote/rel` to `local/rel`; returns its size.
async fn download_one(
    sandbox: &SandboxHandle,
    remote: &str,
    local: &Path,
    rel: String,
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let source = format!("{}/{rel}", remote.trim_end_matches('/'));
    bar.set_message(rel.clone());
    let data = sandbox
        .download_with(&source, |n| bar.inc(n as u64))
        .await
        .with_context(|| format!("downloading {source}"))?;
    write_local(&local.join(&rel), &data)?;
    Ok(data.len())
}

fn write_local(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

pub async fn cp(args: CpArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let tally = match (parse_place(&args.source), parse_place(&args.target)) {
        (Place::Local(local), Place::Remote { sandbox, path }) => {
            let sb = client.sandbox(&client.get_sandbox(&sandbox).await?);
            let bar = progress::bytes(Some(0), args.conn.json);
            let tally = upload(&sb, &local, &path, &bar).await;
            bar.finish_and_clear();
            tally?
        }
        (Place::Remote { sandbox, path }, Place::Local(local)) => {
            let sb = client.sandbox(&client.get_sandbox(&sandbox).await?);
            let bar = progress::bytes(None, args.conn.json);
            let tally = download(&sb, &path, &local, &bar).await;
            bar.finish_and_clear();
            tally?
        }
        _ => bail!("one side must be SANDBOX:/path and the other a local path"),
    };
    if args.conn.json {
        println!(
            "{}",
            serde_json::json!({"files": tally.files, "bytes": tally.bytes})
        );
    } else {
        let size = indicatif::BinaryBytes(tally.bytes as u64);
        eprintln!(
            "copied {} files, {} bytes ({size})",
            tally.files, tally.bytes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_places_name_a_sandbox_and_an_absolute_path() {
        assert_eq!(
            parse_place("box:/home/user"),
            Place::Remote {
                sandbox: "box".into(),
                path: "/home/user".into()
            }
        );
        assert_eq!(parse_place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(parse_place("C:relative"), Place::Local("C:relative".into()));
    }

    #[test]
    fn local_trees_are_listed_relative_and_sorted() {
        let dir = std::env::temp_dir().join(format!("sp-cp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/c.txt"), "c").unwrap();
        std::fs::write(dir.join("top"), "t").unwrap();
        let files = local_files(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            files,
            vec![PathBuf::from("a/b/c.txt"), PathBuf::from("top")]
        );
    }
}
