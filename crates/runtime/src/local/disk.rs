//! The capacity-limited writable layer: a sparse ext4 image per sandbox,
//! loop-mounted by the start (in its own mount namespace, see
//! [`crate::mount_ns`]) and held by the container while the sandbox runs.
//!
//! The image is created (sparse, so it costs only its metadata, ~230 KB)
//! on the first start as a copy of a pre-formatted blank, and kept across stops, so the files in
//! it survive stop/start like a plain upper directory. A sandbox whose state
//! dir already has a plain `upper/` from before capacities were enforced
//! keeps using it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use nix::mount::MsFlags;

use super::layout::SandboxPaths;
use super::{loopdev, sparse};
use crate::spec::SandboxSpec;

/// Absolute paths: the helper may run without a `PATH` that has `sbin`.
const MKFS: &str = "/sbin/mkfs.ext4";
const RESIZE: &str = "/sbin/resize2fs";

/// Bytes per inode of a writable layer (most files come from the image).
const LAYER_INODE_RATIO: u32 = 65536;
/// Bytes per inode of a volume: ext4's default, as volumes hold whole
/// trees of small files (a `node_modules`).
const VOLUME_INODE_RATIO: u32 = 16384;
/// How many blank images the helper keeps.
const MAX_BLANKS: usize = 16;

/// Whether `spec`'s writable layer lives in a disk image.
pub fn used(spec: &SandboxSpec, paths: &SandboxPaths) -> bool {
    spec.fs_capacity_bytes > 0 && (paths.disk_image.exists() || !paths.upper.exists())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Create (first time) and mount the image at `paths.disk`.
pub fn mount(capacity: u64, paths: &SandboxPaths, blanks: &Path) -> io::Result<()> {
    fs::create_dir_all(&paths.disk)?;
    if !paths.disk_image.exists() {
        copy_layer_blank(capacity, &paths.disk_image, blanks)?;
    }
    mount_image(&paths.disk_image, &paths.disk)
}

/// Creates `image` as a copy of the writable layer's blank of `capacity`
/// (see [`super::spares`]).
pub fn copy_layer_blank(capacity: u64, image: &Path, blanks: &Path) -> io::Result<()> {
    let blank = Blank {
        capacity,
        kind: Kind::Layer,
    };
    blank.copy_to(image, blanks)
}

/// A freshly formatted image of one capacity and inode ratio. `mkfs.ext4`
/// runs once per kind, into the helper's `blanks/` directory; every new
/// disk is a sparse copy of that blank, which takes a fraction of the time
/// of a format (see docs/benchmarks.md). The copies share the blank's
/// file-system UUID, which nothing relies on.
struct Blank {
    capacity: u64,
    kind: Kind,
}

/// What a blank becomes.
#[derive(Clone, Copy)]
enum Kind {
    /// A writable layer: the overlay's `upper` and `work` are made in the
    /// blank, so a first start creates no inode in a fresh file system.
    Layer,
    /// A volume: empty.
    Volume,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Layer => "layer",
            Kind::Volume => "volume",
        }
    }

    fn inode_ratio(self) -> u32 {
        match self {
            Kind::Layer => LAYER_INODE_RATIO,
            Kind::Volume => VOLUME_INODE_RATIO,
        }
    }
}

impl Blank {
    /// Creates `image` as a copy of this blank (made first if needed).
    fn copy_to(&self, image: &Path, blanks: &Path) -> io::Result<()> {
        let src = {
            let _lock = exclusive(blanks)?;
            self.open(blanks)?
        };
        copy_sparse(&src, image)
    }

    /// Opens this blank, formatting it first if needed. Call under
    /// [`exclusive`]: another helper may be making or evicting blanks.
    fn open(&self, blanks: &Path) -> io::Result<File> {
        let blank = blanks.join(format!("{}-{}.img", self.capacity, self.kind.name()));
        if !blank.exists() {
            fs::create_dir_all(blanks)?;
            let root = match self.kind {
                Kind::Layer => Some(layer_root(blanks)?),
                Kind::Volume => None,
            };
            format(
                &blank,
                self.capacity,
                self.kind.inode_ratio(),
                root.as_deref(),
            )?;
            evict_old_blanks(blanks);
        }
        let src = File::open(&blank)?;
        let _ = src.set_modified(SystemTime::now()); // recently used
        Ok(src)
    }
}

fn copy_sparse(src: &File, image: &Path) -> io::Result<()> {
    let staging = image.with_extension("img.new");
    let dst = File::create(&staging)?;
    if let Err(err) = sparse::copy(src, &dst) {
        let _ = fs::remove_file(&staging);
        return Err(err);
    }
    fs::rename(&staging, image)
}

/// Several runtime helpers start sandboxes in parallel (see
/// `crate::helper`): making or evicting a blank, and attaching a volume's
/// image (which sandboxes share), happen under this exclusive lock on a
/// file beside `dir` (`blanks`; [`super::spares`] locks `spares` so).
/// Released when the file is dropped.
pub fn exclusive(dir: &Path) -> io::Result<File> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))?;
    lock.lock()?;
    Ok(lock)
}

/// Keeps the `MAX_BLANKS` most recently used blanks (callers choose
/// capacities freely, so the set of kinds is unbounded).
fn evict_old_blanks(blanks: &Path) {
    let Ok(entries) = fs::read_dir(blanks) else {
        return;
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(MAX_BLANKS);
    for (_, path) in found.into_iter().take(excess) {
        let _ = fs::remove_file(path);
    }
}

/// A directory beside the blanks with an empty `upper` and `work` (root's,
/// 0755, as the helper would make them), which `mkfs.ext4 -d` copies into a
/// writable layer's blank.
fn layer_root(blanks: &Path) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = blanks.with_extension("layer-root");
    for dir in [root.join("upper"), root.join("work")] {
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    }
    Ok(root)
}

/// Creates `image`, a sparse ext4 file system of `capacity` bytes with one
/// inode per `inode_ratio` bytes, holding a copy of `root` when given. It
/// is written next to `image` and renamed, so `image` appears only
/// complete.
pub fn format(
    image: &Path,
    capacity: u64,
    inode_ratio: u32,
    root: Option<&Path>,
) -> io::Result<()> {
    let staging = image.with_extension("img.new");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&staging)?;
    file.set_len(capacity)?;
    drop(file);
    // No journal (the layer is scratch space that survives clean stops),
    // no reserved blocks (the sandbox's root may use every byte), inode
    // tables initialised lazily.
    let made = run(Command::new(MKFS)
        .args(["-q", "-F", "-m", "0", "-i", &inode_ratio.to_string()])
        .args(["-O", "^has_journal,^resize_inode"])
        .args(["-E", "lazy_itable_init=1,nodiscard"])
        .args(root.map(|r| [Path::new("-d"), r]).into_iter().flatten())
        .arg(&staging));
    if let Err(err) = made {
        let _ = fs::remove_file(&staging);
        return Err(err);
    }
    fs::rename(&staging, image)
}

/// Mounts a sandbox's disk `image` (ext4) at `target`: through the loop
/// device noted as attached to it when one still is (a capture holds it, or
/// the last run's mount is still going), so both mounts share one
/// superblock; else through a newly attached one (autoclear: it detaches
/// when its last mount goes), noted. One start at a time per sandbox.
pub fn mount_image(image: &Path, target: &Path) -> io::Result<()> {
    mount_through(image, target, loopdev::noted, true)
}

/// [`mount_image`] for a volume's image, which several sandboxes may mount:
/// the device is searched for (call under [`exclusive`]), never noted (a
/// note beside a volume's image would outlive the volume).
fn mount_shared(image: &Path, target: &Path) -> io::Result<()> {
    mount_through(image, target, loopdev::find, false)
}

/// Mounts `image` through the device `attached_to` finds, or through a new
/// loop device when there is none or it detached meanwhile (noted beside
/// the image if `note`).
fn mount_through(
    image: &Path,
    target: &Path,
    attached_to: fn(&Path) -> Option<std::path::PathBuf>,
    note: bool,
) -> io::Result<()> {
    if let Some(device) = attached_to(image) {
        match mount_ext4(&device, target) {
            Ok(()) => return Ok(()),
            Err(err) if attached_to(image).is_some() => return Err(err),
            Err(_) => {} // its last mount went: attach anew
        }
    }
    let attached = loopdev::attach(image)?;
    if note {
        loopdev::note(image, &attached)?;
    }
    mount_ext4(&attached.path, target)
}

fn mount_ext4(device: &Path, target: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    nix::mount::mount(Some(device), target, Some("ext4"), flags, None::<&str>)
        .map_err(io::Error::from)
}

/// Runs `f` with the writable layer of the running sandbox whose state dir
/// is `state_dir` mounted, in a mount namespace that goes with the call;
/// `f` gets the overlay's upper directory. The image is mounted through the
/// loop device it is attached to (see [`loopdev::noted`]): `f` sees the
/// file system the sandbox writes to.
pub fn with_writable_layer<T: Send>(
    state_dir: &Path,
    f: impl FnOnce(&Path) -> T + Send,
) -> io::Result<T> {
    let paths = SandboxPaths::new(state_dir);
    let view = state_dir.join("disk-view");
    fs::create_dir_all(&view)?;
    let seen = crate::mount_ns::run_private(|| {
        let device = loopdev::noted(&paths.disk_image)
            .ok_or_else(|| io::Error::other("the sandbox's disk is not attached"))?;
        mount_ext4(&device, &view)?;
        Ok(f(&view.join("upper")))
    })
    .map_err(io::Error::other)
    .and_then(|r| r);
    let _ = fs::remove_dir(&view);
    seen
}

/// Makes a volume's image ready (see [`prepare_volume`]) and loop-mounts
/// it at `target`, under [`exclusive`]: two sandboxes of one volume
/// starting at once must share one loop device, and a resize must not run
/// while another helper attaches the image.
pub fn attach_volume(image: &Path, size: u64, blanks: &Path, target: &Path) -> io::Result<()> {
    let _lock = exclusive(blanks)?;
    prepare_volume(image, size, blanks)?;
    mount_shared(image, target)
}

/// Makes a volume's image ready to mount: creates it, or grows it to
/// `size` when the volume was resized and no sandbox has it mounted (a
/// mounted image keeps its size until its last user stops). Call under
/// [`exclusive`].
fn prepare_volume(image: &Path, size: u64, blanks: &Path) -> io::Result<()> {
    if !image.exists() {
        let blank = Blank {
            capacity: size,
            kind: Kind::Volume,
        };
        return copy_sparse(&blank.open(blanks)?, image);
    }
    if fs::metadata(image)?.len() >= size || attached(image) {
        return Ok(());
    }
    OpenOptions::new().write(true).open(image)?.set_len(size)?;
    run(Command::new(RESIZE).arg("-f").arg(image))
}

/// Whether a loop device is backed by `image`.
fn attached(image: &Path) -> bool {
    loopdev::find(image).is_some()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// The names in the root of `image`'s file system, and the mode and
    /// owner of `upper`, if any.
    fn root_of(image: &Path) -> (Vec<String>, Option<(u32, u32)>) {
        let view = image.with_extension("view");
        fs::create_dir_all(&view).unwrap();
        crate::mount_ns::run_private(|| {
            mount_image(image, &view).unwrap();
            let mut names: Vec<String> = fs::read_dir(&view)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let upper = fs::metadata(view.join("upper")).ok();
            (names, upper.map(|m| (m.mode(), m.uid())))
        })
        .unwrap()
    }

    /// Needs root (loop devices, mounts), like the runtime's other tests.
    #[test]
    fn a_layer_comes_with_its_upper_and_work_and_a_volume_empty() {
        let dir = tempfile::tempdir().unwrap();
        let blanks = dir.path().join("blanks");
        let (layer, volume) = (dir.path().join("layer.img"), dir.path().join("vol.img"));
        let blank = |kind| Blank {
            capacity: 16 << 20,
            kind,
        };
        blank(Kind::Layer).copy_to(&layer, &blanks).unwrap();
        blank(Kind::Volume).copy_to(&volume, &blanks).unwrap();
        let (names, upper) = root_of(&layer);
        assert_eq!(names, ["lost+found", "upper", "work"]);
        assert_eq!(
            upper,
            Some((0o040755, 0)),
            "upper: a directory, root's, 0755"
        );
        assert_eq!(root_of(&volume), (vec!["lost+found".to_string()], None));
    }

    /// Needs root (loop devices, mounts), like the runtime's other tests.
    #[test]
    fn a_disk_mounted_twice_is_one_file_system_on_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        format(&image, 16 << 20, LAYER_INODE_RATIO, None).unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let device = crate::mount_ns::run_private(|| {
            mount_image(&image, &a).unwrap();
            let device = loopdev::noted(&image).expect("the device is noted");
            fs::write(a.join("written"), "through a").unwrap();
            // A second mount (a capture's) goes through the same device.
            mount_image(&image, &b).unwrap();
            assert_eq!(loopdev::noted(&image).as_ref(), Some(&device));
            let dev = |p: &Path| fs::metadata(p).unwrap().dev();
            assert_eq!(dev(&a), dev(&b), "two superblocks on one image");
            assert_eq!(fs::read_to_string(b.join("written")).unwrap(), "through a");
            device
        })
        .unwrap();
        // The namespace and its mounts are gone: the device detached itself.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while loopdev::noted(&image).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            loopdev::noted(&image),
            None,
            "{} still attached",
            device.display()
        );
    }
}
