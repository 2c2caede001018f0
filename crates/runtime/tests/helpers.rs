//! Several runtime helpers working in parallel: one mount namespace that
//! holds nothing of any sandbox, each sandbox stopped cleanly whichever
//! helper started it.

mod common;

use std::fs;
use std::thread;

use common::{default_limits, mounts_mentioning, start_with, Harness};
use sandpit_runtime::Runtime;

fn mount_ns(pid: u32) -> String {
    fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn parallel_helpers_share_one_mount_namespace() {
    let h = Harness::new();
    let runtime = &h.runtime;
    let holder = runtime.namespace_pid().expect("the namespace holder runs");
    let table = || fs::read_to_string(format!("/proc/{holder}/mountinfo")).unwrap();
    let before = table();
    let specs: Vec<_> = (0..6)
        .map(|i| h.spec(&format!("par{i}"), default_limits()))
        .collect();
    // Six starts at once: the busy first helper makes the runtime launch
    // others (up to DEFAULT_HELPERS).
    let sandboxes = thread::scope(|s| {
        let started: Vec<_> = specs
            .into_iter()
            .map(|spec| s.spawn(move || start_with(runtime, spec)))
            .collect();
        started
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    let pids = runtime.helper_pids();
    assert!(
        pids.len() > 1,
        "only {pids:?} helper(s) ran six starts at once"
    );
    let namespaces: Vec<_> = pids.iter().chain([&holder]).map(|&p| mount_ns(p)).collect();
    assert!(
        namespaces.iter().all(|n| n == &namespaces[0]),
        "helpers in different mount namespaces: {namespaces:?}"
    );
    assert_ne!(
        namespaces[0],
        mount_ns(std::process::id()),
        "helpers share the host's mounts"
    );
    // Each start mounted in a namespace of its own (see
    // `sandpit_runtime::mount_ns`): the shared table, which every later
    // start copies and reads, did not grow.
    let after = table();
    let grown: Vec<_> = after.lines().filter(|l| !before.contains(l)).collect();
    assert_eq!(grown, Vec::<&str>::new(), "the helpers' mount table grew");
    for sandbox in &sandboxes {
        let leaked = mounts_mentioning(holder, &sandbox.spec.state_dir);
        assert_eq!(leaked, Vec::<String>::new(), "a sandbox mount is shared");
        let root = format!("/proc/{}/root/etc/passwd", sandbox.started.pid);
        assert!(fs::metadata(&root).is_ok(), "{root} not there");
    }
    let ids: Vec<_> = sandboxes.iter().map(|s| s.spec.id.clone()).collect();
    drop(sandboxes);
    let running = runtime.running().unwrap();
    assert!(
        running.iter().all(|r| !ids.contains(&r.id)),
        "still running after stop: {running:?}"
    );
}

/// `launch_all` starts every helper before any call needs it, in the one
/// shared mount namespace; calls then find them running.
#[test]
fn launch_all_starts_every_helper_ahead_of_use() {
    let h = Harness::new();
    let runtime = &h.runtime;
    assert_eq!(
        runtime.helper_pids().len(),
        1,
        "more than one helper at spawn"
    );
    runtime.launch_all();
    let pids = runtime.helper_pids();
    assert_eq!(
        pids.len(),
        sandpit_runtime::helper::DEFAULT_HELPERS,
        "helpers after launch_all: {pids:?}"
    );
    let holder = runtime.namespace_pid().expect("the namespace holder runs");
    for &pid in &pids {
        assert_eq!(mount_ns(pid), mount_ns(holder), "helper {pid} elsewhere");
    }
    // Launched once: a second call starts none.
    runtime.launch_all();
    assert_eq!(runtime.helper_pids(), pids);
    let sandbox = start_with(runtime, h.spec("ahead", default_limits()));
    assert_eq!(runtime.helper_pids(), pids, "a start launched a helper");
    drop(sandbox);
}

/// Spare state dirs that `runtime/spares/` holds, by inode.
fn spare_inodes(spares: &std::path::Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(spares)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".new"))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

/// Issue 19: once a helper has started a sandbox with a disk, it makes
/// spare state dirs of that capacity while idle (`local/spares.rs`), and
/// the next new sandbox's state dir is one of them, its image ready.
#[test]
fn a_new_sandbox_takes_a_spare_state_dir_made_while_idle() {
    use std::os::unix::fs::MetadataExt;
    let h = Harness::new();
    let spares = h.state_root().join("spares");
    let with_disk = |name: &str| {
        let mut spec = h.spec(name, default_limits());
        spec.fs_capacity_bytes = 64 << 20;
        spec
    };
    let first = h.start_spec(with_disk("spare-a"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while spare_inodes(&spares).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no spares made");
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let made = spare_inodes(&spares);
    let second = h.start_spec(with_disk("spare-b"));
    let state_dir = &second.spec.state_dir;
    let inode = fs::metadata(state_dir).unwrap().ino();
    assert!(
        made.contains(&inode),
        "{state_dir:?} is not one of the spares"
    );
    assert_eq!(second.ok("echo written > /tmp/f; cat /tmp/f"), "written");
    assert!(
        !spare_inodes(&spares).contains(&inode),
        "a spare handed out twice"
    );
    drop((first, second));
}
