//! `start`: from a spec to a running, networked init.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{mount, MsFlags};

use super::error::LocalError;
use super::layout::SandboxPaths;
use super::record::{GvisorRecord, Init, Record};
use super::{disk, spares};
use super::{validate, LocalRuntime};
use crate::agent_socket;
use crate::idmap::UserNs;
use crate::mount_ns;
use crate::network::{self, NetPlan};
use crate::oci::{self, BindMount};
use crate::overlay::{self, Upper};
use crate::process::{PidFd, ProcStat};
use crate::rootfs::{self, EtcFiles};
use crate::spec::{MountSpec, SandboxSpec, Started};
use crate::Isolation;

impl LocalRuntime {
    /// Starts sandbox `spec.id`. On failure everything done so far is undone.
    pub fn start(&mut self, spec: &SandboxSpec) -> Result<Started, LocalError> {
        let spec = &super::gvisor::normalized(spec);
        validate::sandbox(spec)?;
        let plan = NetPlan::for_slot(spec.net_slot)?;
        self.clear_previous(&spec.id)?;
        self.claim_slot(spec.net_slot, &plan)?;
        let mut record = Record {
            id: spec.id.clone(),
            state_dir: spec.state_dir.clone(),
            agent_socket: spec.agent_socket.clone(),
            host_if: plan.host_if.clone(),
            helper_mounts: planned_mounts(spec),
            init: None,
            started: None,
            gvisor: (spec.isolation == Isolation::Gvisor).then(GvisorRecord::default),
        };
        self.save(&record)?;
        let started = self.launch(spec, &plan, &mut record).inspect_err(|err| {
            tracing::warn!(sandbox = %spec.id, error = %crate::error::chain(err), "start failed; undoing");
            if let Err(undo) = self.teardown(&record) {
                let undo = crate::error::chain(&undo);
                tracing::error!(sandbox = %spec.id, error = %undo, "undoing a failed start failed");
            }
        })?;
        if spec.fs_capacity_bytes > 0 && spec.isolation != Isolation::Gvisor {
            self.spares_wanted = Some(spec.fs_capacity_bytes);
        }
        Ok(started)
    }

    /// Makes the spare state dirs the last start may have used up (see
    /// [`spares`]). The helper calls it when no request is waiting.
    pub fn make_spares(&mut self) {
        let Some(capacity) = self.spares_wanted.take() else {
            return;
        };
        if let Err(error) = spares::refill(&self.dirs.spares, &self.dirs.blanks, capacity) {
            tracing::warn!(%error, "cannot make spare state dirs");
        }
    }

    /// A sandbox that is running may not start again; leftovers of one
    /// that died are removed first.
    fn clear_previous(&mut self, id: &str) -> Result<(), LocalError> {
        match self.load(id)? {
            Some(record) if record.is_alive() => Err(LocalError::AlreadyRunning(id.into())),
            Some(record) => self.teardown(&record),
            None => self.remove_container(id),
        }
    }

    /// The slot's host link must be free. One left by a dead sandbox (its
    /// namespace still being torn down, or held open) is deleted; one of a
    /// live sandbox is an error.
    fn claim_slot(&self, slot: u32, plan: &NetPlan) -> Result<(), LocalError> {
        let Some(owner) = network::link_owner(&plan.host_if) else {
            return Ok(());
        };
        let live = owner.as_deref().and_then(|id| self.load(id).ok().flatten());
        if let Some(record) = live.filter(Record::is_alive) {
            return Err(LocalError::SlotTaken {
                slot,
                owner: record.id,
            });
        }
        Ok(network::delete_link_named(&plan.host_if)?)
    }

    fn launch(
        &mut self,
        spec: &SandboxSpec,
        plan: &NetPlan,
        record: &mut Record,
    ) -> Result<Started, LocalError> {
        if spec.isolation == Isolation::Gvisor {
            let paths = SandboxPaths::new(&spec.state_dir);
            return self.launch_gvisor(spec, plan, &paths, record);
        }
        if spec.userns_base.is_some() && !self.host.userns {
            return Err(LocalError::NoUserNs);
        }
        let userns = spec.userns_base.map(UserNs::new).transpose()?;
        let capacity = spec.fs_capacity_bytes;
        if capacity == 0 || !spares::take(&self.dirs.spares, capacity, &spec.state_dir) {
            fs::create_dir_all(&spec.state_dir).map_err(LocalError::State)?;
        }
        // Everything mounted from here on is in the start's own namespace,
        // gone once the container (with its copies) runs; so are the mount
        // points and the bundle, in the start's scratch tmpfs.
        let detour = mount_ns::Detour::new_namespace()?;
        let scratch = mount_scratch()?;
        let paths = &SandboxPaths::in_scratch(&spec.state_dir, &scratch);
        let mut mounted = mount_root(spec, paths, &self.dirs.blanks, userns.as_ref())?;
        let etc = rootfs::write_etc(&paths.etc, &spec.hostname, plan)?;
        if let Some(ns) = &userns {
            idmap_mounts(spec, paths, ns, &mut mounted)?;
            if mounted
                .binds
                .iter()
                .any(|b| b.source.starts_with(&spec.state_dir))
            {
                let alias = traversable_alias(spec, &scratch)?;
                mounted.binds = realias(&spec.state_dir, &alias, mounted.binds);
            }
        }
        let bundle = scratch.join("bundle");
        self.write_bundle(spec, paths, &mounted, &etc, &bundle)?;
        let listener = agent_socket::bind(&spec.agent_socket)?;
        let mut container = self.create(spec, &bundle, &listener, paths)?;
        drop(listener);
        let init = remember_init(&container, record)?;
        self.save(record)?;
        network::setup(init.pid, &spec.id, plan)?;
        container.start()?;
        drop(detour);
        let started = Started {
            pid: init.pid,
            start_time: init.start_time,
            sandbox_ip: plan.sandbox_ip.to_string(),
            host_ip: plan.host_ip.to_string(),
            agent_listening: true,
        };
        record.started = Some(started.clone());
        self.save(record)?;
        if let Ok(pidfd) = PidFd::open(init.pid) {
            self.children.insert(spec.id.clone(), pidfd);
        }
        Ok(started)
    }

    fn write_bundle(
        &self,
        spec: &SandboxSpec,
        paths: &SandboxPaths,
        mounted: &Mounted,
        etc: &EtcFiles,
        bundle: &Path,
    ) -> Result<(), LocalError> {
        let inputs = oci::Inputs {
            sandbox: spec,
            rootfs: &paths.rootfs,
            binds: &mounted.binds,
            agent: &mounted.agent,
            etc,
            swap_accounting: self.host.swap_accounting,
            ipv6: self.host.ipv6,
            oom_score_adj: self.host.agent_oom_score_adj,
            nofile: self.host.nofile,
            agent_seccomp: true,
        };
        let config = oci::build(&inputs)?;
        fs::create_dir_all(bundle).map_err(LocalError::State)?;
        config
            .save(bundle.join("config.json"))
            .map_err(oci::OciError::from)?;
        Ok(())
    }

    /// Creates the container (its init paused before exec) with the
    /// listener on fd 3 and the agent's output in its log (or `/dev/null`).
    fn create(
        &self,
        spec: &SandboxSpec,
        bundle: &Path,
        listener: &UnixListener,
        paths: &SandboxPaths,
    ) -> Result<Container, LocalError> {
        let log = if spec.agent_log {
            File::create(&paths.agent_log)
        } else {
            File::options().write(true).open("/dev/null")
        }
        .map_err(LocalError::State)?;
        let log_err = log.try_clone().map_err(LocalError::State)?;
        let devnull = File::open("/dev/null").map_err(LocalError::State)?;
        let build = || {
            ContainerBuilder::new(spec.id.clone(), SyscallType::default())
                .with_root_path(&self.dirs.containers)?
                .with_preserved_fds(agent_socket::INHERITED_FDS)
                .with_stdin(devnull)
                .with_stdout(log)
                .with_stderr(log_err)
                .validate_id()?
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        };
        let built = self
            .fds
            .lend(listener.as_fd(), self.filter.as_fd(), build)?;
        self.restore_process_state();
        Ok(built?)
    }

    /// Undoes libcontainer's changes to this process: working directory and
    /// oom score.
    fn restore_process_state(&self) {
        let _ = std::env::set_current_dir("/");
        let _ = fs::write("/proc/self/oom_score_adj", &self.oom_score_adj);
    }
}

/// Options of the tmpfs at `state_dir/etc` that holds the sandbox's
/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (bound read-write):
/// writing to them fills this, not the host disk.
const ETC_TMPFS: &str = "size=1m,nr_inodes=64,mode=0755";
/// An empty directory in that tmpfs: the second layer of the overlays that
/// expose read-only files (an overlay without an upper needs two layers).
const EMPTY_DIR: &str = ".empty";

/// What the helper mounted for the container, as the container binds it.
pub(super) struct Mounted {
    /// The sandbox's extra mounts, in order.
    pub(super) binds: Vec<BindMount>,
    /// Where the agent binary is bound from.
    pub(super) agent: PathBuf,
}

/// Helper-side mounts a gVisor start makes in the helpers' namespace, in
/// order: the disk image, the root, the `etc` tmpfs, one overlay per
/// directory holding a read-only file bind (see [`exposed_dirs`]), one per
/// read-only overlay of two or more layers or volume, the agent's tmpfs.
/// A start in a namespace of its own leaves none (see [`crate::mount_ns`]).
fn planned_mounts(spec: &SandboxSpec) -> Vec<PathBuf> {
    if spec.isolation != Isolation::Gvisor {
        return Vec::new();
    }
    let paths = SandboxPaths::new(&spec.state_dir);
    let overlays = spec.mounts.iter().enumerate().filter_map(|(n, m)| match m {
        MountSpec::ReadOnlyOverlay { layers, .. } if layers.len() > 1 => Some(paths.overlay(n)),
        MountSpec::Volume { .. } => Some(paths.overlay(n)),
        _ => None,
    });
    let exposures = (0..exposed_dirs(spec).len()).map(|i| exposure_point(&paths, i));
    let disk = disk::used(spec, &paths).then(|| paths.disk.clone());
    disk.into_iter()
        .chain([paths.rootfs.clone(), paths.etc.clone()])
        .chain(exposures)
        .chain(overlays)
        .chain([paths.agent_dir()])
        .collect()
}

/// Mounts bound straight from a host path (not through a mount of the
/// helper's own, which is idmapped in place): with a user namespace they
/// are bound through an idmapped clone at [`idmapped_bind_point`].
fn needs_idmapped_bind(mount: &MountSpec) -> bool {
    match mount {
        MountSpec::Bind {
            source, readonly, ..
        } => !(*readonly && source.is_file()),
        MountSpec::ReadOnlyOverlay { layers, .. } => layers.len() == 1,
        MountSpec::Volume { .. } | MountSpec::Fuse { .. } => false,
    }
}

/// Where a start in a namespace of its own mounts its scratch tmpfs (see
/// [`SandboxPaths::in_scratch`]). One directory serves every start: each
/// mounts its own tmpfs there, seen only in its namespace. Anyone may
/// traverse it (the tmpfs is 0711), as a user-namespaced init must look up
/// its root and bind sources by path.
const SCRATCH: &str = "/run/sandpit-start";
/// Options of that tmpfs: mount points, the `/etc` tmpfs's and the bundle.
const SCRATCH_TMPFS: &str = "size=1m,nr_inodes=1024,mode=0711";

/// Mounts the start's scratch tmpfs at [`SCRATCH`]; call in the start's
/// namespace.
fn mount_scratch() -> Result<PathBuf, LocalError> {
    mount_small_tmpfs(Path::new(SCRATCH), SCRATCH_TMPFS)?;
    Ok(PathBuf::from(SCRATCH))
}

/// The sandbox's init (an unprivileged host id) must look up its bind
/// sources by path, but the data dir is 0700: the state dir (with the FUSE
/// mounts in it) is bound, in the start's namespace, at `state` in the
/// traversable scratch tmpfs.
fn traversable_alias(spec: &SandboxSpec, scratch: &Path) -> Result<PathBuf, LocalError> {
    let alias = scratch.join("state");
    fs::create_dir_all(&alias).map_err(LocalError::State)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(
        Some(&spec.state_dir),
        &alias,
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| LocalError::State(e.into()))?;
    Ok(alias)
}

/// `binds` with their sources in the state dir (FUSE mounts) seen through
/// `alias`. Everything else a start mounts is in its scratch already.
fn realias(state_dir: &Path, alias: &Path, binds: Vec<BindMount>) -> Vec<BindMount> {
    let moved = |p: &Path| match p.strip_prefix(state_dir) {
        Ok(rest) => alias.join(rest),
        Err(_) => p.to_path_buf(),
    };
    binds
        .into_iter()
        .map(|b| BindMount {
            source: moved(&b.source),
            ..b
        })
        .collect()
}

fn idmapped_bind_point(paths: &SandboxPaths, n: usize) -> PathBuf {
    paths.mnt.join(format!("idmap-{n}"))
}

/// Gives the mounts the container binds the user namespace's idmapping
/// (see [`crate::idmap`]; the overlays got it through their layers): the
/// `etc` tmpfs and the volumes in place, host paths through an idmapped
/// clone. After this the helper (host root, not in the mapping) can no
/// longer create files through them.
fn idmap_mounts(
    spec: &SandboxSpec,
    paths: &SandboxPaths,
    ns: &UserNs,
    mounted: &mut Mounted,
) -> Result<(), LocalError> {
    ns.remount(&paths.etc)?;
    for (n, (mount, bind)) in spec.mounts.iter().zip(&mut mounted.binds).enumerate() {
        if needs_idmapped_bind(mount) {
            let point = idmapped_bind_point(paths, n);
            ns.bind(&bind.source, &point)?;
            bind.source = point;
        } else if matches!(mount, MountSpec::Volume { .. }) {
            ns.remount(&bind.source)?;
        }
    }
    Ok(())
}

/// Directories holding a file the sandbox gets read-only (the agent, the
/// trust bundle), in order, without repeats. A bind mount shows its source's
/// path within its file system in `/proc/self/mountinfo`, and these live in
/// the data dir, so each directory is bound through a read-only overlay of
/// it (whose root is `/`): the sandbox sees `/<file name>`.
fn exposed_dirs(spec: &SandboxSpec) -> Vec<PathBuf> {
    let read_only_files = spec.mounts.iter().filter_map(|m| match m {
        MountSpec::Bind {
            source,
            readonly: true,
            ..
        } if source.is_file() => Some(source),
        _ => None,
    });
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in std::iter::once(&spec.agent_binary).chain(read_only_files) {
        if let Some(dir) = file.parent().filter(|d| !dirs.iter().any(|x| x == d)) {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}

fn exposure_point(paths: &SandboxPaths, i: usize) -> PathBuf {
    paths.mnt.join(format!("file-{i}"))
}

/// Mounts the read-only overlays of [`exposed_dirs`]; returns each
/// directory with the overlay that shows it.
fn expose_dirs(
    spec: &SandboxSpec,
    paths: &SandboxPaths,
    userns: Option<&UserNs>,
) -> Result<Vec<(PathBuf, PathBuf)>, LocalError> {
    let empty = paths.etc.join(EMPTY_DIR);
    fs::create_dir_all(&empty).map_err(LocalError::State)?;
    let mut exposed = Vec::new();
    for (i, dir) in exposed_dirs(spec).into_iter().enumerate() {
        let point = exposure_point(paths, i);
        fs::create_dir_all(&point).map_err(LocalError::State)?;
        overlay::mount_at(&point, &[dir.clone(), empty.clone()], None, userns)?;
        exposed.push((dir, point));
    }
    Ok(exposed)
}

/// `file` as seen through its directory's overlay in `exposed`.
fn exposed_path(file: &Path, exposed: &[(PathBuf, PathBuf)]) -> PathBuf {
    let found = exposed
        .iter()
        .find(|(dir, _)| Some(dir.as_path()) == file.parent());
    match (found, file.file_name()) {
        (Some((_, point)), Some(name)) => point.join(name),
        _ => file.to_path_buf(),
    }
}

/// Mounts the overlay root, the `etc` tmpfs, the read-only file overlays,
/// the read-only overlays and volumes; returns the extra mounts as binds
/// for the container, and the agent's path.
pub(super) fn mount_root(
    spec: &SandboxSpec,
    paths: &SandboxPaths,
    blanks: &Path,
    userns: Option<&UserNs>,
) -> Result<Mounted, LocalError> {
    let (upper_dir, work_dir) = if disk::used(spec, paths) {
        disk::mount(spec.fs_capacity_bytes, paths, blanks).map_err(LocalError::State)?;
        (paths.disk.join("upper"), paths.disk.join("work"))
    } else {
        (paths.upper.clone(), paths.work.clone())
    };
    for dir in [&upper_dir, &work_dir, &paths.rootfs] {
        fs::create_dir_all(dir).map_err(LocalError::State)?;
    }
    let upper = Upper {
        upper: &upper_dir,
        work: &work_dir,
    };
    overlay::mount_at(&paths.rootfs, &spec.layers, Some(upper), userns)?;
    match userns {
        Some(ns) => ns.as_owner(|| rootfs::prepare(&paths.rootfs, &spec.workdir))?,
        None => rootfs::prepare(&paths.rootfs, &spec.workdir)?,
    }
    mount_small_tmpfs(&paths.etc, ETC_TMPFS)?;
    let exposed = expose_dirs(spec, paths, userns)?;
    let binds = spec
        .mounts
        .iter()
        .enumerate()
        .map(|(n, m)| resolve_mount(n, m, paths, blanks, &exposed, userns));
    Ok(Mounted {
        binds: binds.collect::<Result<_, _>>()?,
        agent: exposed_path(&spec.agent_binary, &exposed),
    })
}

fn resolve_mount(
    n: usize,
    mount: &MountSpec,
    paths: &SandboxPaths,
    blanks: &Path,
    exposed: &[(PathBuf, PathBuf)],
    userns: Option<&UserNs>,
) -> Result<BindMount, LocalError> {
    match mount {
        MountSpec::Bind {
            source,
            destination,
            readonly,
        } => Ok(BindMount {
            source: match readonly {
                true => exposed_path(source, exposed),
                false => source.clone(),
            },
            destination: destination.clone(),
            readonly: *readonly,
        }),
        MountSpec::Fuse {
            source,
            destination,
            readonly,
        } => Ok(BindMount {
            source: source.clone(),
            destination: destination.clone(),
            readonly: *readonly,
        }),
        MountSpec::ReadOnlyOverlay {
            layers,
            destination,
        } if layers.len() == 1 => Ok(BindMount {
            source: layers[0].clone(),
            destination: destination.clone(),
            readonly: true,
        }),
        MountSpec::ReadOnlyOverlay {
            layers,
            destination,
        } => {
            let target = paths.overlay(n);
            fs::create_dir_all(&target).map_err(LocalError::State)?;
            overlay::mount_at(&target, layers, None, userns)?;
            Ok(BindMount {
                source: target,
                destination: destination.clone(),
                readonly: true,
            })
        }
        MountSpec::Volume {
            image,
            size_bytes,
            destination,
        } => {
            let target = paths.overlay(n);
            fs::create_dir_all(&target).map_err(LocalError::State)?;
            disk::attach_volume(image, *size_bytes, blanks, &target).map_err(LocalError::State)?;
            Ok(BindMount {
                source: target,
                destination: destination.clone(),
                readonly: false,
            })
        }
    }
}

/// Mounts a small tmpfs at `dir` (the `etc` files, the start's scratch,
/// gVisor's agent directory) with `options`.
pub(super) fn mount_small_tmpfs(dir: &Path, options: &str) -> Result<(), LocalError> {
    fs::create_dir_all(dir).map_err(LocalError::State)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("sandpit"), dir, Some("tmpfs"), flags, Some(options))
        .map_err(|e| LocalError::State(e.into()))
}

/// Notes the paused init's pid and start time in the record.
fn remember_init(container: &Container, record: &mut Record) -> Result<Init, LocalError> {
    let pid = container.pid().ok_or(LocalError::InitVanished)?.as_raw();
    let stat = ProcStat::read(pid).ok_or(LocalError::InitVanished)?;
    let init = Init {
        pid,
        start_time: stat.start_time,
    };
    record.init = Some(init);
    Ok(init)
}
