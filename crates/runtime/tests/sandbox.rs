//! Real sandboxes on the real kernel, through `HelperRuntime` and the host
//! image, with a static test init standing in for the agent. Needs root.

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_gone, controller_dir, default_limits, Harness};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sandpit_runtime::{Limits, MountSpec, Runtime, RuntimeError};

#[test]
fn start_and_stop_latency() {
    let h = Harness::new();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for round in 0..7 {
        let spec = h.spec(&format!("latency{round}"), default_limits());
        fs::create_dir_all(&spec.state_dir).unwrap();
        let t0 = Instant::now();
        let started = h.runtime.start(&spec).unwrap();
        let t_started = t0.elapsed();
        let sandbox = common::Sandbox {
            runtime: &h.runtime,
            spec,
            started,
        };
        sandbox.wait_ready();
        starts.push((t_started, t0.elapsed()));
        let t1 = Instant::now();
        sandbox.stop();
        stops.push(t1.elapsed());
    }
    starts.sort();
    stops.sort();
    let (start, accepting) = starts[starts.len() / 2];
    eprintln!(
        "timing (median of {}): start() {start:?}, start -> agent answering {accepting:?}, stop() {:?}",
        starts.len(),
        stops[stops.len() / 2]
    );
}

#[test]
fn agent_listener_is_reachable_from_the_host_path_only() {
    let h = Harness::new();
    let sb = h.start("listener", default_limits());
    assert!(sb.ping());
    let socket = sb.spec.agent_socket.display().to_string();
    assert!(
        !sb.sh(&format!("test -e '{socket}'")).ok(),
        "the host socket path is visible inside"
    );
    let fd3 = sb.ok("readlink /proc/1/fd/3");
    assert!(fd3.starts_with("socket:"), "fd 3 of the init is {fd3}");
    let mode = fs::metadata(&sb.spec.agent_socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn sandbox_sees_only_its_own_processes() {
    let h = Harness::new();
    let sb = h.start("pids", default_limits());
    let pids = sb.ok("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '");
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // The init, the connection handler, the shell and the pipeline.
    assert_eq!(pids[0], 1);
    assert!(
        pids.len() <= 10 && pids.iter().all(|&p| p < 100),
        "host processes visible: {pids:?}"
    );
    let cmdlines = sb.ok("cat /proc/[0-9]*/cmdline | tr '\\0' ' '");
    assert!(!cmdlines.contains("sandpit-runtime-helper"), "{cmdlines}");
    let init = sb.ok("tr '\\0' ' ' < /proc/1/cmdline");
    // The agent is told where its seccomp filter is.
    assert_eq!(init, "/.sandpit/sandpit --seccomp-fd 4");
    assert_eq!(sb.ok("cat /proc/self/oom_score_adj"), "0");
    // The agent's score is lowered where the helper may (CAP_SYS_RESOURCE).
    let agent_score = if common::has_sys_resource() {
        "-998"
    } else {
        "0"
    };
    assert_eq!(sb.ok("cat /proc/1/oom_score_adj"), agent_score);
}

#[test]
fn host_files_stay_invisible() {
    let h = Harness::new();
    let spec = h.spec("invisible", default_limits());
    let marker = format!("sandpit-marker-{}", std::process::id());
    let host_marker = RemoveOnDrop(Path::new("/tmp").join(&marker));
    fs::write(&host_marker.0, "host").unwrap();
    fs::create_dir_all(&spec.state_dir).unwrap();
    fs::write(spec.state_dir.join(&marker), "state").unwrap();
    let sb = h.start_spec(spec);
    let checks = [
        format!("test ! -e /tmp/{marker}"),
        format!("test ! -e '{}'", sb.spec.state_dir.join(&marker).display()),
        format!("test ! -e '{}'", h.dir.path().display()),
        "test ! -e /work".into(),
        "test ! -e /etc/shadow".into(),
        "test ! -e /etc/ssl/private".into(),
        "test -z \"$(ls -A /root)\"".into(),
        "test \"$(ls /home)\" = user".into(),
    ];
    for check in &checks {
        let out = sb.sh(check);
        assert!(out.ok(), "`{check}` failed: {}", out.text);
    }
}

/// Removes a host file when the test ends, pass or fail.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn usr_is_read_only_and_python_works() {
    let h = Harness::new();
    let sb = h.start("usr", default_limits());
    let touch = sb.sh("touch /usr/sandpit-test");
    assert!(!touch.ok() && touch.text.contains("Read-only"), "{touch:?}");
    assert!(!sb.sh("echo x >> /usr/bin/env").ok());
    assert_eq!(sb.ok("python -c 'print(2 + 2)'"), "4");
    assert_eq!(sb.ok("cd /tmp && echo hi > f && cat f"), "hi");
    assert_eq!(sb.ok("id -u"), "0");
}

#[test]
fn hostname_and_etc_files_are_the_sandbox_own() {
    let h = Harness::new();
    let sb = h.start("named-box", default_limits());
    assert_eq!(sb.ok("cat /proc/sys/kernel/hostname"), "named-box");
    assert_eq!(sb.ok("cat /etc/hostname"), "named-box");
    assert!(sb.ok("cat /etc/hosts").contains("127.0.1.1\tnamed-box"));
    let resolv = sb.ok("cat /etc/resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {}", sb.started.host_ip)),
        "{resolv}"
    );
    assert_eq!(sb.ok("pwd"), "/home/user");
}

#[test]
fn tmp_and_the_writable_layer_survive_a_stop() {
    let h = Harness::new();
    let spec = h.spec("persist", default_limits());
    let sb = h.start_spec(spec.clone());
    assert_eq!(sb.ok("stat -c %a /tmp"), "1777");
    assert_eq!(sb.ok("stat -c %a /var/tmp"), "1777");
    sb.ok("echo kept > /tmp/keep && mkdir -p /home/user/work && echo w > /home/user/work/f");
    let started = sb.started.clone();
    drop(sb);
    assert_gone(&h, &spec, &started);
    assert_eq!(
        fs::read_to_string(spec.state_dir.join("upper/tmp/keep")).unwrap(),
        "kept\n"
    );
    let again = h.start_spec(spec);
    assert_eq!(again.ok("cat /tmp/keep /home/user/work/f"), "kept\nw");
    assert_ne!(again.started.pid, started.pid);
}

/// A start's mount points and bundle live in a tmpfs of its own mount
/// namespace, and its record and libcontainer's state in the helpers'
/// tmpfs: nothing but the disk image (and its loop note, and the agent's
/// log) is made on the host's disk, and a stop removes nothing.
#[test]
fn a_start_keeps_mount_points_and_records_off_the_host_disk() {
    let h = Harness::new();
    let mut spec = h.spec("scratch", default_limits());
    spec.fs_capacity_bytes = 64 << 20;
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()))
            .into_iter()
            .flatten()
            .collect();
        names.sort();
        names
    };
    let sb = h.start_spec(spec.clone());
    assert_eq!(sb.ok("cat /etc/hostname"), "scratch");
    sb.ok("echo kept > /tmp/keep");
    assert_eq!(names(&spec.state_dir), ["agent.log", "disk.img"]);
    assert_eq!(names(&h.run_root().join("bundles")), Vec::<String>::new());
    let record = h
        .run_root()
        .join("records")
        .join(format!("{}.json", spec.id));
    assert!(record.exists(), "no record at {}", record.display());
    let fs_type = nix::sys::statfs::statfs(&record).unwrap().filesystem_type();
    assert_eq!(
        fs_type,
        nix::sys::statfs::TMPFS_MAGIC,
        "the record is on disk"
    );
    let started = sb.started.clone();
    drop(sb);
    assert_gone(&h, &spec, &started);
    let dirs: Vec<String> = names(&spec.state_dir)
        .into_iter()
        .filter(|n| spec.state_dir.join(n).is_dir())
        .collect();
    assert_eq!(dirs, Vec::<String>::new(), "directories in the state dir");
    let again = h.start_spec(spec);
    assert_eq!(again.ok("cat /tmp/keep"), "kept");
}

#[test]
fn memory_limit_kills_the_hog_not_the_agent() {
    let h = Harness::new();
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..default_limits()
    };
    let sb = h.start("memory", limits);
    let dir = controller_dir(sb.id(), "memory");
    let limit = read_trimmed(&dir.join("memory.limit_in_bytes"))
        .or_else(|| read_trimmed(&dir.join("memory.max")));
    assert_eq!(limit.as_deref(), Some("67108864"));
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(
            read_trimmed(&memsw).as_deref(),
            Some("67108864"),
            "swap escape"
        );
    }
    let hog = sb.sh(
        "python3 -c 'b = bytearray(256 << 20); b[::4096] = b\"x\" * len(b[::4096]); print(len(b))'",
    );
    assert_eq!(hog.status, 137, "the hog was not OOM-killed: {hog:?}");
    assert!(sb.ping(), "the agent died with the hog");
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let h = Harness::new();
    let limits = Limits {
        pids: 40,
        ..default_limits()
    };
    let sb = h.start("forkbomb", limits);
    let dir = controller_dir(sb.id(), "pids");
    assert_eq!(read_trimmed(&dir.join("pids.max")).as_deref(), Some("40"));
    // Forks until the limit and keeps trying, forever.
    let out = sb.sh("(while :; do sleep 1000 & done) >/dev/null 2>&1 &");
    assert!(out.ok(), "{out:?}");
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let current: u64 = read_trimmed(&dir.join("pids.current"))
            .unwrap()
            .parse()
            .unwrap();
        peak = peak.max(current);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(peak <= 40, "pids.current reached {peak}");
    assert!(peak >= 35, "the bomb did not go off (peak {peak})");
    let events = read_trimmed(&dir.join("pids.events")).unwrap_or_default();
    let refused: u64 = events
        .strip_prefix("max ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "no fork was refused: {events:?}");
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success(),
        "host cannot fork"
    );
    let spec = sb.spec.clone();
    let started = sb.started.clone();
    let t = Instant::now();
    sb.stop();
    eprintln!("stopping a fork bomb took {:?}", t.elapsed());
    assert_gone(&h, &spec, &started);
}

#[test]
fn cpu_quota_is_written() {
    let h = Harness::new();
    let limits = Limits {
        cpu_millis: 500,
        ..default_limits()
    };
    let sb = h.start("cpu", limits);
    let dir = controller_dir(sb.id(), "cpu");
    match read_trimmed(&dir.join("cpu.cfs_quota_us")) {
        Some(quota) => {
            assert_eq!(quota, "50000");
            assert_eq!(
                read_trimmed(&dir.join("cpu.cfs_period_us")).as_deref(),
                Some("100000")
            );
        }
        None => assert_eq!(
            read_trimmed(&dir.join("cpu.max")).as_deref(),
            Some("50000 100000")
        ),
    }
}

#[test]
fn sandboxes_cannot_see_or_reach_each_other() {
    let h = Harness::new();
    let a = h.start("iso-a", default_limits());
    let b = h.start("iso-b", default_limits());
    a.ok("echo secret > /tmp/a-only && (sleep 4242 >/dev/null 2>&1 &)");
    assert!(!b.sh("test -e /tmp/a-only").ok(), "b sees a's file");
    let b_sees =
        b.sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 424[2]'");
    assert_eq!(b_sees.text.trim(), "0", "b sees a's process");
    let a_sees =
        a.sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 424[2]'");
    assert_eq!(a_sees.text.trim(), "1", "a does not see its own process");

    a.ok(&format!("({} 8000 >/dev/null 2>&1 &)", python_server()));
    let a_ip = a.started.sandbox_ip.clone();
    wait_until(|| connect_from(&a, &a_ip, 8000) == "connected");
    assert_eq!(
        connect_from(&b, &a_ip, 8000),
        "blocked",
        "b reached a's address"
    );
    assert_eq!(
        connect_from(&b, &a.started.host_ip, 8000),
        "blocked",
        "b reached a's veth host end"
    );
}

#[test]
fn sandbox_cannot_reach_host_ports() {
    let h = Harness::new();
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("positive control");
    let sb = h.start("hostports", default_limits());
    let mut targets = vec![sb.started.host_ip.clone()];
    targets.extend(host_addresses());
    for target in &targets {
        assert_eq!(
            connect_from(&sb, target, port),
            "blocked",
            "sandbox reached host {target}:{port}"
        );
    }
    assert_eq!(
        connect_from(&sb, "127.0.0.1", port),
        "blocked",
        "loopback is the sandbox's own"
    );
    let mut accepted = 0;
    while listener.accept().is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 1, "only the positive control may have connected");
}

#[test]
fn ipv6_is_off() {
    let h = Harness::new();
    let sb = h.start("ipv6", default_limits());
    assert_eq!(sb.ok("cat /proc/sys/net/ipv6/conf/all/disable_ipv6"), "1");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6"), "1");
    assert_eq!(sb.ok("cat /proc/net/if_inet6 | wc -l"), "0");
    let bind6 = sb
        .sh("python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind((\"::1\", 0))'");
    assert!(!bind6.ok());
    let eth0 = sb.ok("cat /sys/class/net/eth0/operstate");
    assert_eq!(eth0, "up");
    let route = sb.ok("cat /proc/net/route | awk '$2 == \"00000000\" {print $1}'");
    assert_eq!(route, "eth0");
}

#[test]
fn privileges_are_dropped() {
    let h = Harness::new();
    let sb = h.start("caps", default_limits());
    let status =
        sb.ok("grep -E '^(CapBnd|CapEff|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status");
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE SYS_CHROOT SETFCAP (no AUDIT_WRITE, 29).
    let expected: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    assert_eq!(
        u64::from_str_radix(&field("CapBnd:"), 16).unwrap(),
        expected
    );
    assert_eq!(u64::from_str_radix(&field("CapInh:"), 16).unwrap(), 0);
    assert_eq!(u64::from_str_radix(&field("CapAmb:"), 16).unwrap(), 0);
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let mount = sb.sh("mount -t tmpfs none /mnt");
    assert!(!mount.ok(), "mount worked: {mount:?}");
    let unshare = sb.sh("unshare -n true");
    assert!(!unshare.ok(), "unshare worked: {unshare:?}");
    assert!(sb
        .ok("unshare -n true 2>&1 || true")
        .contains("Operation not permitted"));
    assert!(!sb.sh("mknod /tmp/null c 1 3").ok(), "mknod worked");
    // clone3 reports ENOSYS, so glibc falls back to clone for threads.
    let threads = "python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'";
    assert_eq!(sb.ok(threads), "thread");
    // clone with a namespace flag (CLONE_NEWUSER | SIGCHLD) is refused.
    let clone_userns = "python3 -c 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0); os._exit(0) if r == 0 else print(r, ctypes.get_errno())'";
    assert_eq!(sb.ok(clone_userns), "-1 1");
    // Users can still be switched (the agent needs it).
    assert_eq!(
        sb.ok("setpriv --reuid=65534 --regid=65534 --clear-groups id -u"),
        "65534"
    );
}

#[test]
fn layer_paths_may_hold_colons_and_commas() {
    let h = Harness::new();
    let mut spec = h.spec("digests", default_limits());
    let layers = h.dir.path().join("layers");
    let root = layers.join("sha256:root,1");
    fs::create_dir_all(&layers).unwrap();
    std::os::unix::fs::symlink(&h.image.layers[0], &root).unwrap();
    let (top, base) = (layers.join("sha256:top"), layers.join("base,2"));
    for (dir, file) in [(&top, "top"), (&base, "base")] {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(file), file).unwrap();
    }
    spec.layers = vec![root];
    let data = MountSpec::ReadOnlyOverlay {
        layers: vec![top, base],
        destination: "/opt/data".into(),
    };
    spec.mounts.push(data);
    let sb = h.start_spec(spec);
    assert_eq!(sb.ok("cat /opt/data/top /opt/data/base"), "topbase");
    assert!(
        !sb.sh("touch /opt/data/new").ok(),
        "a read-only overlay is writable"
    );
}

#[test]
fn failed_starts_leave_nothing_behind() {
    let h = Harness::new();
    let a = h.start("fail-a", default_limits());

    // Fails in libcontainer (mounts into /proc are refused), after the
    // overlay root, the socket and the bundle exist.
    let mut early = h.spec("fail-early", default_limits());
    early.mounts.push(MountSpec::Bind {
        source: "/etc".into(),
        destination: "/proc/sandpit".into(),
        readonly: true,
    });
    fs::create_dir_all(&early.state_dir).unwrap();
    let err = h.runtime.start(&early).unwrap_err();
    assert!(matches!(err, RuntimeError::Setup { .. }), "{err}");
    assert_leftovers_absent(&h, &early);

    // Fails at the network, after the container exists: the slot is taken.
    let mut late = h.spec("fail-late", default_limits());
    late.net_slot = a.spec.net_slot;
    fs::create_dir_all(&late.state_dir).unwrap();
    let err = h.runtime.start(&late).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Setup { stage, .. } if stage == "network"),
        "{err}"
    );
    assert_leftovers_absent(&h, &late);
    assert!(a.ping(), "the sandbox holding the slot was harmed");

    let err = h.runtime.start(&a.spec).unwrap_err();
    assert_eq!(err, RuntimeError::AlreadyRunning(a.id().to_string()));
    let mut invalid = h.spec("fail-invalid", default_limits());
    invalid.id = "../escape".into();
    assert!(matches!(
        h.runtime.start(&invalid),
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[test]
fn stop_is_idempotent_and_running_lists_live_sandboxes() {
    let h = Harness::new();
    let a = h.start("list-a", default_limits());
    let spec = h.spec("list-b", default_limits());
    let b = h.start_spec(spec.clone());
    let mut running = h.runtime.running().unwrap();
    running.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(running.len(), 2);
    assert_eq!(running[0].started, a.started);
    assert_eq!(running[1].started, b.started);
    let started = b.started.clone();
    b.stop();
    b.stop();
    h.runtime.stop("never-existed").unwrap();
    assert_gone(&h, &spec, &started);
    let running = h.runtime.running().unwrap();
    assert_eq!(
        running.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [a.id()]
    );
}

#[test]
fn helper_survives_ctrl_c_and_sandboxes_start_with_clean_signals() {
    let h = Harness::new();
    let sb = h.start("signals", default_limits());
    let helper = h.runtime.helper_pid().unwrap();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        kill(Pid::from_raw(i32::try_from(helper).unwrap()), signal).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.runtime.running().unwrap().len(), 1);
    assert_eq!(
        h.runtime.helper_pid(),
        Some(helper),
        "the helper was replaced"
    );
    // Nothing ignored or blocked leaks from the helper into the init.
    let status = sb.ok("grep -E '^Sig(Ign|Blk):' /proc/1/status");
    for line in status.lines() {
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
}

#[test]
fn an_init_that_exits_is_reaped_and_not_running() {
    let h = Harness::new();
    let sb = h.start("exits", default_limits());
    let pid = sb.started.pid;
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until(|| !Path::new(&format!("/proc/{pid}")).exists());
    assert!(h.runtime.running().unwrap().is_empty());
}

fn assert_leftovers_absent(h: &Harness, spec: &sandpit_runtime::SandboxSpec) {
    let id = &spec.id;
    assert_eq!(
        common::cgroup_dirs(id),
        Vec::<std::path::PathBuf>::new(),
        "cgroup left by {id}"
    );
    let helper = h.runtime.helper_pid().unwrap();
    assert_eq!(
        common::mounts_mentioning(helper, &spec.state_dir),
        Vec::<String>::new(),
        "mounts left by {id}"
    );
    assert!(!spec.agent_socket.exists(), "socket left by {id}");
    let state = h.run_root();
    for dir in ["containers", "bundles"] {
        assert!(!state.join(dir).join(id).exists(), "{dir} left by {id}");
    }
    assert!(
        !state.join("records").join(format!("{id}.json")).exists(),
        "record left by {id}"
    );
    let running = h.runtime.running().unwrap();
    assert!(running.iter().all(|r| &r.id != id));
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn wait_until(mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < until, "condition not met in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python_server() -> &'static str {
    "python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\", int(sys.argv[1]))); s.listen(); [c.close() for c, _ in iter(s.accept, None)]'"
}

/// "connected" or "blocked", as seen from inside `sandbox`.
fn connect_from(sandbox: &common::Sandbox<'_>, host: &str, port: u16) -> String {
    let script = format!(
        "python3 -c 'import socket\ntry:\n socket.create_connection((\"{host}\", {port}), timeout=3); print(\"connected\")\nexcept OSError as e:\n print(\"blocked\")'"
    );
    sandbox.ok(&script)
}

/// The host's own IPv4 addresses, loopback and sandbox veths excluded.
fn host_addresses() -> Vec<String> {
    let addrs = nix::ifaddrs::getifaddrs().unwrap();
    addrs
        .filter(|a| !a.interface_name.starts_with("spv") && a.interface_name != "lo")
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip().to_string()))
        .collect()
}
