//! `/proc/<pid>/mountinfo`: which filesystems are mounted where.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One line of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Mounts of the calling process's mount namespace.
pub fn read_self() -> io::Result<Vec<MountEntry>> {
    read(Path::new("/proc/self/mountinfo"))
}

/// Mounts listed in a mountinfo file.
pub fn read(path: &Path) -> io::Result<Vec<MountEntry>> {
    Ok(parse(&fs::read_to_string(path)?))
}

/// Parses mountinfo text, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: right.next()?.to_owned(),
        source: unescape(right.next()?),
        super_options: right.next().unwrap_or_default().to_owned(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when something is mounted exactly at `path`.
pub fn is_mount_point(mounts: &[MountEntry], path: &Path) -> bool {
    mounts.iter().any(|m| m.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 22 0:36 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[1].super_options, "rw,memory");
        assert_eq!(mounts[2].fs_type, "cgroup2");
        assert!(is_mount_point(&mounts, Path::new("/sys/fs/cgroup/unified")));
    }
}
