//! Installing the sandbox's seccomp filter, handed over compiled.
//!
//! The runtime compiles the sandbox profile to a classic BPF program once
//! (libseccomp, in the runtime helper) and passes it on a descriptor
//! (`--seccomp-fd`), instead of libcontainer compiling it in every
//! sandbox's init (~5 ms of CPU per start). The agent installs it first
//! thing, before it reads a request or starts a thread, so nothing the
//! sandbox runs is ever outside it; `no_new_privs` is already set (the OCI
//! spec asks for it). Any failure stops the agent: the sandbox never runs
//! unfiltered.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

/// `SECCOMP_SET_MODE_FILTER`.
const SET_MODE_FILTER: libc::c_long = 1;
/// Size of one `struct sock_filter`.
const INSTRUCTION: usize = std::mem::size_of::<libc::sock_filter>();

/// Reads the program on `fd` (closing it) and installs it on this thread,
/// which must be the process's only one.
pub fn install_from_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: the runtime hands this descriptor over for the agent alone;
    // nothing else in the process owns it, and it is closed here.
    let file = unsafe { File::from_raw_fd(fd) };
    let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; len];
    // At an offset: every sandbox's copy of the descriptor shares one file
    // position.
    file.read_exact_at(&mut bytes, 0)?;
    drop(file);
    install(&bytes)
}

/// Installs the BPF program in `bytes` (`struct sock_filter`s).
pub fn install(bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION) {
        return Err(io::Error::other(format!(
            "a seccomp program of {} bytes is not a whole number of instructions",
            bytes.len()
        )));
    }
    let program: Vec<libc::sock_filter> = bytes
        .chunks_exact(INSTRUCTION)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let len = u16::try_from(program.len()).map_err(io::Error::other)?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the
    // call; the kernel copies the program.
    let installed =
        unsafe { libc::syscall(libc::SYS_seccomp, SET_MODE_FILTER, 0, &raw const fprog) };
    match installed {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_partial_programs() {
        assert!(install(&[]).is_err());
        assert!(install(&[0u8; 12]).is_err());
    }

    /// A program that fails `getppid` with EPERM and allows the rest,
    /// installed in a forked child.
    #[test]
    fn an_installed_program_filters_the_process() {
        const RET: u16 = 0x06; // BPF_RET | BPF_K
        const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
        const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
        let ins = |code: u16, jt: u8, jf: u8, k: u32| {
            let mut b = code.to_ne_bytes().to_vec();
            b.extend([jt, jf]);
            b.extend(k.to_ne_bytes());
            b
        };
        let getppid = libc::SYS_getppid as u32;
        let program = [
            ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
            ins(JEQ_K, 0, 1, getppid),
            ins(RET, 0, 0, 0x0005_0000 | libc::EPERM as u32), // SECCOMP_RET_ERRNO
            ins(RET, 0, 0, 0x7fff_0000),                      // SECCOMP_RET_ALLOW
        ]
        .concat();
        // SAFETY: the child only makes syscalls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: prctl and getppid with scalar arguments; _exit ends
            // the child without the parent's exit handlers.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = match install(&program) {
                    Ok(()) if libc::getppid() == -1 => 0,
                    Ok(()) => 1,
                    Err(_) => 2,
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: getppid allowed, 2: install failed"
        );
    }
}
