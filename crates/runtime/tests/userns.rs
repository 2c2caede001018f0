//! Sandboxes in their own user namespace (issue 15): root inside is an
//! unprivileged host id, the idmapped mounts show the right owners, and
//! root inside still does what users do. Needs root.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use common::{default_limits, Harness};
use sandpit_runtime::idmap::{slot_base, IDS_PER_SANDBOX};
use sandpit_runtime::{MountSpec, Runtime, SandboxSpec};

/// Far from the server's default base, so a test never shares ids with it.
const TEST_BASE: u32 = 1_000_000_000;

fn userns_spec(h: &Harness, name: &str) -> SandboxSpec {
    let mut spec = h.spec(name, default_limits());
    spec.userns_base = Some(slot_base(TEST_BASE, spec.net_slot).unwrap());
    spec
}

/// The real, effective, saved and filesystem ids on a `Uid:`/`Gid:` line.
fn status_ids(pid: impl std::fmt::Display, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn root_inside_is_an_unprivileged_host_id() {
    let h = Harness::new();
    let spec = userns_spec(&h, "userns-ids");
    let base = spec.userns_base.unwrap();
    let sb = h.start_spec(spec);
    let pid = sb.started.pid;
    assert_eq!(status_ids(pid, "Uid:"), [base; 4]);
    assert_eq!(status_ids(pid, "Gid:"), [base; 4]);
    assert_eq!(sb.ok("id -u; id -g"), "0\n0");
    let map = sb.ok("cat /proc/self/uid_map");
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(
        fields,
        ["0", &base.to_string(), &IDS_PER_SANDBOX.to_string()]
    );
    // A command's process, seen from the host, is not root either.
    let child = sb.ok("sleep 30 >/dev/null 2>&1 & echo $!");
    let host_pid: u32 = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| {
            let status = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            status.contains(&format!("NSpid:\t{p}\t{child}"))
        })
        .expect("the sleep's host pid");
    assert!(status_ids(host_pid, "Uid:").iter().all(|&u| u >= base));
}

#[test]
fn files_show_their_owners_inside_and_the_mapped_ids_on_the_host() {
    let h = Harness::new();
    let mut spec = userns_spec(&h, "userns-files");
    let base = spec.userns_base.unwrap();
    spec.mounts.push(MountSpec::Volume {
        image: spec.state_dir.join("vol.img"),
        size_bytes: 64 << 20,
        destination: "/vol".into(),
    });
    let sb = h.start_spec(spec);
    // The image's root-owned files are root's inside.
    assert_eq!(
        sb.ok("stat -c %u:%g /usr/bin /etc/passwd /"),
        "0:0\n0:0\n0:0"
    );
    sb.ok("echo hi > /vol/made && chown 1000:1000 /vol && touch /vol/user-file && chown 1000 /vol/user-file");
    assert_eq!(sb.ok("stat -c %u /vol/made /vol/user-file"), "0\n1000");
    // From the host, through the sandbox's mounts, they are mapped ids.
    let root = format!("/proc/{}/root", sb.started.pid);
    let made = fs::metadata(format!("{root}/vol/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (base, base));
    let user_file = fs::metadata(format!("{root}/vol/user-file")).unwrap();
    assert_eq!(user_file.uid(), base + 1000);
    // The writable layer keeps the ids as the sandbox sees them, so it
    // survives a restart in another slot.
    sb.ok("touch /root-file && chown 1000 /root-file");
    let upper = sb.spec.state_dir.join("upper/root-file");
    assert_eq!(fs::metadata(upper).unwrap().uid(), 1000);
}

#[test]
fn root_inside_still_administers_its_sandbox() {
    let h = Harness::new();
    let sb = h.start_spec(userns_spec(&h, "userns-admin"));
    // apt- and pip-like writes anywhere in its root (the host image's
    // `/usr` is the host's, read-only by design).
    sb.ok("mkdir -p /opt/tool /var/lib/apt/x /var/cache/y && echo x > /opt/tool/bin && echo 'u:x:1000:1000::/home/u:/bin/sh' >> /etc/passwd && rm -rf /var/cache/y && mkdir -p /home/u && chown u /home/u");
    sb.ok("touch /opt-file && chown 1000:1000 /opt-file && chmod 4755 /opt-file");
    assert_eq!(sb.ok("stat -c %u:%g /opt-file"), "1000:1000");
    // Switching to a user, and binding a privileged port.
    assert_eq!(
        sb.ok("setpriv --reuid 1000 --regid 1000 --clear-groups id -u"),
        "1000"
    );
    let bind = "python3 -c 'import socket; s=socket.socket(); s.bind((\"0.0.0.0\", 80)); print(\"bound\")'";
    assert_eq!(sb.ok(bind), "bound");
    // No nested user namespace, no mount.
    let nested = sb.sh("unshare -U true");
    assert!(!nested.ok(), "unshare -U succeeded: {}", nested.text);
    assert!(!sb.sh("unshare -Ur true").ok());
    assert!(!sb.sh("mount -t tmpfs none /mnt").ok());
}

/// Median start time with and without a user namespace; printed, not
/// asserted (run with `--nocapture` to see it).
#[test]
#[ignore = "measurement: cargo test -p sandpit-runtime --test userns -- --ignored --nocapture"]
fn measure_start_time() {
    let h = Harness::new();
    for userns in [false, true] {
        let mut times = Vec::new();
        for i in 0..30 {
            let mut spec = match userns {
                true => userns_spec(&h, &format!("m-u{i}")),
                false => h.spec(&format!("m-n{i}"), default_limits()),
            };
            spec.agent_log = false;
            fs::create_dir_all(&spec.state_dir).unwrap();
            let t = Instant::now();
            h.runtime.start(&spec).unwrap();
            times.push(t.elapsed());
            h.runtime.stop(&spec.id).unwrap();
        }
        times.sort();
        println!("userns={userns}: median start {:?}", times[times.len() / 2]);
    }
}
