//! Bucket mounts: one `rclone mount` per mount, run by the server in the
//! runtime helper's mount namespace (where the sandbox's binds come from),
//! the FUSE file system then bound into the sandbox.
//!
//! The credentials reach rclone through its environment only (never its
//! command line, which any host user can read); the environment is
//! otherwise empty. Files show the owner the sandbox's root has on the host
//! (`--uid`/`--gid`: FUSE mounts cannot be idmapped), so they are root's
//! inside. Each process's pid is kept in `fuse-<n>.pid`, so a restarted
//! server finds and stops what an earlier one started.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::config::{BucketMount, Store};

/// How long rclone has to show its mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the reachability check may take before the mount goes ahead.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long rclone has to flush and unmount after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials for one bucket mount, resolved at mount time.
#[derive(Clone)]
pub enum Credentials {
    Aws { key_id: String, secret: String },
    Gcp { service_account_json: String },
}

/// Everything rclone needs besides the mount itself.
pub struct FuseContext<'a> {
    /// A process in whose mount namespace to mount (`None`: ours).
    pub namespace_pid: Option<u32>,
    /// Host id of the sandbox's root (the files' owner).
    pub owner: u32,
    pub ca_bundle: &'a Path,
    pub proxy_url: &'a str,
}

/// A running rclone.
pub struct FuseMount {
    pub mountpoint: PathBuf,
    pub pid: u32,
    pub child: Option<Child>,
}

pub fn mountpoint(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("fuse-{n}"))
}

fn pid_file(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("fuse-{n}.pid"))
}

/// `rclone mount` of `mount` at `dir/fuse-<n>`; returns once the file
/// system is mounted.
pub async fn mount(
    dir: &Path,
    n: usize,
    mount: &BucketMount,
    credentials: Credentials,
    cx: &FuseContext<'_>,
) -> Result<FuseMount, String> {
    let point = mountpoint(dir, n);
    let cache = dir.join(format!("cache-{n}"));
    let log = dir.join(format!("fuse-{n}.log"));
    for d in [&point, &cache] {
        fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    check_reachable(mount, &credentials, cx, dir).await?;
    let mut cmd = rclone(mount, &credentials, cx, dir);
    cmd.arg("mount")
        .arg(remote_path(mount))
        .arg(&point)
        .arg("--allow-other")
        .args([
            "--uid",
            &cx.owner.to_string(),
            "--gid",
            &cx.owner.to_string(),
        ])
        .args([
            "--dir-perms",
            "0755",
            "--file-perms",
            "0644",
            "--umask",
            "022",
        ])
        .args(["--dir-cache-time", "10s", "--poll-interval", "0"])
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--log-file")
        .arg(&log)
        .args(["--log-level", "NOTICE"]);
    match mount.read_only {
        true => cmd.args(["--read-only", "--vfs-cache-mode", "off"]),
        false => cmd.args(["--vfs-cache-mode", "writes"]),
    };
    if let Some(bytes) = mount.cache_max_size_bytes {
        cmd.args(["--vfs-cache-max-size", &bytes.to_string()]);
    }
    let writeback = mount.writeback_seconds.unwrap_or(5);
    cmd.args(["--vfs-write-back", &format!("{writeback}s")]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    enter_namespace(&mut cmd, cx.namespace_pid)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run rclone (is it installed?): {e}"))?;
    let pid = child.id().ok_or("rclone exited at once")?;
    let _ = fs::write(pid_file(dir, n), pid.to_string());
    let started = Instant::now();
    loop {
        if is_mounted(cx.namespace_pid, &point) {
            return Ok(FuseMount {
                mountpoint: point,
                pid,
                child: Some(child),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = fs::remove_file(pid_file(dir, n));
            return Err(format!("rclone exited ({status}): {}", last_lines(&log)));
        }
        if started.elapsed() > MOUNT_TIMEOUT {
            let mut gone = FuseMount {
                mountpoint: point,
                pid,
                child: Some(child),
            };
            stop(&mut gone, cx.namespace_pid).await;
            let _ = fs::remove_file(pid_file(dir, n));
            return Err(format!(
                "the bucket was not mounted in time: {}",
                last_lines(&log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An rclone with an empty environment but for the remote's settings
/// (credentials included) and the proxy, trusting `ca_bundle`.
fn rclone(
    mount: &BucketMount,
    credentials: &Credentials,
    cx: &FuseContext<'_>,
    dir: &Path,
) -> Command {
    let mut cmd = Command::new("rclone");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", dir)
        .env("HTTPS_PROXY", cx.proxy_url)
        .env("HTTP_PROXY", cx.proxy_url);
    for (key, value) in remote_settings(mount, credentials) {
        cmd.env(format!("RCLONE_CONFIG_SANDPIT_{key}"), value);
    }
    cmd.args(["--config", "/dev/null", "--ca-cert"])
        .arg(cx.ca_bundle);
    cmd
}

/// List the bucket's root once with the mount's credentials, so that a
/// missing bucket, refused credentials or an unreachable endpoint fail the
/// boot with rclone's message instead of showing an empty directory. The
/// first name listed is enough; a listing slower than [`CHECK_TIMEOUT`]
/// lets the mount go ahead.
async fn check_reachable(
    mount: &BucketMount,
    credentials: &Credentials,
    cx: &FuseContext<'_>,
    dir: &Path,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut cmd = rclone(mount, credentials, cx, dir);
    cmd.arg("lsf")
        .arg(format!("sandpit:{}", mount.bucket))
        .args([
            "--max-depth",
            "1",
            "--retries",
            "1",
            "--low-level-retries",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run rclone (is it installed?): {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no rclone output")?;
    let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
        let mut first = [0u8; 1];
        if stdout.read(&mut first).await.unwrap_or(0) > 0 {
            return Ok(());
        }
        let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_owned();
        Err(match output.status.code() {
            Some(3) => format!("bucket '{}' not found ({why})", mount.bucket),
            _ => format!("cannot list bucket '{}': {why}", mount.bucket),
        })
    })
    .await;
    checked.unwrap_or(Ok(()))
}

/// The `RCLONE_CONFIG_SANDPIT_*` settings of the remote.
fn remote_settings(mount: &BucketMount, credentials: &Credentials) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match &mount.store {
        Store::S3 {
            endpoint_url,
            region,
            path_style,
            kms_key,
        } => {
            let aws = endpoint_url.contains(".amazonaws.com");
            out.extend([
                ("TYPE", "s3".to_owned()),
                ("PROVIDER", if aws { "AWS" } else { "Other" }.to_owned()),
                ("ENV_AUTH", "false".to_owned()),
                ("REGION", region.clone()),
                ("ENDPOINT", endpoint_url.clone()),
                ("FORCE_PATH_STYLE", path_style.to_string()),
                ("NO_CHECK_BUCKET", "true".to_owned()),
            ]);
            if let Some(key) = kms_key {
                out.push(("SERVER_SIDE_ENCRYPTION", "aws:kms".to_owned()));
                out.push(("SSE_KMS_KEY_ID", key.clone()));
            }
        }
        Store::Gcs { endpoint } => {
            out.extend([
                ("TYPE", "google cloud storage".to_owned()),
                ("BUCKET_POLICY_ONLY", "true".to_owned()),
                ("ENV_AUTH", "false".to_owned()),
            ]);
            if let Some(endpoint) = endpoint {
                out.push(("ENDPOINT", format!("{endpoint}/storage/v1/")));
            }
        }
    }
    match credentials {
        Credentials::Aws { key_id, secret } => {
            out.push(("ACCESS_KEY_ID", key_id.clone()));
            out.push(("SECRET_ACCESS_KEY", secret.clone()));
        }
        Credentials::Gcp {
            service_account_json,
        } => out.push(("SERVICE_ACCOUNT_CREDENTIALS", service_account_json.clone())),
    }
    out
}

fn remote_path(mount: &BucketMount) -> String {
    match mount.prefix.is_empty() {
        true => format!("sandpit:{}", mount.bucket),
        false => format!("sandpit:{}/{}", mount.bucket, mount.prefix),
    }
}

/// Make `cmd` join the mount namespace of `pid` before it runs.
fn enter_namespace(cmd: &mut Command, pid: Option<u32>) -> Result<(), String> {
    let Some(pid) = pid else {
        return Ok(());
    };
    let ns = fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| format!("opening the runtime's mount namespace: {e}"))?;
    let fd = ns.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setns(2), which is async-signal-safe; `ns` is moved into the
    // closure, so the descriptor stays open until then.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &ns;
            match libc::setns(fd, libc::CLONE_NEWNS) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    Ok(())
}

fn mountinfo(namespace_pid: Option<u32>) -> String {
    let path = match namespace_pid {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".to_owned(),
    };
    fs::read_to_string(path).unwrap_or_default()
}

/// Is a FUSE file system mounted at `point` (in the namespace of
/// `namespace_pid`)?
pub fn is_mounted(namespace_pid: Option<u32>, point: &Path) -> bool {
    let wanted = escape(point);
    mountinfo(namespace_pid).lines().any(|line| {
        let mut fields = line.split(' ');
        let at = fields.nth(4);
        let fstype = line.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        at == Some(wanted.as_str()) && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}

/// A path as mountinfo writes it (space, tab, newline, backslash octal).
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    match tail.is_empty() {
        true => "no log".to_owned(),
        false => tail,
    }
}

/// Is `pid` an rclone serving `point` (not a recycled pid)?
fn serves(pid: u32, point: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let point = point.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == point)
}

/// SIGTERM (rclone flushes its cache and unmounts), SIGKILL after
/// [`STOP_TIMEOUT`], then a lazy unmount if the mount outlived it.
pub async fn stop(mount: &mut FuseMount, namespace_pid: Option<u32>) {
    let alive = |m: &FuseMount| serves(m.pid, &m.mountpoint);
    if alive(mount) {
        signal(mount.pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while alive(mount) && Instant::now() < deadline {
            reap(mount);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(mount) {
            tracing::warn!(pid = mount.pid, "rclone did not stop; killing it");
            signal(mount.pid, libc::SIGKILL);
        }
    }
    if let Some(child) = mount.child.as_mut() {
        let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
    }
    if is_mounted(namespace_pid, &mount.mountpoint) {
        let mut umount = Command::new("umount");
        umount.arg("-l").arg(&mount.mountpoint);
        if enter_namespace(&mut umount, namespace_pid).is_ok() {
            let _ = umount.status().await;
        }
    }
}

/// Collect the child's exit status if it has one (a zombie still has a
/// cmdline-less /proc entry, which `serves` treats as gone).
fn reap(mount: &mut FuseMount) {
    if let Some(child) = mount.child.as_mut() {
        let _ = child.try_wait();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid we checked serves this mount; no memory
    // is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The rclones an earlier run left for the mounts in `dir` (their pid
/// files), to stop them.
pub fn leftovers(dir: &Path) -> Vec<FuseMount> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("fuse-")
            .and_then(|r| r.strip_suffix(".pid"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let pid = fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if let Some(pid) = pid {
            found.push(FuseMount {
                mountpoint: mountpoint(dir, n),
                pid,
                child: None,
            });
        }
    }
    found
}

/// Forget the pid file of a stopped mount.
pub fn forget(mount: &FuseMount) {
    if let Some(name) = mount.mountpoint.file_name() {
        let pid = mount
            .mountpoint
            .with_file_name(format!("{}.pid", name.to_string_lossy()));
        let _ = fs::remove_file(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_to_the_environment_not_the_path() {
        let mount = BucketMount {
            store: Store::S3 {
                endpoint_url: "https://s3.example.test".into(),
                region: "eu-west-1".into(),
                path_style: true,
                kms_key: None,
            },
            bucket: "b".into(),
            prefix: "p/q".into(),
            read_only: false,
            cache_max_size_bytes: None,
            writeback_seconds: None,
        };
        assert_eq!(remote_path(&mount), "sandpit:b/p/q");
        let creds = Credentials::Aws {
            key_id: "AK".into(),
            secret: "SK".into(),
        };
        let settings = remote_settings(&mount, &creds);
        assert!(settings.contains(&("SECRET_ACCESS_KEY", "SK".into())));
        assert!(settings.contains(&("PROVIDER", "Other".into())));
        assert!(settings.contains(&("FORCE_PATH_STYLE", "true".into())));
    }

    #[test]
    fn mountinfo_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a b/c")), "/a\\040b/c");
    }
}
