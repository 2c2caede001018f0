//! Support for the runtime's integration tests: a helper process, the host
//! image, a static test init, and sandboxes that stop themselves on drop.
//!
//! These tests start real sandboxes and need root. `cleanup` sweeps every
//! `/sandpit/*` cgroup and `spv*` link on the host, so do not run them next
//! to a real Sandpit server.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sandpit_runtime::host_image::{self, HostImage};
use sandpit_runtime::{HelperRuntime, Limits, Runtime, SandboxSpec, Started};

pub const HELPER: &str = env!("CARGO_BIN_EXE_sandpit-runtime-helper");

/// The helper program: this crate's test binary, or another one accepting
/// `runtime-helper --state-dir DIR` (such as `sandpit`) named by
/// `SANDPIT_TEST_HELPER`.
pub fn helper_program() -> String {
    std::env::var("SANDPIT_TEST_HELPER").unwrap_or_else(|_| HELPER.to_string())
}

/// Network slots, unique within a test binary (binaries run one at a time).
static NEXT_SLOT: AtomicU32 = AtomicU32::new(15000);

/// A data directory and its own helper, plus the shared host image and test
/// init. Fields drop in order: the helper exits before the directory goes.
pub struct Harness {
    pub runtime: HelperRuntime,
    pub image: HostImage,
    pub init: PathBuf,
    _run: RunTmpfs,
    pub dir: tempfile::TempDir,
}

/// Unmounts the helpers' run tmpfs if the runtime kept it: it does when a
/// sandbox is still recorded as it goes (for the next server to adopt),
/// as after a test that shuts the helpers down under a running sandbox.
struct RunTmpfs(PathBuf);

impl Drop for RunTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Harness {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the runtime integration tests need root"
        );
        let dir = tempfile::Builder::new()
            .prefix("sandpit-rt-")
            .tempdir()
            .expect("temp dir");
        for sub in ["sandboxes", "sockets"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let image = host_image::prepare(&shared.join("host-image")).expect("host image");
        let runtime =
            HelperRuntime::spawn(helper_program(), dir.path().join("runtime")).expect("helper");
        Self {
            runtime,
            image,
            init: test_init().to_path_buf(),
            _run: RunTmpfs(dir.path().join("runtime").join("run")),
            dir,
        }
    }

    /// Another helper on the same state, as after a restart.
    pub fn respawn_helper(&self) -> HelperRuntime {
        HelperRuntime::spawn(helper_program(), self.state_root()).expect("helper")
    }

    pub fn state_root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// The tmpfs of the helpers' running state: records, libcontainer's
    /// state, bundles.
    pub fn run_root(&self) -> PathBuf {
        self.state_root().join("run")
    }

    /// A spec for sandbox `name` with the host image and the test init.
    pub fn spec(&self, name: &str, limits: Limits) -> SandboxSpec {
        let id = format!("{name}-{}", std::process::id());
        SandboxSpec {
            state_dir: self.dir.path().join("sandboxes").join(&id),
            agent_log: true,
            layers: self.image.layers.clone(),
            mounts: self.image.mounts.clone(),
            agent_binary: self.init.clone(),
            agent_args: vec![],
            agent_socket: self.dir.path().join("sockets").join(format!("{id}.sock")),
            env: self.image.env.clone(),
            workdir: self.image.workdir.clone(),
            hostname: name.into(),
            limits,
            fs_capacity_bytes: 0,
            net_slot: NEXT_SLOT.fetch_add(1, Ordering::SeqCst),
            userns_base: None,
            isolation: Default::default(),
            id,
        }
    }

    /// Starts a sandbox that stops itself when dropped.
    pub fn start(&self, name: &str, limits: Limits) -> Sandbox<'_> {
        let spec = self.spec(name, limits);
        self.start_spec(spec)
    }

    pub fn start_spec(&self, spec: SandboxSpec) -> Sandbox<'_> {
        start_with(&self.runtime, spec)
    }
}

/// Starts `spec` through `runtime`; the sandbox stops itself when dropped.
pub fn start_with(runtime: &HelperRuntime, spec: SandboxSpec) -> Sandbox<'_> {
    fs::create_dir_all(&spec.state_dir).unwrap();
    let started = runtime
        .start(&spec)
        .unwrap_or_else(|e| panic!("start {}: {e}", spec.id));
    let sandbox = Sandbox {
        runtime,
        spec,
        started,
    };
    sandbox.wait_ready();
    sandbox
}

pub fn default_limits() -> Limits {
    Limits {
        cpu_millis: 1000,
        memory_bytes: 256 << 20,
        pids: 256,
    }
}

/// The static test init, compiled once per test binary.
fn test_init() -> &'static Path {
    static INIT: OnceLock<PathBuf> = OnceLock::new();
    INIT.get_or_init(|| build_test_init(Path::new(env!("CARGO_TARGET_TMPDIR"))))
}

fn build_test_init(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/test-init.c");
    let tmp = dir.join(format!("test-init.{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&source)
        .status()
        .expect("run cc (a C compiler with static glibc is needed)");
    assert!(status.success(), "compiling the test init failed");
    let out = dir.join("test-init");
    fs::rename(&tmp, &out).unwrap();
    out
}

/// A running sandbox; stopped on drop.
pub struct Sandbox<'a> {
    pub runtime: &'a HelperRuntime,
    pub spec: SandboxSpec,
    pub started: Started,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub text: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

impl Sandbox<'_> {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Runs `cmd` with `/bin/sh -c` inside the sandbox.
    pub fn sh(&self, cmd: &str) -> Output {
        let mut conn = self.connect().expect("connect to the test init");
        conn.write_all(cmd.as_bytes()).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        let (text, status) = text
            .rsplit_once("\n__EXIT__ ")
            .unwrap_or_else(|| panic!("no exit status: {text:?}"));
        Output {
            status: status.trim().parse().unwrap(),
            text: text.to_string(),
        }
    }

    /// Runs `cmd` and returns its output; panics unless it succeeded.
    pub fn ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(out.ok(), "`{cmd}` failed with {}: {}", out.status, out.text);
        out.text.trim().to_string()
    }

    pub fn ping(&self) -> bool {
        let Ok(mut conn) = self.connect() else {
            return false;
        };
        let _ = conn.write_all(b"ping");
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply == "pong\n"
    }

    fn connect(&self) -> std::io::Result<UnixStream> {
        let conn = UnixStream::connect(&self.spec.agent_socket)?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(conn)
    }

    /// Waits until the init answers.
    pub fn wait_ready(&self) {
        for _ in 0..500 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = fs::read_to_string(self.spec.state_dir.join("agent.log")).unwrap_or_default();
        panic!("sandbox {} never answered; agent log:\n{log}", self.id());
    }

    pub fn stop(&self) {
        self.runtime
            .stop(self.id())
            .unwrap_or_else(|e| panic!("stop {}: {e}", self.id()));
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.runtime.stop(self.id()) {
            eprintln!("stopping {} on drop failed: {err}", self.id());
        }
    }
}

/// Whether this process (and so the helper it spawns) has CAP_SYS_RESOURCE.
pub fn has_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0
}

/// Mount points of every cgroup hierarchy on the host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fs_type = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            matches!(fs_type, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// Directories sandbox `id` has under any cgroup hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join("sandpit").join(id))
        .filter(|d| d.exists())
        .collect()
}

/// The cgroup v1 controller directory of sandbox `id` (or its v2 directory).
pub fn controller_dir(id: &str, controller: &str) -> PathBuf {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = right.split(' ');
        let (fs_type, _source, options) =
            (fields.next(), fields.next(), fields.next().unwrap_or(""));
        let point = left.split(' ').nth(4).unwrap_or("");
        let v1 = fs_type == Some("cgroup") && options.split(',').any(|o| o == controller);
        if v1 {
            return Path::new(point).join("sandpit").join(id);
        }
    }
    let v2 = cgroup_hierarchies()
        .into_iter()
        .find(|h| h.join("cgroup.controllers").exists());
    v2.expect("a cgroup hierarchy").join("sandpit").join(id)
}

/// True when host link `name` exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Mount table lines of process `pid` that mention `needle`.
pub fn mounts_mentioning(pid: u32, needle: &Path) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let needle = needle.to_string_lossy().to_string();
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Asserts that nothing of `sandbox` is left on the host.
pub fn assert_gone(harness: &Harness, spec: &SandboxSpec, started: &Started) {
    let id = &spec.id;
    // Dead: gone, or a zombie its parent has not reaped yet (after a helper
    // died, the inits' new parent is the host's init).
    let alive = sandpit_runtime::process::ProcStat::read(started.pid)
        .is_some_and(|s| s.start_time == started.start_time && s.is_alive());
    assert!(!alive, "init {} still runs", started.pid);
    assert_eq!(cgroup_dirs(id), Vec::<PathBuf>::new(), "cgroup dirs left");
    // The veth goes with the network namespace, which the kernel tears
    // down asynchronously after the init died.
    let veth = format!("spv{}", spec.net_slot);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while link_exists(&veth) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!link_exists(&veth), "veth {veth} left");
    let me = std::process::id();
    assert_eq!(
        mounts_mentioning(me, &spec.state_dir),
        Vec::<String>::new(),
        "host mounts left"
    );
    if let Some(helper) = harness.runtime.helper_pid() {
        assert_eq!(
            mounts_mentioning(helper, &spec.state_dir),
            Vec::<String>::new(),
            "helper mounts left"
        );
    }
    assert!(!spec.agent_socket.exists(), "socket left");
    let state = harness.run_root();
    assert!(
        !state.join("containers").join(id).exists(),
        "libcontainer state left"
    );
    assert!(
        !state.join("records").join(format!("{id}.json")).exists(),
        "record left"
    );
}
