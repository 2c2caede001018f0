//! Copying a tree that sandboxed code controls (a sandbox's writable layer)
//! without ever following a link it made.
//!
//! The host copies a writable layer as root (snapshot capture). Code in the
//! sandbox can rename and replace any entry of that tree while the copy
//! runs, so a copier that resolves paths by name (`cp -a`: `lstat` then
//! `open` of `upper/a/b/c`) can be made to descend through a directory that
//! was swapped for a symlink to a host path, and copy host files (Docker's
//! CVE-2018-15664). This copier never resolves more than one component at a
//! time, always relative to a directory it already holds open, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: a swapped entry is at worst copied as what it now is
//! (a symlink is copied as a symlink, never followed), and a directory
//! renamed away while it is copied is still the directory the copier holds.
//! What an entry is comes from `fstat` of the opened descriptor, not from
//! the name.
//!
//! Kept: regular files (sparse: holes stay holes), directories, symlinks
//! (their text, never resolved), hard links within the tree, FIFOs,
//! overlayfs whiteouts (0/0 character devices) and opaque directories
//! (`trusted.overlay.opaque`), owners, modes and times. Dropped: sockets,
//! other device nodes, other extended attributes (image layers drop them
//! too, see `sandpit_images::unpack`).

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{open, openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use thiserror::Error;
use xattr::FileExt;

/// Deeper trees are refused: every level holds two descriptors open.
pub const MAX_DEPTH: usize = 1024;

/// The overlayfs attribute that makes an upper directory hide its lowers.
const OPAQUE: &str = "trusted.overlay.opaque";

#[derive(Debug, Error)]
pub enum TreeCopyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the tree is nested deeper than {MAX_DEPTH} directories")]
    TooDeep { path: PathBuf },
}

/// What a copy copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes of regular files (apparent size).
    pub bytes: u64,
    /// Entries copied, directories included.
    pub entries: u64,
}

/// Copies the directory `src` into `dst`, which must not exist yet and is
/// made with `src`'s owner and mode. Top-level entries named in `skip_top`
/// (e.g. `tmp`) are left out. `src` itself is opened by path (the caller's
/// trusted path, which may go through `/proc/<pid>/root`); its last
/// component must be a directory, not a symlink.
pub fn copy_tree(src: &Path, dst: &Path, skip_top: &[&str]) -> Result<CopyStats, TreeCopyError> {
    let at = |source: Errno| TreeCopyError::Io {
        path: src.to_path_buf(),
        source: source.into(),
    };
    let src_fd = owned(open(src, dir_flags(), Mode::empty()).map_err(at)?);
    let dst_at = |source: Errno| TreeCopyError::Io {
        path: dst.to_path_buf(),
        source: source.into(),
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dst)
        .map_err(|source| TreeCopyError::Io {
            path: dst.to_path_buf(),
            source,
        })?;
    let dst_fd = owned(open(dst, dir_flags(), Mode::empty()).map_err(dst_at)?);
    let mut copier = Copier {
        dst_root: dst_fd.try_clone().map_err(|source| TreeCopyError::Io {
            path: dst.to_path_buf(),
            source,
        })?,
        links: HashMap::new(),
        stats: CopyStats::default(),
        skip_top: skip_top
            .iter()
            .map(|s| OsStr::new(s).as_bytes().to_vec())
            .collect(),
    };
    copier.directory(&src_fd, &dst_fd, Path::new(""), 0)?;
    let st = fstat(src_fd.as_raw_fd()).map_err(at)?;
    apply_meta(&dst_fd, &st).map_err(|source| TreeCopyError::Io {
        path: dst.to_path_buf(),
        source,
    })?;
    Ok(copier.stats)
}

struct Copier {
    dst_root: OwnedFd,
    /// Files with more than one link: (dev, ino) → path of the first copy,
    /// relative to the destination root.
    links: HashMap<(u64, u64), PathBuf>,
    stats: CopyStats,
    skip_top: Vec<Vec<u8>>,
}

impl Copier {
    /// Copies the entries of the open directory `src` into the open
    /// directory `dst`; `rel` is their path below the roots.
    fn directory(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        rel: &Path,
        depth: usize,
    ) -> Result<(), TreeCopyError> {
        if depth >= MAX_DEPTH {
            return Err(TreeCopyError::TooDeep {
                path: rel.to_path_buf(),
            });
        }
        let names = entry_names(src).map_err(|source| TreeCopyError::Io {
            path: rel.to_path_buf(),
            source,
        })?;
        for name in names {
            if depth == 0 && self.skip_top.iter().any(|s| s == name.as_bytes()) {
                continue;
            }
            let child = rel.join(OsStr::from_bytes(name.as_bytes()));
            self.entry(src, dst, &name, &child, depth)
                .map_err(|err| match err {
                    Step::Io(source) => TreeCopyError::Io {
                        path: child.clone(),
                        source,
                    },
                    Step::Tree(err) => err,
                })?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        name: &CStr,
        rel: &Path,
        depth: usize,
    ) -> Result<(), Step> {
        let st = match fstatat(Some(src.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()), // removed meanwhile
            Err(err) => return Err(Step::Io(err.into())),
        };
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => self.subdirectory(src, dst, name, rel, depth),
            SFlag::S_IFREG => self.file(src, dst, name, rel).map_err(Step::Io),
            SFlag::S_IFLNK => symlink(src, dst, name, &st).map_err(Step::Io),
            SFlag::S_IFCHR if st.st_rdev == 0 => special(dst, name, SFlag::S_IFCHR, &st),
            SFlag::S_IFIFO => special(dst, name, SFlag::S_IFIFO, &st),
            // Sockets and device nodes are not layer content.
            _ => return Ok(()),
        }?;
        self.stats.entries += 1;
        Ok(())
    }

    fn subdirectory(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        name: &CStr,
        rel: &Path,
        depth: usize,
    ) -> Result<(), Step> {
        let Some(child) = open_beneath(src, name, dir_flags()).map_err(Step::Io)? else {
            return Ok(()); // replaced by something else meanwhile
        };
        let st = fstat(child.as_raw_fd()).map_err(|e| Step::Io(e.into()))?;
        if !is(&st, SFlag::S_IFDIR) {
            return Ok(());
        }
        mkdirat(Some(dst.as_raw_fd()), name, Mode::from_bits_truncate(0o700))
            .map_err(|e| Step::Io(e.into()))?;
        let out = owned(
            openat(Some(dst.as_raw_fd()), name, dir_flags(), Mode::empty())
                .map_err(|e| Step::Io(e.into()))?,
        );
        self.directory(&child, &out, rel, depth + 1)
            .map_err(Step::Tree)?;
        copy_opaque(&child, &out).map_err(Step::Io)?;
        apply_meta(&out, &st).map_err(Step::Io)
    }

    fn file(&mut self, src: &OwnedFd, dst: &OwnedFd, name: &CStr, rel: &Path) -> io::Result<()> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let Some(input) = open_beneath(src, name, flags)? else {
            return Ok(());
        };
        let st = fstat(input.as_raw_fd())?;
        if !is(&st, SFlag::S_IFREG) {
            return Ok(()); // a FIFO or device swapped in: never read it
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                return linkat(
                    Some(self.dst_root.as_raw_fd()),
                    first.as_path(),
                    Some(dst.as_raw_fd()),
                    Path::new(OsStr::from_bytes(name.to_bytes())),
                    AtFlags::empty(),
                )
                .map_err(io::Error::from);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        let output = owned(openat(
            Some(dst.as_raw_fd()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?);
        let (input, output) = (File::from(input), File::from(output));
        crate::local::sparse::copy(&input, &output)?;
        self.stats.bytes += u64::try_from(st.st_size).unwrap_or(0);
        apply_meta(&OwnedFd::from(output), &st)
    }
}

/// An entry's failure: an I/O error at this entry, or an error already
/// located deeper in the tree.
enum Step {
    Io(io::Error),
    Tree(TreeCopyError),
}

fn symlink(src: &OwnedFd, dst: &OwnedFd, name: &CStr, st: &FileStat) -> io::Result<()> {
    let target = match readlinkat(Some(src.as_raw_fd()), name) {
        Ok(target) => target,
        // Replaced by a non-link meanwhile: left out, like a removed entry.
        Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name)?;
    chown_at(dst, name, st)?;
    let (atime, mtime) = times(st);
    utimensat(
        Some(dst.as_raw_fd()),
        name,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// A whiteout (0/0 character device) or a FIFO, made anew: nothing is read
/// from the source.
fn special(dst: &OwnedFd, name: &CStr, kind: SFlag, st: &FileStat) -> Result<(), Step> {
    let io = |e: Errno| Step::Io(e.into());
    mknodat(
        Some(dst.as_raw_fd()),
        name,
        kind,
        Mode::from_bits_truncate(st.st_mode & 0o7777),
        0,
    )
    .map_err(io)?;
    chown_at(dst, name, st).map_err(io)
}

/// Gives the entry `name` of `dst` (never followed) `st`'s owner.
fn chown_at(dst: &OwnedFd, name: &CStr, st: &FileStat) -> Result<(), Errno> {
    fchownat(
        Some(dst.as_raw_fd()),
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens the single component `name` below `dir`, refusing symlinks, magic
/// links and mount crossings. `None` when the entry is gone or is (now) a
/// symlink.
fn open_beneath(dir: &OwnedFd, name: &CStr, flags: OFlag) -> io::Result<Option<OwnedFd>> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    for _ in 0..16 {
        match openat2(dir.as_raw_fd(), name, how) {
            Ok(fd) => return Ok(Some(owned(fd))),
            // A rename raced the lookup: try again.
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
    }
    Err(Errno::EAGAIN.into())
}

/// The names in an open directory, read through a duplicate descriptor.
fn entry_names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let dup = dir.try_clone()?;
    let mut reader = nix::dir::Dir::from_fd(into_raw(dup))?;
    let mut names = Vec::new();
    for entry in reader.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

fn copy_opaque(src: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
    let src = File::from(src.try_clone()?);
    if let Some(value) = src.get_xattr(OPAQUE)? {
        File::from(dst.try_clone()?).set_xattr(OPAQUE, &value)?;
    }
    Ok(())
}

/// Owner, then mode (a `chown` clears set-id bits), then times.
fn apply_meta(fd: &impl AsFd, st: &FileStat) -> io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    fchown(
        raw,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(raw, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    let (atime, mtime) = times(st);
    futimens(raw, &atime, &mtime)?;
    Ok(())
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and nothing else
    // owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn into_raw(fd: OwnedFd) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink as make_symlink, FileTypeExt, MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("upper");
        let outside = dir.path().join("outside");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "host secret").unwrap();
        (dir, src, outside)
    }

    #[test]
    fn symlinks_are_copied_as_links_never_followed() {
        let (dir, src, outside) = tree();
        make_symlink(outside.join("secret"), src.join("file-link")).unwrap();
        make_symlink(&outside, src.join("dir-link")).unwrap();
        make_symlink("../../outside", src.join("d/relative")).unwrap();
        let dst = dir.path().join("copy");
        copy_tree(&src, &dst, &[]).unwrap();
        assert_eq!(
            fs::read_link(dst.join("file-link")).unwrap(),
            outside.join("secret")
        );
        assert!(fs::symlink_metadata(dst.join("dir-link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_link(dst.join("d/relative")).unwrap(),
            Path::new("../../outside")
        );
    }

    #[test]
    fn files_modes_owners_hard_links_and_holes_are_kept() {
        let (dir, src, _) = tree();
        fs::write(src.join("d/a"), "alpha").unwrap();
        fs::hard_link(src.join("d/a"), src.join("b")).unwrap();
        fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o751)).unwrap();
        nix::unistd::chown(
            &src.join("b"),
            Some(Uid::from_raw(1234)),
            Some(Gid::from_raw(99)),
        )
        .unwrap();
        let sparse = File::create(src.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        let dst = dir.path().join("copy");
        let stats = copy_tree(&src, &dst, &[]).unwrap();
        assert_eq!(fs::read_to_string(dst.join("d/a")).unwrap(), "alpha");
        let (a, b) = (
            fs::metadata(dst.join("d/a")).unwrap(),
            fs::metadata(dst.join("b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay one file");
        assert_eq!((b.uid(), b.gid()), (1234, 99));
        let d = fs::metadata(dst.join("d")).unwrap();
        assert_eq!(d.mode() & 0o7777, 0o751);
        let s = fs::metadata(dst.join("sparse")).unwrap();
        assert_eq!(s.len(), 64 << 20);
        assert!(s.blocks() < 64, "holes stay holes");
        assert_eq!(stats.bytes, 5 + (64 << 20));
    }

    #[test]
    fn whiteouts_opaque_dirs_and_fifos_are_made_anew_and_tmp_is_skipped() {
        let (dir, src, _) = tree();
        mknodat(None, &src.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        nix::unistd::mkfifo(&src.join("d/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        xattr::set(src.join("d"), OPAQUE, b"y").unwrap();
        fs::create_dir(src.join("tmp")).unwrap();
        fs::write(src.join("tmp/scratch"), "x").unwrap();
        let dst = dir.path().join("copy");
        copy_tree(&src, &dst, &["tmp"]).unwrap();
        let gone = fs::symlink_metadata(dst.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert!(fs::symlink_metadata(dst.join("d/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            xattr::get(dst.join("d"), OPAQUE).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!dst.join("tmp").exists());
    }

    #[test]
    fn a_directory_swapped_for_a_link_while_copying_never_leads_out() {
        // The sandbox's side of CVE-2018-15664: a thread keeps exchanging a
        // directory with a symlink to a host directory holding a file of the
        // same name while the tree is copied over and over.
        let (dir, src, outside) = tree();
        fs::write(outside.join("secret"), "host secret").unwrap();
        fs::write(src.join("d/secret"), "decoy").unwrap();
        for i in 0..64 {
            fs::write(src.join(format!("d/f{i}")), "x").unwrap();
        }
        make_symlink(&outside, src.join("l")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, d, l) = (stop.clone(), src.join("d"), src.join("l"));
            std::thread::spawn(move || {
                let (d, l) = (
                    CString::new(d.as_os_str().as_bytes()).unwrap(),
                    CString::new(l.as_os_str().as_bytes()).unwrap(),
                );
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both paths are valid NUL-terminated strings.
                    let r = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            d.as_ptr(),
                            libc::AT_FDCWD,
                            l.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    swaps += u64::from(r == 0);
                }
                swaps
            })
        };
        for round in 0..200 {
            let dst = dir.path().join(format!("copy{round}"));
            copy_tree(&src, &dst, &[]).unwrap();
            for name in ["d", "l"] {
                let copied = dst.join(name);
                if fs::symlink_metadata(&copied).is_ok_and(|m| m.is_dir()) {
                    let text = fs::read_to_string(copied.join("secret")).unwrap_or_default();
                    assert_ne!(
                        text, "host secret",
                        "round {round}: {name}/secret came from the host"
                    );
                }
            }
            fs::remove_dir_all(&dst).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(swapper.join().unwrap() > 100, "the race did not run");
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "host secret"
        );
    }

    #[test]
    fn a_too_deep_tree_is_refused() {
        let (dir, src, _) = tree();
        let mut path = src.clone();
        for _ in 0..MAX_DEPTH + 1 {
            path.push("n");
        }
        fs::create_dir_all(&path).unwrap();
        let err = copy_tree(&src, &dir.path().join("copy"), &[]).unwrap_err();
        assert!(matches!(err, TreeCopyError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn the_source_root_must_not_be_a_link() {
        let (dir, _, outside) = tree();
        let link = dir.path().join("upper-link");
        make_symlink(&outside, &link).unwrap();
        assert!(copy_tree(&link, &dir.path().join("copy"), &[]).is_err());
    }
}
