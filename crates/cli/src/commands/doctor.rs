//! `sandpit doctor`: checks that this host can run `sandpit serve` and says
//! in plain words what to fix. Exit code 1 when something blocks the server
//! from running sandboxes; warnings only say what will be missing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct DoctorArgs {
    /// The data directory `sandpit serve` will use (free disk is checked
    /// there, or at its nearest existing parent).
    #[arg(long, env = "SANDPIT_DATA_DIR", default_value = ".sandpit")]
    pub data_dir: PathBuf,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's finding: what was seen, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub what: &'static str,
    pub detail: String,
}

fn finding(level: Level, what: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        what,
        detail: detail.into(),
    }
}

/// What the host looks like, read once (tests build their own).
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub root: bool,
    /// `uname -r`.
    pub kernel: String,
    /// `/proc/filesystems`.
    pub filesystems: String,
    /// `/proc/sys/user/max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// `cgroup.controllers` of the v2 root, if v2 is mounted.
    pub v2_controllers: Option<String>,
    pub nft: bool,
    pub mkfs_ext4: bool,
    pub runsc: bool,
    /// Free bytes at the data dir.
    pub free_bytes: Option<u64>,
    /// RLIMIT_NOFILE (soft, hard).
    pub nofile: Option<(u64, u64)>,
}

impl Host {
    pub fn read(data_dir: &Path) -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v2_controllers = v2_mount(&mountinfo).and_then(|root| {
            std::fs::read_to_string(Path::new(&root).join("cgroup.controllers")).ok()
        });
        Self {
            root: nix::unistd::geteuid().is_root(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            filesystems: std::fs::read_to_string("/proc/filesystems").unwrap_or_default(),
            max_user_namespaces: std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            mountinfo,
            v2_controllers,
            nft: on_path("nft"),
            mkfs_ext4: Path::new("/sbin/mkfs.ext4").exists(),
            runsc: on_path("runsc"),
            free_bytes: free_bytes(data_dir),
            nofile: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|limits| nofile(&limits)),
        }
    }
}

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/bin"].map(PathBuf::from))
        .any(|dir| dir.join(name).is_file())
}

/// (soft, hard) of "Max open files" in `/proc/self/limits`.
fn nofile(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line["Max open files".len()..].split_whitespace();
    let soft = numbers.next()?.parse().ok()?;
    let hard = numbers.next()?.parse().ok()?;
    Some((soft, hard))
}

/// Free bytes where `dir` is (or would be created).
fn free_bytes(dir: &Path) -> Option<u64> {
    let mut at = std::path::absolute(dir).ok()?;
    while !at.exists() {
        at = at.parent()?.to_path_buf();
    }
    let stat = nix::sys::statvfs::statvfs(&at).ok()?;
    Some(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// Mount point of the cgroup2 hierarchy, if mounted.
fn v2_mount(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(str::to_owned))?
    })
}

/// Controllers of the v1 hierarchies mounted (from their super options).
fn v1_controllers(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (_, right) = line.split_once(" - ")?;
            let mut fields = right.split_whitespace();
            (fields.next()? == "cgroup").then(|| fields.nth(1).map(str::to_owned))?
        })
        .flat_map(|opts| opts.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// `major.minor` of a kernel release string.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Every finding for `host`.
pub fn check(host: &Host) -> Vec<Finding> {
    use Level::{Fail, Ok, Warn};
    let mut out = Vec::new();
    out.push(match host.root {
        true => finding(Ok, "root", "running as root"),
        false => finding(Warn, "root", "not root: run `sandpit serve` (and this check) as root, or from the systemd unit in deploy/systemd/"),
    });
    let version = kernel_version(&host.kernel);
    out.push(match version {
        Some(v) if v >= (5, 19) => finding(Ok, "kernel", format!("Linux {}", host.kernel)),
        Some(v) if v >= (5, 4) => finding(Warn, "kernel", format!("Linux {}: sandboxes run, but user namespaces with idmapped mounts need 5.19 or later (upgrade the kernel to get them)", host.kernel)),
        _ => finding(Fail, "kernel", format!("Linux {:?} is too old: Sandpit needs 5.4 or later (upgrade the kernel)", host.kernel)),
    });
    out.push(match host.filesystems.lines().any(|l| l.trim_end().ends_with("overlay")) {
        true => finding(Ok, "overlayfs", "available"),
        false => finding(Fail, "overlayfs", "not in /proc/filesystems: run `modprobe overlay` and add `overlay` to /etc/modules-load.d/sandpit.conf"),
    });
    out.push(match host.max_user_namespaces {
        Some(n) if n > 0 => finding(Ok, "user namespaces", format!("enabled (max {n})")),
        Some(_) => finding(Warn, "user namespaces", "disabled (user.max_user_namespaces = 0): root in a sandbox is root on the host; set `sysctl user.max_user_namespaces=15000`"),
        None => finding(Warn, "user namespaces", "not supported by this kernel: root in a sandbox is root on the host"),
    });
    out.extend(cgroups(host));
    out.push(match host.nft {
        true => finding(Ok, "nftables", "`nft` found"),
        false => finding(Fail, "nftables", "`nft` not found: install nftables (`apt-get install nftables`); sandboxes' network isolation needs it"),
    });
    out.push(match host.mkfs_ext4 {
        true => finding(Ok, "mkfs.ext4", "found"),
        false => finding(
            Fail,
            "mkfs.ext4",
            "/sbin/mkfs.ext4 not found: install e2fsprogs; every sandbox's disk is an ext4 image",
        ),
    });
    const GIB: u64 = 1 << 30;
    out.push(match host.free_bytes {
        Some(b) if b >= 10 * GIB => finding(Ok, "free disk", format!("{} GiB free in the data dir", b / GIB)),
        Some(b) if b >= GIB => finding(Warn, "free disk", format!("{:.1} GiB free in the data dir: images and sandboxes fill it fast; free space or move --data-dir", b as f64 / GIB as f64)),
        Some(b) => finding(Fail, "free disk", format!("{} MiB free in the data dir: the server refuses to create sandboxes under 1 GiB; free space or move --data-dir", b >> 20)),
        None => finding(Warn, "free disk", "cannot read the free space of the data dir"),
    });
    out.push(match host.nofile {
        Some((_, hard)) if hard >= 65536 => finding(Ok, "open files", format!("hard limit {hard}")),
        Some((_, hard)) => finding(Warn, "open files", format!("hard limit {hard}: raise it to 1048576 (LimitNOFILE= in the unit, or `ulimit -Hn`); every relayed connection holds descriptors")),
        None => finding(Warn, "open files", "cannot read the limit"),
    });
    out.push(match host.runsc {
        true => finding(
            Ok,
            "gVisor",
            "`runsc` found: sandboxes may ask for isolation \"gvisor\"",
        ),
        false => finding(
            Ok,
            "gVisor",
            "`runsc` not found (optional): install gVisor for isolation \"gvisor\"",
        ),
    });
    out
}

/// cgroups: v1, v2 or hybrid, and the controllers sandboxes need.
fn cgroups(host: &Host) -> Vec<Finding> {
    const NEEDED: [&str; 3] = ["cpu", "memory", "pids"];
    let v1 = v1_controllers(&host.mountinfo);
    let v2: Vec<&str> = host
        .v2_controllers
        .as_deref()
        .map(|c| c.split_whitespace().collect())
        .unwrap_or_default();
    let mode = match (v1.is_empty(), host.v2_controllers.is_some()) {
        (true, true) => "v2",
        (false, true) => "hybrid (v1 controllers, v2 mounted)",
        (false, false) => "v1",
        (true, false) => {
            return vec![finding(
                Level::Fail,
                "cgroups",
                "no cgroup hierarchy is mounted: mount cgroup2 on /sys/fs/cgroup",
            )]
        }
    };
    let missing: Vec<&str> = NEEDED
        .into_iter()
        .filter(|c| !v1.iter().any(|v| v == c) && !v2.contains(c))
        .collect();
    vec![match missing.is_empty() {
        true => finding(Level::Ok, "cgroups", format!("{mode}; cpu, memory and pids controllers present")),
        false => finding(
            Level::Fail,
            "cgroups",
            format!(
                "{mode}; missing controller(s) {}: enable them (on v2: `echo +{} > /sys/fs/cgroup/cgroup.subtree_control`; with systemd: Delegate=yes in the unit)",
                missing.join(", "),
                missing.join(" +"),
            ),
        ),
    }]
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let findings = check(&Host::read(&args.data_dir));
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {:<16} {}", f.what, f.detail);
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
    if fails > 0 {
        println!("\n{fails} problem(s) stop Sandpit from running sandboxes here; fix them and run `sandpit doctor` again.");
        ExitCode::FAILURE
    } else {
        println!("\nThis host can run Sandpit ({warns} warning(s)).");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    fn good() -> Host {
        Host {
            root: true,
            kernel: "6.1.0-13-amd64".into(),
            filesystems: "nodev\tsysfs\nnodev\toverlay\n".into(),
            max_user_namespaces: Some(1000),
            mountinfo: HYBRID.into(),
            v2_controllers: Some(String::new()),
            nft: true,
            mkfs_ext4: true,
            runsc: false,
            free_bytes: Some(100 << 30),
            nofile: Some((1024, 1 << 20)),
        }
    }

    fn level(findings: &[Finding], what: &str) -> Level {
        findings.iter().find(|f| f.what == what).unwrap().level
    }

    #[test]
    fn a_good_host_has_no_failures() {
        let findings = check(&good());
        assert!(
            findings.iter().all(|f| f.level != Level::Fail),
            "{findings:?}"
        );
        let cgroups = findings.iter().find(|f| f.what == "cgroups").unwrap();
        assert!(cgroups.detail.starts_with("hybrid"), "{cgroups:?}");
    }

    #[test]
    fn blockers_fail_with_what_to_do() {
        let mut host = good();
        host.nft = false;
        host.filesystems = "nodev\tsysfs\n".into();
        host.mountinfo = HYBRID.replace("rw,pids", "rw,blkio");
        host.free_bytes = Some(100 << 20);
        let findings = check(&host);
        for what in ["nftables", "overlayfs", "cgroups", "free disk"] {
            assert_eq!(level(&findings, what), Level::Fail, "{what}: {findings:?}");
        }
        let cgroups = findings.iter().find(|f| f.what == "cgroups").unwrap();
        assert!(cgroups.detail.contains("pids"), "{cgroups:?}");
    }

    #[test]
    fn open_file_limits_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(nofile(limits), Some((1024, 524288)));
    }

    #[test]
    fn v2_controllers_and_old_kernels() {
        let mut host = good();
        host.mountinfo = "33 25 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n".into();
        host.v2_controllers = Some("cpuset cpu io memory pids\n".into());
        host.kernel = "5.10.0".into();
        let findings = check(&host);
        assert_eq!(level(&findings, "cgroups"), Level::Ok);
        assert_eq!(level(&findings, "kernel"), Level::Warn);
        host.kernel = "4.19.0".into();
        assert_eq!(level(&check(&host), "kernel"), Level::Fail);
        assert_eq!(v2_mount(&host.mountinfo).as_deref(), Some("/sys/fs/cgroup"));
    }
}
