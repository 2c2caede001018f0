//! Loop devices: attaching an image to a free one, and finding the one an
//! image is attached to already (noted on a sandbox's disk image, or
//! searched for).
//!
//! Written against the kernel's ioctls (`LOOP_CTL_GET_FREE`,
//! `LOOP_CONFIGURE`) rather than through mount(8) or a crate: mount(8)'s
//! `-o loop` reads every loop device's sysfs entry on each mount, and the
//! kernel keeps as many as were ever attached at once (2,000 after a
//! 2,000-sandbox run), so with mount(8) a start cost more with every
//! sandbox the host ever ran at once; and `loopdev-3`, the maintained
//! crate, generates its bindings with bindgen, which needs libclang to
//! build. These are three ioctls and two structs from `linux/loop.h`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
/// The device detaches when its last user (the mount) closes it.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Another attach may take the free device between asking and configuring.
const ATTEMPTS: usize = 16;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Default)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: Bytes<64>,
    lo_crypt_name: Bytes<64>,
    lo_encrypt_key: Bytes<32>,
    lo_init: [u64; 2],
}

/// A zeroed byte array (arrays longer than 32 have no `Default`).
#[repr(transparent)]
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A loop device attached to an image (autoclear: it detaches once nothing
/// holds it open; mount it before dropping this).
pub struct Attached {
    _device: File,
    pub path: PathBuf,
}

/// Extended attribute of an image naming the loop device it is attached to.
const NOTE_XATTR: &str = "user.sandpit.loop";

/// Notes on `image` the device it is attached to, for [`noted`]: in an
/// extended attribute (no new inode on the host's disk, whose allocation
/// costs a burst of creates on a journal-less ext4), or where the file
/// system has none, in a file beside it (`<image>.loop`).
pub fn note(image: &Path, attached: &Attached) -> io::Result<()> {
    let device = attached.path.as_os_str().as_encoded_bytes();
    match xattr::set(image, NOTE_XATTR, device) {
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            fs::write(note_of(image), device)
        }
        set => set,
    }
}

fn note_of(image: &Path) -> PathBuf {
    let mut note = image.as_os_str().to_owned();
    note.push(".loop");
    PathBuf::from(note)
}

/// The loop device noted on `image`, if it is still attached to that very
/// file (device and inode; the kernel reuses free devices).
pub fn noted(image: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::fs::MetadataExt;
    let note = match xattr::get(image, NOTE_XATTR) {
        Ok(Some(note)) => note,
        _ => fs::read(note_of(image)).ok()?,
    };
    let path = PathBuf::from(std::ffi::OsString::from_vec(note));
    let file = fs::metadata(image).ok()?;
    let device = File::open(&path).ok()?;
    let mut info = LoopInfo64::default();
    // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64` into `info`.
    let read = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_GET_STATUS64, &raw mut info) };
    (read == 0 && info.lo_device == file.dev() && info.lo_inode == file.ino()).then_some(path)
}

/// Attaches `image` (read-write) to a free loop device.
pub fn attach(image: &Path) -> io::Result<Attached> {
    let backing = OpenOptions::new().read(true).write(true).open(image)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)?;
    for _ in 0..ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = OpenOptions::new().read(true).write(true).open(&path)?;
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_flags: LO_FLAGS_AUTOCLEAR,
                ..LoopInfo64::default()
            },
            reserved: [0; 8],
        };
        // SAFETY: `config` is a valid `struct loop_config` that outlives the
        // call; the kernel only reads it.
        let configured =
            unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &raw const config) };
        if configured == 0 {
            return Ok(Attached {
                _device: device,
                path,
            });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(err);
        }
    }
    Err(io::Error::other(format!(
        "no free loop device for {} after {ATTEMPTS} tries",
        image.display()
    )))
}

/// The loop device `image` is attached to, if any, found by reading every
/// loop device's backing file (for images without a note: volumes).
pub fn find(image: &Path) -> Option<PathBuf> {
    let image = image.canonicalize().ok()?;
    let devices = fs::read_dir("/sys/block").ok()?;
    devices.flatten().find_map(|dev| {
        let backing = fs::read_to_string(dev.path().join("loop/backing_file")).ok()?;
        (Path::new(backing.trim()) == image).then(|| Path::new("/dev").join(dev.file_name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_kernel_abi() {
        // linux/loop.h: sizeof(struct loop_info64) == 232,
        // sizeof(struct loop_config) == 304.
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
