//! Issue 14 findings on real sandboxes: socket families, the `/etc` files'
//! size, what the mount table reveals, the open-file limit. Needs root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

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
fn etc_files_cannot_fill_the_host_disk() {
    let h = Harness::new();
    let mut spec = h.spec("etc-cap", default_limits());
    spec.fs_capacity_bytes = 64 << 20;
    let sb = h.start_spec(spec);
    for file in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        let out = sb.sh(&format!("dd if=/dev/zero of={file} bs=1M count=8 2>&1"));
        assert!(!out.ok(), "8 MiB written to {file}: {}", out.text);
        let size: u64 = sb.ok(&format!("stat -c %s {file}")).parse().unwrap();
        assert!(size <= 1 << 20, "{file} holds {size} bytes");
    }
    // Still writable within bounds (tools append to /etc/hosts), once the
    // space is free again.
    sb.ok(": > /etc/hostname && : > /etc/resolv.conf && : > /etc/hosts");
    sb.ok("echo '10.0.0.1 extra' >> /etc/hosts && grep -q extra /etc/hosts");
    let on_host = sb.spec.state_dir.join("etc");
    let host_bytes: u64 = fs::read_dir(&on_host)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert!(host_bytes < 1 << 20, "{host_bytes} bytes on the host disk");
}

/// `path` and its ancestors except `/`.
fn with_ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .filter(|p| p.parent().is_some())
        .map(Path::to_path_buf)
        .collect()
}

/// Whether `text` names `path`: as a whole word of a mount table, or as the
/// start of a longer path.
fn names(text: &str, path: &Path) -> bool {
    let path = path.to_string_lossy();
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '=' | ':'))
        .any(|word| word == path || word.starts_with(&format!("{path}/")))
}

#[test]
fn the_mount_table_names_no_host_path() {
    let h = Harness::new();
    let mut spec = h.spec("mountinfo", default_limits());
    spec.fs_capacity_bytes = 64 << 20;
    // A read-only file bind from the data dir, like the trust bundle.
    let bundle = h.dir.path().join("egress").join("bundle.crt");
    fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    fs::write(&bundle, "bundle\n").unwrap();
    spec.mounts.push(sandpit_runtime::MountSpec::Bind {
        source: bundle,
        destination: "/etc/ssl/certs/ca-certificates.crt".into(),
        readonly: true,
    });
    let sb = h.start_spec(spec);
    assert_eq!(sb.ok("cat /etc/ssl/certs/ca-certificates.crt"), "bundle");
    let table = sb.ok("cat /proc/self/mountinfo /proc/mounts /proc/1/mountinfo");
    assert!(table.contains(" /etc/hosts "), "{table}");
    let mut hidden = with_ancestors(h.dir.path());
    hidden.extend(with_ancestors(&h.init));
    hidden.extend(h.image.layers.iter().flat_map(|l| with_ancestors(l)));
    for path in hidden {
        assert!(
            !names(&table, &path),
            "{} appears in:\n{table}",
            path.display()
        );
    }
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
