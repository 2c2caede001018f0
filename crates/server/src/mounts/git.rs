//! Git mounts: the host's `git` fetches the ref into a per-sandbox work
//! tree that the sandbox sees read-only, and fetches again every
//! `refresh_interval_seconds`.
//!
//! The repository (`git-<n>.git`) is kept beside the work tree (`git-<n>`),
//! so the sandbox sees the files only, no `.git`. Every command runs with
//! an empty environment and configuration (no system or global config, no
//! hooks, no credential helpers, no prompts), only `https` (through the
//! mount proxy, trusting the host's roots and `--egress-upstream-ca`), no
//! submodules, no LFS filters. The sandbox cannot write the work tree (it
//! is bound read-only), so the host never works on files a sandbox made.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::config::{GitMount, GitRef};

/// Longest a clone or fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a checkout may take.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where one git mount lives on the host and how it reaches its remote.
#[derive(Debug, Clone)]
pub struct GitPlace {
    pub work_tree: PathBuf,
    pub git_dir: PathBuf,
    /// An empty directory: `HOME` of every git command.
    pub home: PathBuf,
    /// Trusted roots (the host's plus `--egress-upstream-ca`).
    pub ca_bundle: PathBuf,
    pub proxy_url: String,
}

fn git(place: &GitPlace) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &place.home)
        .env("GIT_DIR", &place.git_dir)
        .env("GIT_WORK_TREE", &place.work_tree)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_ALLOW_PROTOCOL", "https")
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .env("LC_ALL", "C");
    for setting in [
        "protocol.allow=never".to_owned(),
        "protocol.https.allow=always".to_owned(),
        "core.hooksPath=/dev/null".to_owned(),
        "core.fsmonitor=false".to_owned(),
        "core.symlinks=true".to_owned(),
        "credential.helper=".to_owned(),
        "submodule.recurse=false".to_owned(),
        "fetch.recurseSubmodules=false".to_owned(),
        "gc.auto=0".to_owned(),
        "advice.detachedHead=false".to_owned(),
        "http.lowSpeedLimit=1000".to_owned(),
        "http.lowSpeedTime=60".to_owned(),
        format!("http.sslCAInfo={}", place.ca_bundle.display()),
        format!("http.proxy={}", place.proxy_url),
    ] {
        cmd.arg("-c").arg(setting);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, what: &str, timeout: Duration) -> Result<String, String> {
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| format!("git {what} took longer than {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(format!("git {what} failed: {}", last.trim()))
}

/// What to fetch for `reference`.
fn refspec(reference: &GitRef) -> String {
    match reference {
        GitRef::Head => "HEAD".into(),
        GitRef::Branch(name) => format!("refs/heads/{name}"),
        GitRef::Tag(name) => format!("refs/tags/{name}"),
        GitRef::Commit(id) => id.clone(),
    }
}

/// Bring the work tree to the ref's current commit (a first clone or a
/// refresh). Returns the commit checked out.
pub async fn sync(place: &GitPlace, mount: &GitMount) -> Result<String, String> {
    for dir in [&place.work_tree, &place.home] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if !place.git_dir.join("HEAD").exists() {
        let mut init = git(place);
        // With GIT_DIR and GIT_WORK_TREE set, init makes the repository
        // there and records the work tree (core.worktree).
        init.args(["init", "-q"]);
        run(init, "init", CHECKOUT_TIMEOUT).await?;
    }
    // A checkout cut short (the sandbox stopped mid-refresh) leaves its
    // lock behind; this is the only writer of the repository.
    let _ = std::fs::remove_file(place.git_dir.join("index.lock"));
    let mut fetch = git(place);
    fetch
        .args([
            "fetch",
            "-q",
            "--no-tags",
            "--depth=1",
            "--no-write-fetch-head",
        ])
        .arg("--")
        .arg(&mount.remote_url)
        .arg(format!(
            "+{}:refs/sandpit/mounted",
            refspec(&mount.reference)
        ));
    run(fetch, "fetch", FETCH_TIMEOUT).await?;
    let mut wanted = git(place);
    wanted.args([
        "rev-parse",
        "--verify",
        "-q",
        "refs/sandpit/mounted^{commit}",
    ]);
    let commit = run(wanted, "rev-parse", CHECKOUT_TIMEOUT).await?;
    let mut current = git(place);
    current.args(["rev-parse", "--verify", "-q", "HEAD^{commit}"]);
    if run(current, "rev-parse", CHECKOUT_TIMEOUT).await.ok() == Some(commit.clone()) {
        return Ok(commit);
    }
    let mut checkout = git(place);
    checkout.args(["checkout", "-q", "-f", "--detach", &commit, "--"]);
    run(checkout, "checkout", CHECKOUT_TIMEOUT).await?;
    Ok(commit)
}

/// The host paths of git mount `n` of a sandbox whose mount files live in
/// `dir`.
pub fn place(dir: &Path, n: usize, ca_bundle: &Path, proxy_url: String) -> GitPlace {
    GitPlace {
        work_tree: dir.join(format!("git-{n}")),
        git_dir: dir.join(format!("git-{n}.git")),
        home: dir.join("home"),
        ca_bundle: ca_bundle.to_path_buf(),
        proxy_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_map_to_refspecs() {
        assert_eq!(refspec(&GitRef::Head), "HEAD");
        assert_eq!(refspec(&GitRef::Branch("main".into())), "refs/heads/main");
        assert_eq!(refspec(&GitRef::Tag("v1".into())), "refs/tags/v1");
    }
}
