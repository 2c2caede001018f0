//! The server's side: [`HelperRuntime`] implements [`Runtime`] by asking a
//! helper process.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{LockResult, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::lines::LineReader;
use super::protocol::{encode, Reply, Request};
use super::turns::Turns;
use crate::error::RuntimeError;
use crate::spec::{RunningSandbox, SandboxSpec, Started};
use crate::Runtime;

/// How long one request may take before the helper is declared wedged.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an exiting helper may take to finish before it is killed.
const HELPER_GRACE: Duration = Duration::from_secs(5);

/// Helpers that may work at once unless [`HelperRuntime::with_helpers`]
/// says otherwise. A start spends most of its time waiting (cgroup v1 task
/// migration waits for an RCU grace period, the kernel tears network
/// namespaces down asynchronously), so more helpers than cores pay off.
pub const DEFAULT_HELPERS: usize = 4;

/// Environment variable overriding [`DEFAULT_HELPERS`] (`sandpit serve`).
pub const HELPERS_ENV: &str = "SANDPIT_RUNTIME_HELPERS";

/// How long a call waits for a free helper before looking again (a safety
/// net: a freed helper wakes waiters at once).
const RECHECK: Duration = Duration::from_millis(100);

/// A [`Runtime`] backed by `runtime-helper` child processes running the
/// local backend. Each helper serves one call at a time; up to
/// [`HelperRuntime::with_helpers`] of them work in parallel, the extra ones
/// started by [`HelperRuntime::launch_all`] or else the first time every
/// running helper is busy. They share one
/// private mount namespace, held (with the firewall) by a process that
/// answers no calls ([`super::hold_mounts`]), so any of them finds every
/// sandbox's mount namespace there. A sandbox is stopped by the helper
/// that started it (its init's parent, which reaps it) while that helper
/// lives. Call it from blocking threads (for example tokio's
/// `spawn_blocking`). If a helper dies, the call in flight fails and the
/// next call on that slot starts a new helper.
#[derive(Debug)]
pub struct HelperRuntime {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    slots: Vec<Slot>,
    /// The process holding the helpers' mount namespace, and its pid.
    anchor: Mutex<Option<HelperProcess>>,
    anchor_pid: AtomicU32,
    /// Held while a helper is being launched: one at a time, so their
    /// set-up probes (which use fixed paths in the state dir) never overlap.
    launching: Mutex<()>,
    /// The calls waiting for a slot, served in turn.
    turns: Turns,
    /// The slot that started each running sandbox.
    owners: Mutex<HashMap<String, usize>>,
    /// The last helper said sandboxes may have a user namespace.
    userns: AtomicBool,
    /// Calls waiting for a helper or in flight.
    pending: AtomicUsize,
    /// [`HelperRuntime::end_all`] has begun: no helper is launched ahead.
    ending: AtomicBool,
    /// The tmpfs of the helpers' running state, mounted here before the
    /// helpers' namespace is copied (see [`crate::local::run_dir`]).
    run_dir: Mutex<Option<crate::local::run_dir::RunDir>>,
}

#[derive(Debug, Default)]
struct Slot {
    process: Mutex<Option<HelperProcess>>,
    /// The helper's pid, 0 while none runs; readable while it is busy.
    pid: AtomicU32,
}

#[derive(Debug)]
struct HelperProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: LineReader<ChildStdout>,
}

/// One slot, held for one call; wakes a waiting call when dropped.
struct Held<'a> {
    index: usize,
    guard: Option<MutexGuard<'a, Option<HelperProcess>>>,
    turns: &'a Turns,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.turns.released();
    }
}

/// [`HELPERS_ENV`] if set to a number of 1 or more, else [`DEFAULT_HELPERS`].
fn helpers_wanted() -> usize {
    std::env::var(HELPERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(DEFAULT_HELPERS)
}

fn relock<T>(result: LockResult<T>) -> T {
    result.unwrap_or_else(PoisonError::into_inner)
}

impl HelperRuntime {
    /// Starts `program runtime-helper --state-dir <state_dir>` and waits
    /// until it is ready. `program` is normally `std::env::current_exe()`.
    pub fn spawn(
        program: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Self, RuntimeError> {
        Self::spawn_with_egress(program, state_dir, None)
    }

    /// [`HelperRuntime::spawn`], with the firewall redirecting sandbox DNS,
    /// HTTP and HTTPS to the egress proxy's `ports`.
    pub fn spawn_with_egress(
        program: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        egress: Option<crate::network::firewall::EgressPorts>,
    ) -> Result<Self, RuntimeError> {
        let state_dir: PathBuf = state_dir.into();
        let run_dir = crate::local::run_dir::RunDir::hold(&state_dir);
        if let Err(error) = crate::local::spares::clear_in(&state_dir) {
            tracing::warn!(%error, "cannot clear the last server's spare state dirs");
        }
        let mut args: Vec<std::ffi::OsString> = vec![
            "runtime-helper".into(),
            "--state-dir".into(),
            state_dir.into_os_string(),
        ];
        if let Some(ports) = egress {
            args.push("--egress-ports".into());
            args.push(ports.to_string().into());
        }
        let runtime = Self {
            program: program.into(),
            args,
            timeout: DEFAULT_TIMEOUT,
            slots: (0..helpers_wanted()).map(|_| Slot::default()).collect(),
            anchor: Mutex::new(None),
            anchor_pid: AtomicU32::new(0),
            launching: Mutex::new(()),
            turns: Turns::default(),
            owners: Mutex::new(HashMap::new()),
            userns: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            ending: AtomicBool::new(false),
            run_dir: Mutex::new(Some(run_dir)),
        };
        let anchor = runtime.launch_process(&["--anchor"])?;
        runtime
            .anchor_pid
            .store(anchor.child.id(), Ordering::Relaxed);
        *relock(runtime.anchor.lock()) = Some(anchor);
        let first = &runtime.slots[0];
        let mut guard = relock(first.process.lock());
        runtime.running_in(first, &mut guard)?;
        drop(guard);
        Ok(runtime)
    }

    /// Overrides [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Lets up to `helpers` (at least 1) helpers work in parallel instead
    /// of [`DEFAULT_HELPERS`].
    pub fn with_helpers(mut self, helpers: usize) -> Self {
        let helpers = helpers.max(1);
        if helpers < self.slots.len() {
            for slot in self.slots.drain(helpers..) {
                if let Some(process) = relock(slot.process.into_inner()) {
                    process.end(HELPER_GRACE);
                }
            }
        }
        while self.slots.len() < helpers {
            self.slots.push(Slot::default());
        }
        self
    }

    /// Launches every helper not running yet, one after another, so the
    /// first burst of calls finds them ready: a launch is a new process and
    /// its set-up probes, tens of milliseconds that the burst's first wave
    /// would otherwise wait for (docs/benchmarks.md, issue 19). A slot a
    /// call holds is skipped (that call launches its own helper). Blocks:
    /// call it from a thread of its own once the server is up.
    pub fn launch_all(&self) {
        for slot in &self.slots {
            let mut guard = match slot.process.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            if self.ending.load(Ordering::SeqCst) {
                return;
            }
            let launched = self.running_in(slot, &mut guard).map(drop);
            drop(guard);
            // A call may have queued for this slot meanwhile.
            self.turns.released();
            if let Err(error) = launched {
                tracing::warn!(%error, "launching a runtime helper ahead of use failed");
                return;
            }
        }
    }

    /// Whether the helper can give sandboxes a user namespace with
    /// idmapped mounts (probed when it started).
    pub fn userns_supported(&self) -> bool {
        self.userns.load(Ordering::Relaxed)
    }

    /// Pid of the process holding the helpers' mount namespace.
    pub fn namespace_pid(&self) -> Option<u32> {
        Some(self.anchor_pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
    }

    /// Pid of a running helper (the first one, if it runs).
    pub fn helper_pid(&self) -> Option<u32> {
        self.slots
            .iter()
            .map(|s| s.pid.load(Ordering::Relaxed))
            .find(|&pid| pid != 0)
    }

    /// Pids of the helpers running now.
    pub fn helper_pids(&self) -> Vec<u32> {
        let pids = self.slots.iter().map(|s| s.pid.load(Ordering::Relaxed));
        pids.filter(|&pid| pid != 0).collect()
    }

    /// The helper of `slot`, whose process `guard` holds: launched (in the
    /// held mount namespace) if none runs there.
    fn running_in<'g>(
        &self,
        slot: &Slot,
        guard: &'g mut Option<HelperProcess>,
    ) -> Result<&'g mut HelperProcess, RuntimeError> {
        match guard {
            Some(process) => Ok(process),
            None => {
                let process = self.launch()?;
                slot.pid.store(process.child.id(), Ordering::Relaxed);
                Ok(guard.insert(process))
            }
        }
    }

    /// Starts a helper in the held mount namespace.
    fn launch(&self) -> Result<HelperProcess, RuntimeError> {
        let pid = self.namespace_pid().ok_or_else(|| {
            RuntimeError::Helper("the helpers' mount namespace is not held".into())
        })?;
        self.launch_process(&["--join-mounts", &pid.to_string()])
    }

    /// Starts the program with `extra` arguments and waits until it is
    /// ready.
    fn launch_process(&self, extra: &[&str]) -> Result<HelperProcess, RuntimeError> {
        let _one_at_a_time = relock(self.launching.lock());
        let mut command = Command::new(&self.program);
        command.args(&self.args).args(extra);
        let failed =
            |what: &str, e: &dyn std::fmt::Display| RuntimeError::Helper(format!("{what}: {e}"));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(&format!("cannot run {:?}", self.program), &e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RuntimeError::Helper("helper pipes missing".into()));
        };
        let mut process = HelperProcess {
            child,
            stdin,
            stdout: LineReader::new(stdout),
        };
        match process.receive(self.timeout) {
            Ok(Reply::Ready { userns, .. }) => {
                self.userns.store(userns, Ordering::Relaxed);
                Ok(process)
            }
            Ok(Reply::Error(err)) => {
                process.end(Duration::from_secs(1));
                Err(err)
            }
            Ok(other) => {
                process.end(Duration::ZERO);
                Err(RuntimeError::Helper(format!(
                    "unexpected first message {other:?}"
                )))
            }
            Err(err) => {
                process.end(Duration::ZERO);
                Err(err)
            }
        }
    }

    /// A free slot, in turn: a running helper if one is idle, else one to
    /// launch, else the first to be released.
    fn any_slot(&self) -> Held<'_> {
        self.turns.take(RECHECK, || self.free_slot())
    }

    /// A slot no call holds: a running helper first.
    fn free_slot(&self) -> Option<Held<'_>> {
        let running = |s: &Slot| s.pid.load(Ordering::Relaxed) != 0;
        let order = (self.slots.iter().enumerate().filter(|(_, s)| running(s)))
            .chain(self.slots.iter().enumerate().filter(|(_, s)| !running(s)));
        for (index, slot) in order {
            let guard = match slot.process.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            return Some(Held {
                index,
                guard: Some(guard),
                turns: &self.turns,
            });
        }
        None
    }

    /// The slot that started sandbox `id` if its helper still runs, else
    /// any.
    fn slot_for(&self, id: &str) -> Held<'_> {
        let owner = relock(self.owners.lock()).get(id).copied();
        match owner.filter(|&i| self.slots[i].pid.load(Ordering::Relaxed) != 0) {
            Some(index) => Held {
                index,
                guard: Some(relock(self.slots[index].process.lock())),
                turns: &self.turns,
            },
            None => self.any_slot(),
        }
    }

    fn call(&self, request: &Request) -> Result<Reply, RuntimeError> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let _pending = Pending(&self.pending);
        let mut held = match request {
            Request::Stop { id } => self.slot_for(id),
            _ => self.any_slot(),
        };
        let index = held.index;
        let reply = self.call_on(&mut held, request);
        match (request, &reply) {
            (Request::Start { spec }, Ok(_)) => {
                relock(self.owners.lock()).insert(spec.id.clone(), index);
            }
            (Request::Stop { id }, _) => {
                relock(self.owners.lock()).remove(id);
            }
            _ => {}
        }
        reply
    }

    fn call_on(&self, held: &mut Held<'_>, request: &Request) -> Result<Reply, RuntimeError> {
        let slot = &self.slots[held.index];
        let Some(guard) = held.guard.as_mut() else {
            return Err(RuntimeError::Helper("helper slot not held".into()));
        };
        let process = self.running_in(slot, guard)?;
        match process.exchange(request, self.timeout) {
            Ok(Reply::Error(err)) => Err(err),
            Ok(reply) => Ok(reply),
            Err(err) => {
                slot.pid.store(0, Ordering::Relaxed);
                if let Some(dead) = guard.take() {
                    dead.end(Duration::ZERO);
                }
                tracing::error!(request = request.name(), error = %err, "runtime helper lost; it will be restarted");
                Err(err)
            }
        }
    }

    /// Ends every helper, then the namespace holder (it applied the
    /// firewall and releases stopped sandboxes' links as it exits).
    fn end_all(&self) {
        self.ending.store(true, Ordering::SeqCst);
        for slot in self.slots.iter().rev() {
            if let Some(process) = relock(slot.process.lock()).take() {
                slot.pid.store(0, Ordering::Relaxed);
                process.end(HELPER_GRACE);
            }
        }
        if let Some(anchor) = relock(self.anchor.lock()).take() {
            self.anchor_pid.store(0, Ordering::Relaxed);
            anchor.end(HELPER_GRACE);
        }
        drop(relock(self.run_dir.lock()).take());
    }
}

/// Counts a call out of [`HelperRuntime::pending`] when it ends.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn unexpected(reply: Reply) -> RuntimeError {
    RuntimeError::Helper(format!("unexpected reply {reply:?}"))
}

impl HelperProcess {
    fn exchange(&mut self, request: &Request, timeout: Duration) -> Result<Reply, RuntimeError> {
        let lost = |e: std::io::Error| {
            RuntimeError::Helper(format!("{} request failed: {e}", request.name()))
        };
        self.stdin.write_all(&encode(request)).map_err(lost)?;
        self.receive(timeout)
    }

    fn receive(&mut self, timeout: Duration) -> Result<Reply, RuntimeError> {
        let line = self
            .stdout
            .read_line(timeout)
            .map_err(|e| RuntimeError::Helper(format!("no reply from the helper: {e}")))?;
        serde_json::from_slice(&line)
            .map_err(|e| RuntimeError::Helper(format!("malformed reply from the helper: {e}")))
    }

    /// Closes the helper's stdin (it exits on EOF), waits up to `grace`, then
    /// kills it.
    fn end(self, grace: Duration) {
        let Self {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for HelperRuntime {
    fn drop(&mut self) {
        self.end_all();
    }
}

impl Runtime for HelperRuntime {
    fn mount_namespace_pid(&self) -> Option<u32> {
        self.namespace_pid()
    }

    fn queue_depth(&self) -> Option<usize> {
        Some(self.pending.load(Ordering::Relaxed))
    }

    /// The server reads the cgroup itself: nothing to ask the helper.
    fn usage(&self, id: &str) -> Result<Option<crate::Usage>, RuntimeError> {
        Ok(crate::usage::read(id))
    }

    /// A sandbox's veth address names its network slot (no helper call:
    /// the proxy asks this on every connection).
    fn egress_source(&self, source: std::net::IpAddr) -> Option<crate::EgressSource> {
        let std::net::IpAddr::V4(v4) = source else {
            return None;
        };
        crate::network::slot_of_sandbox_ip(v4).map(crate::EgressSource::Slot)
    }

    /// The server writes the host firewall's `inet sandpit` table itself
    /// (`nft`), as before the trait had this: nothing to ask the helper.
    fn update_direct_routes(
        &self,
        add: &[crate::network::firewall::DirectRoute],
        remove: &[crate::network::firewall::DirectRoute],
    ) -> Result<(), RuntimeError> {
        crate::network::firewall::update_direct(add, remove).map_err(|e| RuntimeError::Setup {
            stage: "direct egress routes".into(),
            message: crate::error_chain(&e),
        })
    }

    /// The server writes the cgroup itself: freezing forks nothing.
    fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), RuntimeError> {
        crate::cgroup::set_frozen(id, frozen).map_err(|message| RuntimeError::Setup {
            stage: if frozen { "freeze" } else { "thaw" }.into(),
            message,
        })
    }

    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError> {
        match self.call(&Request::Start {
            spec: Box::new(spec.clone()),
        })? {
            Reply::Started(started) => Ok(started),
            other => Err(unexpected(other)),
        }
    }

    fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        match self.call(&Request::Stop { id: id.into() })? {
            Reply::Stopped => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
        match self.call(&Request::Running)? {
            Reply::Running(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// The helpers release stopped sandboxes' links when their stdin closes;
    /// wait for them to finish.
    fn shutdown(&self) {
        self.end_all();
    }

    fn cleanup(&self, keep_ids: &[String]) -> Result<Vec<String>, RuntimeError> {
        match self.call(&Request::Cleanup {
            keep_ids: keep_ids.to_vec(),
        })? {
            Reply::CleanedUp(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }
}
