//! An unpacked layer back into an OCI layer tar (uncompressed), for a
//! replica that needs a layer another replica has ([`crate::unpack`] reads
//! it on the other side).
//!
//! The walk never follows a symbolic link (links are stored as links) and
//! opens files with `O_NOFOLLOW`. The overlayfs forms [`crate::unpack`]
//! made become OCI forms again: a 0/0 character device is the whiteout
//! `.wh.NAME`, a directory with `trusted.overlay.opaque=y` gets a
//! `.wh..wh..opq` entry. Hard links are stored as separate files; other
//! devices and FIFOs are left out (the unpacker skips them too).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};

const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";

/// Write layer directory `dir` to `out` as an uncompressed OCI layer tar.
pub fn pack_layer(dir: &Path, out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    walk(&mut builder, dir, Path::new(""))?;
    builder.into_inner()?.flush()
}

fn walk<W: Write>(builder: &mut tar::Builder<W>, root: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            append(builder, &rel, &meta, EntryType::Directory, io::empty())?;
            if xattr::get(&path, "trusted.overlay.opaque")?.as_deref() == Some(b"y") {
                append_empty(builder, &rel.join(OPAQUE_MARKER), &meta)?;
            }
            walk(builder, root, &rel)?;
        } else if kind.is_file() {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc_o_nofollow())
                .open(&path)?;
            append(builder, &rel, &meta, EntryType::Regular, file)?;
        } else if kind.is_symlink() {
            let mut header = header_for(&meta, EntryType::Symlink, 0);
            builder.append_link(&mut header, &rel, fs::read_link(&path)?)?;
        } else if kind.is_char_device() && meta.rdev() == 0 {
            let mut hidden = WHITEOUT_PREFIX.to_owned();
            hidden.push_str(&name.to_string_lossy());
            append_empty(builder, &rel.with_file_name(hidden), &meta)?;
        }
    }
    Ok(())
}

/// `O_NOFOLLOW` (the walk already saw a regular file; this closes the
/// window in which it could have become a link).
fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

fn header_for(meta: &fs::Metadata, kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(size);
    header
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    rel: &Path,
    meta: &fs::Metadata,
    kind: EntryType,
    data: impl io::Read,
) -> io::Result<()> {
    let size = if kind == EntryType::Regular {
        meta.len()
    } else {
        0
    };
    let mut header = header_for(meta, kind, size);
    // A file that changes size while it is read would corrupt the stream:
    // the tar crate copies exactly `size` bytes (and fails on a short read).
    builder.append_data(&mut header, rel, data.take(size))
}

fn append_empty<W: Write>(
    builder: &mut tar::Builder<W>,
    rel: &Path,
    meta: &fs::Metadata,
) -> io::Result<()> {
    let mut header = header_for(meta, EntryType::Regular, 0);
    header.set_mode(0o644);
    builder.append_data(&mut header, rel, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::{self, Compression};
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_layer_survives_pack_and_unpack() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = src_dir.path();
        fs::create_dir_all(src.join("etc/conf.d")).unwrap();
        fs::write(src.join("etc/conf.d/a.conf"), b"alpha\n").unwrap();
        fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("../etc/conf.d/a.conf", src.join("etc/link")).unwrap();
        symlink("/etc/shadow", src.join("outside")).unwrap();
        let long = "d".repeat(120);
        fs::create_dir_all(src.join(&long)).unwrap();
        fs::write(src.join(&long).join("f".repeat(120)), b"long").unwrap();
        // Overlay forms: a whiteout and an opaque directory (needs root,
        // as the runtime does).
        nix::sys::stat::mknod(
            &src.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir(src.join("opaque")).unwrap();
        xattr::set(src.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();

        let mut tar = Vec::new();
        pack_layer(src, &mut tar).unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let dst = dst_dir.path();
        unpack::unpack(&tar[..], Compression::None, dst, 1 << 20).unwrap();

        assert_eq!(fs::read(dst.join("etc/conf.d/a.conf")).unwrap(), b"alpha\n");
        let mode = fs::metadata(dst.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            fs::read_link(dst.join("etc/link")).unwrap(),
            Path::new("../etc/conf.d/a.conf")
        );
        assert_eq!(
            fs::read_link(dst.join("outside")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(
            fs::read(dst.join(&long).join("f".repeat(120))).unwrap(),
            b"long"
        );
        let gone = fs::symlink_metadata(dst.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        assert_eq!(
            xattr::get(dst.join("opaque"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!dst.join("opaque").join(OPAQUE_MARKER).exists());
    }
}
