//! Unpacking real and hostile layers (needs root for ownership, whiteouts
//! and the overlay xattr).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::{Builder, EntryType, Header};

use super::*;

const MAX: u64 = 1 << 30;

fn header(path: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

struct Layer(Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let h = header(path.as_bytes(), EntryType::Regular, data.len() as u64, mode);
        self.0.append(&h, data).unwrap();
        self
    }
    fn dir(mut self, path: &str, mode: u32) -> Self {
        let h = header(path.as_bytes(), EntryType::Directory, 0, mode);
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Self {
        let mut h = header(path.as_bytes(), kind, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn device(mut self, path: &str) -> Self {
        let mut h = header(path.as_bytes(), EntryType::Char, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn unpack_into(bytes: &[u8]) -> (tempfile::TempDir, Result<Report, UnpackError>) {
    let dir = tempfile::tempdir().unwrap();
    let result = unpack(bytes, Compression::None, dir.path(), MAX);
    (dir, result)
}

#[test]
fn keeps_modes_ownership_and_symlinks() {
    let layer = Layer::new()
        .dir("bin/", 0o755)
        .file("bin/tool", b"#!/bin/sh\n", 0o4755)
        .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
        .link(EntryType::Symlink, "usr/bin", "/bin")
        .link(EntryType::Link, "bin/alias", "bin/tool")
        .bytes();
    let (dir, result) = unpack_into(&layer);
    let report = result.unwrap();
    assert_eq!(report.entries, 5);
    let tool = fs::metadata(dir.path().join("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (1234, 4321));
    assert_eq!(tool.nlink(), 2);
    assert!(dir.path().join("etc/passwd").is_file());
    assert_eq!(
        fs::read_link(dir.path().join("usr/bin")).unwrap(),
        Path::new("/bin")
    );
}

#[test]
fn refuses_parent_components() {
    for path in ["../evil", "a/../../evil", "./../evil"] {
        let (dir, result) = unpack_into(&Layer::new().file(path, b"x", 0o644).bytes());
        assert!(matches!(result, Err(UnpackError::Escape(_))), "{path}");
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }
}

#[test]
fn never_writes_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    for layer in [
        Layer::new()
            .link(EntryType::Symlink, "evil", target)
            .file("evil/pwned", b"x", 0o644),
        Layer::new()
            .link(EntryType::Symlink, "evil", "../../../../../../..")
            .file("evil/tmp/pwned", b"x", 0o644),
        Layer::new()
            .link(EntryType::Symlink, "evil", target)
            .dir("evil/sub", 0o777),
    ] {
        let (_dir, result) = unpack_into(&layer.bytes());
        assert!(matches!(result, Err(UnpackError::Escape(_))));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

#[test]
fn replaces_a_symlink_instead_of_following_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"host").unwrap();
    let layer = Layer::new()
        .link(EntryType::Symlink, "f", victim.to_str().unwrap())
        .file("f", b"layer", 0o644)
        .bytes();
    let (dir, result) = unpack_into(&layer);
    result.unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"host");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"layer");
}

#[test]
fn hard_links_must_stay_inside() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"s").unwrap();
    for layer in [
        Layer::new().link(EntryType::Link, "h", "../../../../../../../etc/passwd"),
        Layer::new()
            .link(EntryType::Symlink, "d", outside.path().to_str().unwrap())
            .link(EntryType::Link, "h", "d/secret"),
    ] {
        let (dir, result) = unpack_into(&layer.bytes());
        assert!(matches!(result, Err(UnpackError::Escape(_))));
        assert!(!dir.path().join("h").exists());
    }
}

#[test]
fn skips_device_nodes() {
    let (dir, result) = unpack_into(&Layer::new().device("dev/mem").bytes());
    assert_eq!(result.unwrap().skipped_devices, 1);
    assert!(fs::symlink_metadata(dir.path().join("dev/mem")).is_err());
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let layer = Layer::new()
        .file("etc/.wh.motd", b"", 0o644)
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .bytes();
    let (dir, result) = unpack_into(&layer);
    result.unwrap();
    let motd = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
    assert!(motd.file_type().is_char_device());
    assert_eq!(motd.rdev(), 0);
    assert!(!dir.path().join("etc/.wh.motd").exists());
    let opaque = xattr::get(dir.path().join("var/cache"), "trusted.overlay.opaque").unwrap();
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
}

#[test]
fn gzip_and_zstd_layers() {
    let layer = Layer::new().file("hello", b"world", 0o644).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&layer[..], 3).unwrap();
    for (bytes, kind) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
        let dir = tempfile::tempdir().unwrap();
        unpack(&bytes[..], kind, dir.path(), MAX).unwrap();
        assert_eq!(fs::read(dir.path().join("hello")).unwrap(), b"world");
    }
}

#[test]
fn bounds_the_unpacked_size() {
    let layer = Layer::new().file("big", &[0u8; 4096], 0o644).bytes();
    let dir = tempfile::tempdir().unwrap();
    let result = unpack(&layer[..], Compression::None, dir.path(), 1024);
    assert!(matches!(result, Err(UnpackError::TooLarge(1024))));
}

#[test]
fn media_types() {
    use Compression::*;
    for (mt, want) in [
        ("application/vnd.oci.image.layer.v1.tar", None),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
    ] {
        assert_eq!(Compression::from_media_type(mt).unwrap(), want);
    }
    assert!(Compression::from_media_type("application/json").is_err());
}
