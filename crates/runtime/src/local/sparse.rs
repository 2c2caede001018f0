//! Copying a sparse file without filling its holes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Copies `src` into the empty file `dst`: the data ranges (found with
/// `SEEK_DATA`/`SEEK_HOLE`) are copied in the kernel and the holes stay
/// holes, so a 10 GiB image holding 200 KiB of metadata costs 200 KiB.
pub fn copy(src: &File, dst: &File) -> io::Result<()> {
    let len = i64::try_from(src.metadata()?.len()).map_err(io::Error::other)?;
    dst.set_len(len as u64)?;
    let mut pos = 0;
    while pos < len {
        let data = match lseek(src.as_raw_fd(), pos, Whence::SeekData) {
            Ok(offset) => offset,
            Err(Errno::ENXIO) => break, // only a hole is left
            Err(err) => return Err(err.into()),
        };
        let hole = lseek(src.as_raw_fd(), data, Whence::SeekHole)?;
        copy_range(src, dst, data, hole)?;
        pos = hole;
    }
    Ok(())
}

/// Copies bytes `start..end` of `src` to the same offsets of `dst`.
fn copy_range(src: &File, dst: &File, start: i64, end: i64) -> io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in).map_err(io::Error::other)?;
        // SAFETY: both descriptors are open for the duration of the call
        // and the offsets are valid `loff_t`s it may update.
        let copied = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        let copied = match Errno::result(copied) {
            Ok(copied) => copied,
            // Across file systems (a sandbox's disk image to the host's),
            // copy_file_range is refused: copy through a buffer instead.
            Err(Errno::EXDEV | Errno::EOPNOTSUPP | Errno::ENOSYS) => {
                return copy_range_buffered(src, dst, off_in, end);
            }
            Err(err) => return Err(err.into()),
        };
        if copied == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source file shrank while copying",
            ));
        }
    }
    Ok(())
}

/// `copy_range` through a buffer in this process.
fn copy_range_buffered(src: &File, dst: &File, start: i64, end: i64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, end) = (
        u64::try_from(start).map_err(io::Error::other)?,
        u64::try_from(end).map_err(io::Error::other)?,
    );
    while pos < end {
        let want = usize::try_from(end - pos).map_or(buf.len(), |n| n.min(buf.len()));
        let read = src.read_at(&mut buf[..want], pos)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source file shrank while copying",
            ));
        }
        dst.write_all_at(&buf[..read], pos)?;
        pos += read as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn data_is_copied_and_holes_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = File::create_new(dir.path().join("src")).unwrap();
        src.set_len(64 << 20).unwrap();
        src.seek(SeekFrom::Start(1 << 20)).unwrap();
        src.write_all(b"first").unwrap();
        src.seek(SeekFrom::Start(40 << 20)).unwrap();
        src.write_all(b"second").unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dst = File::create_new(dir.path().join("dst")).unwrap();
        copy(&src, &dst).unwrap();

        let mut copied = Vec::new();
        File::open(dir.path().join("dst"))
            .unwrap()
            .read_to_end(&mut copied)
            .unwrap();
        let mut original = Vec::new();
        File::open(dir.path().join("src"))
            .unwrap()
            .read_to_end(&mut original)
            .unwrap();
        assert!(copied == original);
        let meta = dst.metadata().unwrap();
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    }

    #[test]
    fn the_buffered_fallback_copies_a_range_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dst = File::create_new(dir.path().join("dst")).unwrap();
        dst.set_len(data.len() as u64).unwrap();
        copy_range_buffered(&src, &dst, 5, data.len() as i64).unwrap();
        let copied = std::fs::read(dir.path().join("dst")).unwrap();
        assert_eq!(copied[..5], [0; 5]);
        assert!(copied[5..] == data[5..]);
        assert!(copy_range_buffered(&src, &dst, 0, data.len() as i64 + 1).is_err());
    }
}
