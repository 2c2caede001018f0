//! Host-side memory readings for the density benchmark: the sandbox cgroup
//! parent's charge, the kernel's slab and page tables, and the resident
//! memory of the server and its runtime helpers. `sandpit bench` must run on
//! the server's host (as root) for these.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use sandpit_runtime::cgroup;

/// One reading, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2) of the parent
    /// of every sandbox cgroup: the sandboxes' processes, page cache and
    /// (v1 with kmem accounting) part of their kernel objects.
    pub cgroup: u64,
    pub slab: u64,
    pub page_tables: u64,
    pub kernel_stack: u64,
    /// The server plus its runtime helpers.
    pub server_rss: u64,
}

impl Memory {
    pub fn read(server: Option<u32>) -> Self {
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| meminfo_kib(&meminfo, name) * 1024;
        Self {
            cgroup: cgroup_usage().unwrap_or(0),
            slab: field("Slab"),
            page_tables: field("PageTables"),
            kernel_stack: field("KernelStack"),
            server_rss: server.map(server_rss).unwrap_or(0),
        }
    }
}

fn meminfo_kib(meminfo: &str, name: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The sandbox parent's memory file (v1 memory controller or v2).
fn cgroup_usage() -> Option<u64> {
    cgroup::hierarchies().into_iter().find_map(|h| {
        let parent = h.join(cgroup::PARENT);
        ["memory.usage_in_bytes", "memory.current"]
            .iter()
            .find_map(|f| fs::read_to_string(parent.join(f)).ok())
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Sandbox cgroups under the parent right now (any hierarchy).
pub fn sandbox_cgroups() -> usize {
    cgroup::sandbox_ids().len()
}

/// Network links on the host (each sandbox has one veth end here).
pub fn host_links() -> usize {
    fs::read_dir("/sys/class/net").map_or(0, |d| d.count())
}

/// The data directory of `server` (its `--data-dir`, `SANDPIT_DATA_DIR`,
/// or the default `.sandpit`, relative to its working directory).
pub fn data_dir(server: u32) -> Option<PathBuf> {
    let args = cmdline(server);
    let flag = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--data-dir=")
            .map(str::to_owned)
            .or_else(|| {
                (a == "--data-dir")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    let environ = fs::read(format!("/proc/{server}/environ")).unwrap_or_default();
    let env = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"SANDPIT_DATA_DIR="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let dir = PathBuf::from(flag.or(env).unwrap_or_else(|| ".sandpit".into()));
    if dir.is_absolute() {
        return Some(dir);
    }
    Some(fs::read_link(format!("/proc/{server}/cwd")).ok()?.join(dir))
}

fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    meminfo_kib(&status, "VmRSS") * 1024
}

/// The only `sandpit serve` process on this host, if exactly one runs.
pub fn find_server() -> Option<u32> {
    let mut found = pids().into_iter().filter(|&pid| {
        let args = cmdline(pid);
        args.len() > 1
            && PathBuf::from(&args[0])
                .file_name()
                .is_some_and(|n| n == "sandpit")
            && args[1] == "serve"
    });
    let first = found.next();
    match found.next() {
        Some(_) => None,
        None => first,
    }
}

/// RSS of `server` and of its `runtime-helper` children.
pub fn server_rss(server: u32) -> u64 {
    let helpers = pids().into_iter().filter(|&pid| {
        parent_of(pid) == Some(server) && cmdline(pid).iter().any(|a| a == "runtime-helper")
    });
    rss(server) + helpers.map(rss).sum::<u64>()
}

/// How many runtime helpers `server` runs.
pub fn helper_count(server: u32) -> usize {
    pids()
        .into_iter()
        .filter(|&pid| {
            parent_of(pid) == Some(server) && cmdline(pid).iter().any(|a| a == "runtime-helper")
        })
        .count()
}

/// CPU time used so far, in clock ticks: by the server's threads, by its
/// runtime helpers (with the children they reaped: `mount`, `mkfs`), and by
/// every sandbox (the cgroup parent's `cpuacct.usage`, v1; `cpu.stat`, v2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub server: Duration,
    pub helpers: Duration,
    pub sandboxes: Duration,
}

impl Cpu {
    pub fn read(server: u32) -> Self {
        let helpers = pids().into_iter().filter(|&pid| {
            parent_of(pid) == Some(server) && cmdline(pid).iter().any(|a| a == "runtime-helper")
        });
        Self {
            server: ticks(server, false),
            helpers: helpers.map(|pid| ticks(pid, true)).sum(),
            sandboxes: sandbox_cpu(),
        }
    }

    /// Milliseconds per `n` of each part, since `before`.
    pub fn per(&self, before: &Cpu, n: usize) -> (f64, f64, f64) {
        let ms = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() * 1000.0 / n as f64;
        (
            ms(before.server, self.server),
            ms(before.helpers, self.helpers),
            ms(before.sandboxes, self.sandboxes),
        )
    }
}

/// utime + stime (+ cutime + cstime with `children`) of `pid`.
fn ticks(pid: u32, children: bool) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // After the command: state (not a number, skipped), then ppid.. with
    // utime at index 10 of the numbers.
    let take = if children { 4 } else { 2 };
    let sum: u64 = fields.iter().skip(10).take(take).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs_f64(sum as f64 / hz.max(1) as f64)
}

fn sandbox_cpu() -> Duration {
    cgroup::hierarchies()
        .into_iter()
        .find_map(|h| {
            let parent = h.join(cgroup::PARENT);
            if let Ok(ns) = fs::read_to_string(parent.join("cpuacct.usage")) {
                return ns.trim().parse().ok().map(Duration::from_nanos);
            }
            let stat = fs::read_to_string(parent.join("cpu.stat")).ok()?;
            let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?;
            usec.trim().parse().ok().map(Duration::from_micros)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_fields() {
        let text =
            "MemTotal:       24000000 kB\nSlab:             123456 kB\nPageTables:        789 kB\n";
        assert_eq!(meminfo_kib(text, "Slab"), 123456);
        assert_eq!(meminfo_kib(text, "PageTables"), 789);
        assert_eq!(meminfo_kib(text, "KernelStack"), 0);
    }
}
