//! Issue 14 findings on real sandboxes: socket families, the open-file
//! limit. Needs root.

mod common;

use std::fs;

use common::{default_limits, has_sys_resource, Harness};
use sandpit_runtime::oci;

/// Python prints the errno of `socket(family, SOCK_STREAM)`, or "ok".
fn socket_errno(sb: &common::Sandbox<'_>, family: &str) -> String {
    let script = format!(
        "python3 -c 'import socket\ntry:\n  socket.socket({family}, socket.SOCK_STREAM).close(); print(\"ok\")\nexcept OSError as e: print(e.errno)'"
    );
    sb.ok(&script)
}

#[test]
fn vsock_and_other_unneeded_socket_families_are_refused() {
    let h = Harness::new();
    let sb = h.start("families", default_limits());
    let eafnosupport = libc::EAFNOSUPPORT.to_string();
    assert_eq!(socket_errno(&sb, "socket.AF_VSOCK"), eafnosupport);
    assert_eq!(socket_errno(&sb, "socket.AF_ALG"), eafnosupport);
    assert_eq!(socket_errno(&sb, "socket.AF_INET"), "ok");
    assert_eq!(socket_errno(&sb, "socket.AF_UNIX"), "ok");
    // Name resolution and local networking still work.
    let lookup =
        "python3 -c 'import socket; print(socket.getaddrinfo(\"localhost\", 80)[0][4][0])'";
    assert_eq!(sb.ok(lookup), "127.0.0.1");
    assert!(sb.ok("ip -o link show lo").contains("lo"));
}

#[test]
fn open_files_are_limited_per_process() {
    let h = Harness::new();
    let sb = h.start("nofile", default_limits());
    // The helper inherits this process's limits; without CAP_SYS_RESOURCE
    // it cannot go above our hard limit.
    let ceiling = match has_sys_resource() {
        true => fs::read_to_string("/proc/sys/fs/nr_open")
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        false => {
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .unwrap()
                .1
        }
    };
    let expected = oci::nofile(default_limits().pids, ceiling.min(oci::NOFILE_LIMIT));
    assert!(expected < 20_000, "{expected}");
    assert_eq!(sb.ok("ulimit -n"), expected.to_string());
    assert_eq!(sb.ok("ulimit -Hn"), expected.to_string());
    assert!(!sb.sh(&format!("ulimit -Hn {}", expected + 1)).ok());
}
