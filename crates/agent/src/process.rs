//! Starting and killing commands.
//!
//! A command runs as `shell -c command` (or, when it is a simple command,
//! as the program the shell would execute: [`crate::simple`]) in a new session (so a new process
//! group whose id is its pid), with its own pipes or a pseudo-terminal as
//! stdio, `oom_score_adj` reset to 0, the requested credentials and working
//! directory, default signal dispositions and an empty signal mask.
//!
//! Starting a process is on the latency path of every command, so the child
//! is created the way `posix_spawn` does it, with `clone(CLONE_VM |
//! CLONE_VFORK)`: no page tables are copied and the parent thread resumes
//! once the child has called `execve`. The child shares the agent's memory
//! until then, so [`ChildArgs::run`] only makes raw system calls on data
//! prepared in the parent: no allocation, no locks, no glibc wrappers that
//! coordinate threads (credentials are set with raw `syscall`s).
//!
//! Exit statuses are collected by the [`Reaper`]; nothing here waits.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use crate::pty::{self, WindowSize};
use crate::reaper::{ExitReceiver, Reaper};
use crate::simple::Direct;
use crate::user::Credentials;

/// Pipe buffer size asked of the kernel for stdout and stderr, so a fast
/// writer is not woken for every 64 KiB.
const PIPE_BYTES: i32 = 1024 * 1024;

/// Stack of the cloned child until it executes the shell.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// Exit status of a child that failed before `execve` succeeded.
const SETUP_FAILED: i32 = 127;

/// A fully resolved command to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Absolute path of the shell.
    pub shell: PathBuf,
    pub command: String,
    /// The complete environment of the command.
    pub env: Vec<(OsString, OsString)>,
    /// The command without the shell, when it needs none.
    pub direct: Option<Direct>,
    pub cwd: PathBuf,
    pub credentials: Option<Credentials>,
    /// `Some` runs the command on a new pseudo-terminal of that size.
    pub terminal: Option<WindowSize>,
}

/// The parent's ends of a child's stdio.
pub enum ChildIo {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
        /// Capacity of the stdout and stderr pipes.
        pipe_bytes: usize,
    },
    Terminal {
        master: OwnedFd,
    },
}

/// A started command.
pub struct Child {
    pub pid: i32,
    pub io: ChildIo,
    pub exit: ExitReceiver,
}

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to create the command's pipes")]
    Pipes(#[source] io::Error),
    #[error("failed to open a pseudo-terminal")]
    Terminal(#[source] io::Error),
    #[error("argument or environment contains a NUL byte")]
    Nul,
    #[error("failed to create a process")]
    Clone(#[source] io::Error),
    #[error("cannot start {shell}: {step} failed")]
    Setup {
        step: Step,
        shell: String,
        #[source]
        source: io::Error,
    },
}

/// The child's setup steps, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Step {
    Stdio = 1,
    Session = 2,
    Terminal = 3,
    Credentials = 4,
    Chdir = 5,
    Exec = 6,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Stdio => "setting up stdio",
            Step::Session => "setsid",
            Step::Terminal => "acquiring the controlling terminal",
            Step::Credentials => "switching user",
            Step::Chdir => "entering the working directory",
            Step::Exec => "execve",
        })
    }
}

impl Step {
    fn from_code(code: i32) -> Self {
        [
            Step::Stdio,
            Step::Session,
            Step::Terminal,
            Step::Credentials,
            Step::Chdir,
        ]
        .into_iter()
        .find(|s| *s as i32 == code)
        .unwrap_or(Step::Exec)
    }
}

/// Starts `spec`, registering its pid with `reaper`.
pub fn spawn(reaper: &Reaper, spec: &SpawnSpec) -> Result<Child, SpawnError> {
    let (stdio, io) = match spec.terminal {
        None => pipes()?,
        Some(size) => terminal(size)?,
    };
    let args = ChildArgs::new(spec, &stdio)?;
    let (pid, exit) = reaper
        .spawn(|| args.clone_child().map(|pid| (pid, pid)))
        .map_err(SpawnError::Clone)?;
    // The child's ends close here; it has its own copies (or has failed).
    drop(stdio);
    if let Some((step, source)) = args.failure() {
        let shell = spec.shell.display().to_string();
        return Err(SpawnError::Setup {
            step,
            shell,
            source,
        });
    }
    Ok(Child { pid, io, exit })
}

/// Sends SIGKILL to the process group led by `pid`.
pub fn kill_group(pid: i32) {
    if let Err(error) = killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        tracing::debug!(pid, %error, "killpg");
    }
}

/// The child's stdin, stdout and stderr.
type ChildStdio = [OwnedFd; 3];

fn pipes() -> Result<(ChildStdio, ChildIo), SpawnError> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipes(e.into()));
    let (stdin_read, stdin_write) = pipe()?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let pipe_bytes = grow_pipe(&stdout_read).min(grow_pipe(&stderr_read));
    let io = ChildIo::Pipes {
        stdin: stdin_write,
        stdout: stdout_read,
        stderr: stderr_read,
        pipe_bytes,
    };
    Ok(([stdin_read, stdout_write, stderr_write], io))
}

/// Enlarges a pipe's buffer if allowed and returns its capacity.
fn grow_pipe(fd: &OwnedFd) -> usize {
    let raw = fd.as_raw_fd();
    let _ = fcntl(raw, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    fcntl(raw, FcntlArg::F_GETPIPE_SZ).map_or(64 * 1024, |n| n as usize)
}

fn terminal(size: WindowSize) -> Result<(ChildStdio, ChildIo), SpawnError> {
    let pty = pty::open(size).map_err(SpawnError::Terminal)?;
    let clone = || pty.slave.try_clone().map_err(SpawnError::Terminal);
    let stdio = [clone()?, clone()?, clone()?];
    Ok((stdio, ChildIo::Terminal { master: pty.master }))
}

fn cstring(bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul)
}

/// A program, its arguments and environment, ready for `execve`.
struct Program {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Owns the strings `argv` and `envp` point into.
    _strings: Vec<CString>,
}

impl Program {
    fn new<'a>(
        path: &OsStr,
        args: impl IntoIterator<Item = &'a [u8]>,
        env: &[(OsString, OsString)],
    ) -> Result<Self, SpawnError> {
        let mut strings = args
            .into_iter()
            .map(cstring)
            .collect::<Result<Vec<_>, _>>()?;
        let argc = strings.len();
        for (key, value) in env {
            strings.push(env_entry(key, value)?);
        }
        let pointers = |range: &[CString]| {
            let mut ptrs: Vec<_> = range.iter().map(|s| s.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            ptrs
        };
        Ok(Self {
            path: cstring(path.as_bytes())?,
            argv: pointers(&strings[..argc]),
            envp: pointers(&strings[argc..]),
            _strings: strings,
        })
    }

    /// Executes the program; returns only if that failed.
    ///
    /// # Safety
    ///
    /// As [`ChildArgs::run`]: a raw system call on data owned by `self`.
    unsafe fn execute(&self) {
        // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
    }
}

/// Everything the child needs, prepared in the parent.
struct ChildArgs {
    /// `shell -c command`.
    shell: Program,
    /// The command without the shell, tried first ([`crate::simple`]).
    direct: Option<Program>,
    cwd: CString,
    stdio: [RawFd; 3],
    terminal: bool,
    credentials: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Set by the child if it fails: the [`Step`] and the errno.
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

impl ChildArgs {
    fn new(spec: &SpawnSpec, stdio: &ChildStdio) -> Result<Self, SpawnError> {
        let shell = spec.shell.as_os_str();
        let shell_args = [shell.as_bytes(), b"-c", spec.command.as_bytes()];
        let direct = spec.direct.as_ref().map(|d| {
            let args = d.args.iter().map(|a| a.as_bytes());
            Program::new(d.program.as_os_str(), args, &d.env)
        });
        Ok(Self {
            shell: Program::new(shell, shell_args, &spec.env)?,
            direct: direct.transpose()?,
            cwd: cstring(spec.cwd.as_os_str().as_bytes())?,
            stdio: stdio.each_ref().map(|fd| fd.as_raw_fd()),
            terminal: spec.terminal.is_some(),
            credentials: spec
                .credentials
                .as_ref()
                .map(|c| (c.uid, c.gid, c.groups.clone())),
            failed_step: AtomicI32::new(0),
            failed_errno: AtomicI32::new(0),
        })
    }

    /// Creates the child; returns once it has executed the shell or failed.
    fn clone_child(&self) -> io::Result<i32> {
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        // The stack grows down: hand over its 16-byte aligned top.
        let top = stack.as_mut_ptr_range().end as usize & !15;
        let old_mask = block_all_signals();
        // SAFETY: `child_main` gets a pointer to `self`, which outlives the
        // child's use of it because CLONE_VFORK suspends this thread until the
        // child has called execve or exited; `stack` lives until then too.
        let pid = unsafe {
            libc::clone(
                child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const Self as *mut libc::c_void,
            )
        };
        let error = io::Error::last_os_error();
        restore_signals(&old_mask);
        drop(stack);
        if pid < 0 {
            return Err(error);
        }
        Ok(pid)
    }

    /// What failed in the child, if anything.
    fn failure(&self) -> Option<(Step, io::Error)> {
        let step = self.failed_step.load(Ordering::SeqCst);
        (step != 0).then(|| {
            let errno = self.failed_errno.load(Ordering::SeqCst);
            (Step::from_code(step), io::Error::from_raw_os_error(errno))
        })
    }

    /// The child's work between `clone` and `execve`: raw system calls only.
    ///
    /// # Safety
    ///
    /// Must run in a child created with `CLONE_VM | CLONE_VFORK` whose parent
    /// blocked all signals, with `self` kept alive by the suspended parent.
    unsafe fn run(&self) -> Result<(), (Step, i32)> {
        // SAFETY: each call below is a system call on integers or on
        // NUL-terminated strings and pointer arrays owned by `self`.
        unsafe {
            reset_signal_handlers();
            self.dup_stdio().map_err(|e| (Step::Stdio, e))?;
            check(libc::setsid() as libc::c_long).map_err(|e| (Step::Session, e))?;
            if self.terminal {
                check(libc::ioctl(0, libc::TIOCSCTTY, 0) as libc::c_long)
                    .map_err(|e| (Step::Terminal, e))?;
            }
            reset_oom_score();
            if let Some((uid, gid, groups)) = &self.credentials {
                set_credentials(*uid, *gid, groups).map_err(|e| (Step::Credentials, e))?;
            }
            check(libc::chdir(self.cwd.as_ptr()) as libc::c_long).map_err(|e| (Step::Chdir, e))?;
            unblock_all_signals();
            if let Some(direct) = &self.direct {
                direct.execute();
            }
            self.shell.execute();
            Err((Step::Exec, errno()))
        }
    }

    /// Moves the stdio descriptors to 0, 1 and 2 (clearing close-on-exec),
    /// first lifting any that sit below 3 out of the way.
    unsafe fn dup_stdio(&self) -> Result<(), i32> {
        let mut fds = self.stdio;
        for fd in &mut fds {
            if *fd < 3 {
                // SAFETY: F_DUPFD on a descriptor we own.
                *fd = check(unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) } as libc::c_long)?
                    as RawFd;
            }
        }
        for (target, fd) in fds.into_iter().enumerate() {
            // SAFETY: dup2 between descriptors; the targets are 0, 1, 2.
            check(unsafe { libc::dup2(fd, target as RawFd) } as libc::c_long)?;
        }
        Ok(())
    }
}

/// `clone` entry point of the child.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent passed to clone.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: we are that CLONE_VM | CLONE_VFORK child.
    if let Err((step, errno)) = unsafe { args.run() } {
        args.failed_errno.store(errno, Ordering::SeqCst);
        args.failed_step.store(step as i32, Ordering::SeqCst);
    }
    // SAFETY: _exit ends the child without running anything of the parent's.
    unsafe { libc::_exit(SETUP_FAILED) }
}

fn env_entry(key: &OsStr, value: &OsStr) -> Result<CString, SpawnError> {
    let mut entry = Vec::with_capacity(key.len() + value.len() + 1);
    entry.extend_from_slice(key.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    cstring(&entry)
}

/// Blocks every signal on this thread, so none is handled in the child
/// before its handlers are reset. Returns the previous mask.
fn block_all_signals() -> SigSet {
    let mut old = SigSet::empty();
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

fn restore_signals(old: &SigSet) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(old), None);
}

/// Resets every caught signal (and SIGPIPE, which Rust ignores) to its
/// default action. Ignored signals other than SIGPIPE stay ignored.
unsafe fn reset_signal_handlers() {
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction reads and writes `sigaction` structs on our stack;
        // glibc's wrapper is a plain system call.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let ignored = old.sa_sigaction == libc::SIG_IGN;
            if old.sa_sigaction == libc::SIG_DFL || (ignored && signal != libc::SIGPIPE) {
                continue;
            }
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    }
}

unsafe fn unblock_all_signals() {
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask reads one 8-byte kernel sigset from our stack.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8,
        );
    }
}

/// Raw credential system calls: glibc's wrappers would try to synchronise
/// the parent's threads.
unsafe fn set_credentials(
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: &[libc::gid_t],
) -> Result<(), i32> {
    // SAFETY: plain system calls; `groups` is a live slice of the given length.
    unsafe {
        check(libc::syscall(
            libc::SYS_setgroups,
            groups.len(),
            groups.as_ptr(),
        ))?;
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
        check(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
    }
    Ok(())
}

/// The runtime may give the agent a low OOM score; commands get the default.
unsafe fn reset_oom_score() {
    let path = c"/proc/self/oom_score_adj";
    // SAFETY: `path` is a static NUL-terminated string; the write reads one
    // byte of a static buffer; the fd is ours to close.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `Err(errno)` for a negative system call result.
fn check(rc: libc::c_long) -> Result<libc::c_long, i32> {
    if rc < 0 {
        return Err(errno());
    }
    Ok(rc)
}
