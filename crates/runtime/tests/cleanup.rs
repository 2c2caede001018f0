//! Crash recovery: sandboxes outlive a dead helper, a new helper finds
//! them, and `cleanup` sweeps what the server no longer knows. Needs root.
//!
//! `cleanup` is host-wide (every `/sandpit/*` cgroup, every `spv*` link), so
//! the tests of this file take turns.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_gone, controller_dir, default_limits, link_exists, Harness};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sandpit_runtime::network::Netlink;
use sandpit_runtime::{Runtime, RuntimeError};

static HOST_WIDE: Mutex<()> = Mutex::new(());

#[test]
fn a_new_helper_finds_and_sweeps_what_a_killed_one_left() {
    let _turn = HOST_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let h = Harness::new();
    let keep = h.start("keep", default_limits());
    let lost = h.start("lost", default_limits());
    let lost_spec = lost.spec.clone();
    let lost_started = lost.started.clone();

    let old = h.runtime.helper_pid().unwrap();
    kill(Pid::from_raw(i32::try_from(old).unwrap()), Signal::SIGKILL).unwrap();
    wait_dead(old);
    assert!(
        keep.ping() && lost.ping(),
        "sandboxes must outlive their helper"
    );

    // The call in flight fails; the next one starts a new helper.
    let err = h.runtime.running().unwrap_err();
    assert!(matches!(err, RuntimeError::Helper(_)), "{err}");
    let mut running = h.runtime.running().unwrap();
    assert_ne!(h.runtime.helper_pid(), Some(old));
    running.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(running.len(), 2);
    assert_eq!(running[0].started, keep.started);
    assert_eq!(running[1].started, lost.started);

    let stray = format!("stray-{}", std::process::id());
    let stray_cgroup = controller_dir(&stray, "pids");
    fs::create_dir_all(&stray_cgroup).unwrap();

    let swept = h.runtime.cleanup(&[keep.id().to_string()]).unwrap();
    assert!(swept.contains(&lost_spec.id), "{swept:?}");
    assert!(swept.contains(&stray), "{swept:?}");
    assert!(!swept.contains(&keep.spec.id), "{swept:?}");
    assert_gone(&h, &lost_spec, &lost_started);
    assert!(!stray_cgroup.exists(), "stray cgroup left");
    assert!(keep.ping(), "cleanup harmed a kept sandbox");
    let running = h.runtime.running().unwrap();
    assert_eq!(
        running.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [keep.id()]
    );
    assert!(
        lost_spec.state_dir.join("upper").is_dir(),
        "the writable layer is kept"
    );
}

#[test]
fn cleanup_removes_stray_links_and_keeps_live_ones() {
    let _turn = HOST_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let h = Harness::new();
    let keep = h.start("links", default_limits());
    let own_netns = fs::File::open("/proc/self/ns/net").unwrap();
    let (stray, peer) = ("spv16383", "spvp16383");
    Netlink::new()
        .unwrap()
        .create_veth(stray, peer, own_netns.as_raw_fd())
        .unwrap();
    assert!(link_exists(stray) && link_exists(peer));

    h.runtime.cleanup(&[keep.id().to_string()]).unwrap();
    assert!(!link_exists(stray) && !link_exists(peer), "stray veth left");
    assert!(
        link_exists(&format!("spv{}", keep.spec.net_slot)),
        "a kept sandbox lost its veth"
    );
    assert!(keep.ping());

    // With nothing kept, everything goes.
    let spec = keep.spec.clone();
    let started = keep.started.clone();
    h.runtime.cleanup(&[]).unwrap();
    assert_gone(&h, &spec, &started);
    drop(keep);
}

#[test]
fn an_exiting_helper_releases_the_links_of_stopped_sandboxes() {
    let _turn = HOST_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let h = Harness::new();
    let keep = h.start("running", default_limits());
    let gone = h.start("stopped", default_limits());
    // Holding the namespace open keeps the veth pair alive after the init
    // dies, as a slow kernel teardown would.
    let held = fs::File::open(format!("/proc/{}/ns/net", gone.started.pid)).unwrap();
    let gone_link = format!("spv{}", gone.spec.net_slot);
    gone.stop();
    assert!(link_exists(&gone_link), "the held namespace keeps the link");

    h.runtime.shutdown();
    assert!(
        !link_exists(&gone_link),
        "a stopped sandbox's link outlived the helper"
    );
    assert!(
        link_exists(&format!("spv{}", keep.spec.net_slot)),
        "a running sandbox lost its link"
    );
    assert!(keep.ping(), "shutdown harmed a running sandbox");
    drop(held);
}

fn wait_dead(pid: u32) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if matches!(state, None | Some('Z')) {
            return;
        }
        assert!(Instant::now() < until, "helper {pid} did not die");
        std::thread::sleep(Duration::from_millis(10));
    }
}
