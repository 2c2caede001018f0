//! `start` and teardown of a gVisor sandbox (see [`crate::gvisor`]).

use std::fs::{self, File};

use super::error::LocalError;
use super::layout::SandboxPaths;
use super::record::{Init, Record};
use super::start::{mount_root, mount_small_tmpfs};
use super::LocalRuntime;
use crate::gvisor::{self, netns, relay, runsc::Runsc};
use crate::network::{self, NetPlan};
use crate::process::{self, ProcStat};
use crate::spec::{SandboxSpec, Started};
use crate::{agent_socket, oci, rootfs, Isolation};

/// Options of the tmpfs the agent binds its socket in: room for a socket
/// or two, nothing to fill the host with.
const AGENT_DIR_TMPFS: &str = "size=16k,nr_inodes=16,mode=0755";

/// `spec` as the backend runs it: under gVisor without a host user
/// namespace, and with the agent listening in its directory.
pub(super) fn normalized(spec: &SandboxSpec) -> SandboxSpec {
    let mut spec = spec.clone();
    if spec.isolation == Isolation::Gvisor {
        spec.userns_base = None;
        spec.agent_args = gvisor::agent_args(&spec.agent_args);
    }
    spec
}

impl LocalRuntime {
    fn runsc(&self) -> Runsc {
        Runsc::new(&self.dirs.runsc)
    }

    /// Like `launch`, with runsc in place of libcontainer: the root and
    /// mounts as usual, the network namespace first (wired by a holder),
    /// then `runsc create`, the relay, `runsc start`.
    pub(super) fn launch_gvisor(
        &mut self,
        spec: &SandboxSpec,
        plan: &NetPlan,
        paths: &SandboxPaths,
        record: &mut Record,
    ) -> Result<Started, LocalError> {
        let mounted = mount_root(spec, paths, &self.dirs.blanks, None)?;
        let etc = rootfs::write_etc(&paths.etc, &spec.hostname, plan)?;
        let agent_dir = paths.agent_dir();
        mount_small_tmpfs(&agent_dir, AGENT_DIR_TMPFS)?;
        let holder = netns::Holder::new().map_err(LocalError::State)?;
        network::setup(holder.pid(), &spec.id, plan)?;
        let inputs = oci::Inputs {
            sandbox: spec,
            rootfs: &paths.rootfs,
            binds: &mounted.binds,
            agent: &mounted.agent,
            etc: &etc,
            swap_accounting: self.host.swap_accounting,
            ipv6: false,
            oom_score_adj: self.host.agent_oom_score_adj,
            nofile: self.host.nofile,
            agent_seccomp: false,
        };
        let config = gvisor::oci::adapt(oci::build(&inputs)?, &holder.path(), &agent_dir);
        let bundle = self.dirs.bundle(&spec.id);
        fs::create_dir_all(&bundle).map_err(LocalError::State)?;
        config
            .save(bundle.join("config.json"))
            .map_err(oci::OciError::from)?;
        let listener = agent_socket::bind(&spec.agent_socket)?;
        let output = match spec.agent_log {
            true => File::create(&paths.agent_log),
            false => File::options().write(true).open("/dev/null"),
        }
        .map_err(LocalError::State)?;
        let pid = self.runsc().create(&spec.id, &bundle, output)?;
        let init = observed(pid)?;
        record.init = Some(init);
        self.save(record)?;
        // The Sentry joined the namespace; it keeps it alive from here.
        drop(holder);
        let relay = relay::spawn(&listener, &agent_dir).map_err(LocalError::State)?;
        drop(listener);
        record.gvisor = Some(super::record::GvisorRecord {
            relay: Some(observed(relay)?),
        });
        self.save(record)?;
        self.runsc().start(&spec.id, &bundle)?;
        let started = Started {
            pid: init.pid,
            start_time: init.start_time,
            sandbox_ip: plan.sandbox_ip.to_string(),
            host_ip: plan.host_ip.to_string(),
            agent_listening: false,
        };
        record.started = Some(started.clone());
        self.save(record)?;
        Ok(started)
    }

    /// The gVisor part of a teardown: the relay, and runsc's state (which
    /// also kills the gofer).
    pub(super) fn teardown_gvisor(&self, record: &Record) -> Result<(), LocalError> {
        let Some(gvisor) = record.gvisor else {
            return Ok(());
        };
        if let Some(relay) = gvisor.relay {
            if !process::kill_and_wait(relay.pid, relay.start_time, super::stop::KILL_TIMEOUT) {
                return Err(LocalError::InitSurvived);
            }
        }
        Ok(self.runsc().delete(&record.id)?)
    }
}

fn observed(pid: i32) -> Result<Init, LocalError> {
    let stat = ProcStat::read(pid).ok_or(LocalError::InitVanished)?;
    Ok(Init {
        pid,
        start_time: stat.start_time,
    })
}
