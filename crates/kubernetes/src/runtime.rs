//! [`KubernetesRuntime`]: the [`Runtime`] trait over the Kubernetes API.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Resource;
use rand::RngCore;
use sandpit_runtime::{
    EgressSource, Exited, NetworkEndpoint, RunningSandbox, Runtime, RuntimeError, SandboxSpec,
    Started,
};
use serde::de::DeserializeOwned;

use crate::config::{KubernetesConfig, AGENT_TOKEN_KEY};
use crate::error::KubeError;
use crate::manifests::{self, PodRequest};
use crate::plan::SpecPlanner;
use crate::watch::ExitBook;

/// How the server reaches a sandbox's agent over the pod network: the pod
/// IP, the agent's port and the bearer credential it demands.
pub type PodAddress = NetworkEndpoint;

/// What the runtime knows of a running pod.
#[derive(Debug, Clone)]
struct Known {
    address: PodAddress,
    /// The pod's uid: its end is told from a later pod's by it.
    uid: Option<String>,
}

/// Sandboxes as Pods in one namespace.
pub struct KubernetesRuntime {
    client: kube::Client,
    config: KubernetesConfig,
    planner: SpecPlanner,
    /// The runtime the synchronous [`Runtime`] calls block on.
    handle: tokio::runtime::Handle,
    known: Mutex<HashMap<String, Known>>,
    /// Pods ending, from one watch of every sandbox pod (started at the
    /// first [`Runtime::exited`]).
    exits: Arc<Mutex<ExitBook>>,
    watching: Once,
}

impl KubernetesRuntime {
    pub fn new(
        client: kube::Client,
        config: KubernetesConfig,
        planner: SpecPlanner,
        handle: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            config,
            planner,
            handle,
            known: Mutex::new(HashMap::new()),
            exits: Arc::new(Mutex::new(ExitBook::default())),
            watching: Once::new(),
        })
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Creates the sandbox's objects and waits until its agent is ready.
    pub async fn start_pod(&self, req: &PodRequest) -> Result<Started, KubeError> {
        let pod = manifests::pod(&self.config, req).map_err(KubeError::Unsupported)?;
        let token = new_token();
        for volume in &req.volumes {
            let claim = manifests::volume_claim(&self.config, volume);
            create_if_absent(&self.api::<PersistentVolumeClaim>(), &claim).await?;
        }
        let secret = manifests::secret(&self.config, req, &token);
        replace(&self.api::<Secret>(), &secret).await?;
        let policy = manifests::network_policy(&self.config, &req.id);
        replace(&self.api::<NetworkPolicy>(), &policy).await?;
        self.book().starting(&req.id);
        self.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await?;
        let name = manifests::object_name(&req.id);
        let ready = tokio::time::timeout(self.config.start_timeout, self.wait_ready(&name))
            .await
            .map_err(|_| KubeError::Pod {
                pod: name.clone(),
                message: format!("not ready after {} s", self.config.start_timeout.as_secs()),
            })??;
        let started = started_of(&name, &ready)?;
        let ip = started
            .sandbox_ip
            .parse()
            .map_err(|_| KubeError::NoAddress(name))?;
        self.remember(&req.id, ip, token, ready.metadata.uid.clone());
        Ok(started)
    }

    fn remember(&self, id: &str, ip: IpAddr, token: String, uid: Option<String>) -> PodAddress {
        let address = PodAddress {
            ip,
            agent_port: self.config.agent_port,
            token,
        };
        self.known_pods().insert(
            id.to_owned(),
            Known {
                address: address.clone(),
                uid,
            },
        );
        address
    }

    fn known_pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, ExitBook> {
        self.exits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where sandbox `id`'s agent listens and its credential: remembered
    /// from the start, or read back from the pod and its Secret (another
    /// replica started it, or the server restarted).
    pub async fn address(&self, id: &str) -> Result<PodAddress, KubeError> {
        if let Some(known) = self.known_pods().get(id) {
            return Ok(known.address.clone());
        }
        let name = manifests::object_name(id);
        let pod = self.api::<Pod>().get(&name).await?;
        self.read_address(id, &pod).await
    }

    /// Reads the address of sandbox `id`'s running `pod` and its agent's
    /// credential from its Secret, and remembers them.
    async fn read_address(&self, id: &str, pod: &Pod) -> Result<PodAddress, KubeError> {
        let name = manifests::object_name(id);
        let ip = pod_ip(pod)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| KubeError::NoAddress(name.clone()))?;
        let secret = self.api::<Secret>().get(&name).await?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(AGENT_TOKEN_KEY))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| KubeError::Pod {
                pod: name,
                message: "its Secret holds no agent credential".into(),
            })?;
        Ok(self.remember(id, ip, token, pod.metadata.uid.clone()))
    }

    /// The pod once it is ready; an error once it failed or vanished.
    async fn wait_ready(&self, name: &str) -> Result<Pod, KubeError> {
        let api = self.api::<Pod>();
        loop {
            let current = api.get(name).await?;
            if let Some(done) = readiness(name, &current)? {
                return Ok(done);
            }
            let version = current
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(60);
            let mut events = api.watch(&params, &version).await?.boxed();
            while let Some(event) = events.try_next().await? {
                match event {
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                        if let Some(done) = readiness(name, &pod)? {
                            return Ok(done);
                        }
                    }
                    WatchEvent::Deleted(_) => {
                        return Err(KubeError::Pod {
                            pod: name.to_owned(),
                            message: "deleted while starting".into(),
                        })
                    }
                    WatchEvent::Bookmark(_) => {}
                    // 410 Gone and friends: read it again and watch anew.
                    WatchEvent::Error(_) => break,
                }
            }
        }
    }

    /// Deletes the sandbox's pod, Secret and NetworkPolicy (claims stay)
    /// and waits until the pod is gone, so the id can start again. A pod
    /// still there after [`KubernetesConfig::stop_grace`] is on a node that
    /// is lost (no kubelet confirms its end): it is deleted by force, which
    /// removes the object at once (a kubelet that comes back kills what
    /// has no pod object any more).
    pub async fn stop_pod(&self, id: &str) -> Result<(), KubeError> {
        let name = manifests::object_name(id);
        self.known_pods().remove(id);
        self.book().forget(id);
        let grace = DeleteParams::default().grace_period(2);
        delete_if_present(&self.api::<Pod>(), &name, &grace).await?;
        delete_if_present(&self.api::<Secret>(), &name, &DeleteParams::default()).await?;
        delete_if_present(
            &self.api::<NetworkPolicy>(),
            &name,
            &DeleteParams::default(),
        )
        .await?;
        if tokio::time::timeout(self.config.stop_grace, self.pod_gone(&name))
            .await
            .is_ok_and(|gone| gone.is_ok())
        {
            return Ok(());
        }
        tracing::warn!(pod = %name, "pod still terminating (its node lost?): deleting it by force");
        let force = DeleteParams::default().grace_period(0);
        delete_if_present(&self.api::<Pod>(), &name, &force).await?;
        tokio::time::timeout(Duration::from_secs(30), self.pod_gone(&name))
            .await
            .map_err(|_| KubeError::Pod {
                pod: name,
                message: "still there after a forced delete".into(),
            })?
    }

    async fn pod_gone(&self, name: &str) -> Result<(), KubeError> {
        while self.api::<Pod>().get_opt(name).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// Sandboxes whose pod is running.
    pub async fn running_pods(&self) -> Result<Vec<RunningSandbox>, KubeError> {
        let params = ListParams::default().labels(&manifests::managed_selector());
        let pods = self.api::<Pod>().list(&params).await?;
        let mut running = Vec::new();
        for pod in pods.items {
            let Some(id) = manifests::sandbox_id(&pod.metadata).map(str::to_owned) else {
                continue;
            };
            let name = manifests::object_name(&id);
            if pod.metadata.deletion_timestamp.is_none() && phase(&pod) == Some("Running") {
                if let Ok(started) = started_of(&name, &pod) {
                    // A pod another server process started (before a
                    // restart): the server adopts it, so it needs its agent.
                    let known = self.known_pods().contains_key(&id);
                    if !known {
                        if let Err(err) = self.read_address(&id, &pod).await {
                            tracing::warn!(sandbox = %id, error = %err, "a running pod's agent address is unknown");
                            continue;
                        }
                    }
                    running.push(RunningSandbox { id, started });
                }
            }
        }
        Ok(running)
    }

    /// Deletes the objects of every sandbox not in `keep`.
    pub async fn cleanup_pods(&self, keep: &[String]) -> Result<Vec<String>, KubeError> {
        let mut ids = BTreeSet::new();
        ids.extend(self.stale_ids::<Pod>(keep).await?);
        ids.extend(self.stale_ids::<Secret>(keep).await?);
        ids.extend(self.stale_ids::<NetworkPolicy>(keep).await?);
        for id in &ids {
            self.stop_pod(id).await?;
        }
        Ok(ids.into_iter().collect())
    }

    async fn stale_ids<K>(&self, keep: &[String]) -> Result<Vec<String>, KubeError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let params = ListParams::default().labels(&manifests::managed_selector());
        let list = self.api::<K>().list(&params).await?;
        Ok(list
            .items
            .iter()
            .filter_map(|o| manifests::sandbox_id(o.meta()))
            .filter(|id| !keep.iter().any(|k| k == id))
            .map(str::to_owned)
            .collect())
    }

    /// The sandbox whose running pod has IP `ip`: one this runtime started
    /// or adopted, else looked up through the API (a pod another server
    /// replica started: the egress proxy behind the Service serves every
    /// replica's pods). `None` when no running sandbox pod has it, or more
    /// than one claims it (fail closed).
    pub async fn sandbox_at(&self, ip: IpAddr) -> Result<Option<String>, KubeError> {
        let known = self
            .known_pods()
            .iter()
            .find(|(_, k)| k.address.ip == ip)
            .map(|(id, _)| id.clone());
        if known.is_some() {
            return Ok(known);
        }
        let params = ListParams::default()
            .labels(&manifests::managed_selector())
            .fields(&format!("status.podIP={ip}"));
        let pods = self.api::<Pod>().list(&params).await?;
        let ids: BTreeSet<&str> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) == Some("Running"))
            .filter(|p| pod_ip(p).and_then(|a| a.parse::<IpAddr>().ok()) == Some(ip))
            .filter_map(|p| manifests::sandbox_id(&p.metadata))
            .collect();
        match ids.len() {
            1 => Ok(ids.into_iter().next().map(str::to_owned)),
            _ => Ok(None),
        }
    }

    /// Runs `work` on the server's runtime from a synchronous caller (the
    /// server calls the [`Runtime`] trait from `spawn_blocking`).
    fn block<F: std::future::Future>(&self, work: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.handle.block_on(work)),
            Err(_) => self.handle.block_on(work),
        }
    }
}

impl Runtime for KubernetesRuntime {
    fn start(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError> {
        let req = self.planner.plan(spec)?;
        Ok(self.block(self.start_pod(&req))?)
    }

    fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        Ok(self.block(self.stop_pod(id))?)
    }

    fn running(&self) -> Result<Vec<RunningSandbox>, RuntimeError> {
        Ok(self.block(self.running_pods())?)
    }

    fn cleanup(&self, keep_ids: &[String]) -> Result<Vec<String>, RuntimeError> {
        Ok(self.block(self.cleanup_pods(keep_ids))?)
    }

    /// The pod's agent, as remembered when it started or was found running
    /// (no API call: the data plane asks this on every connection).
    fn network_endpoint(&self, id: &str) -> Option<NetworkEndpoint> {
        self.known_pods().get(id).map(|k| k.address.clone())
    }

    /// A pod IP names its sandbox (an API call for pods another replica
    /// started; an error denies, as an unknown address does).
    fn egress_source(&self, source: IpAddr) -> Option<EgressSource> {
        match self.block(self.sandbox_at(source)) {
            Ok(id) => id.map(EgressSource::Sandbox),
            Err(err) => {
                tracing::warn!(%source, error = %err, "cannot tell which sandbox has this pod IP; denying egress");
                None
            }
        }
    }

    fn exited(&self, id: &str) -> Option<Exited> {
        self.watching.call_once(|| {
            let _entered = self.handle.enter();
            crate::watch::feed(self.client.clone(), &self.config.namespace, &self.exits);
        });
        let uid = self.known_pods().get(id).and_then(|k| k.uid.clone());
        let ended = self.book().wait(id, uid);
        Some(Box::pin(async move {
            // An error means the book is gone with the runtime: ended too.
            let _ = ended.await;
        }))
    }
}

/// A client from the pod's service account, else the kubeconfig.
pub async fn connect() -> Result<kube::Client, KubeError> {
    install_crypto_provider();
    Ok(kube::Client::try_default().await?)
}

/// Makes ring the process's rustls provider unless one is set. The
/// workspace links rustls with both ring and aws-lc-rs (oci-client's
/// reqwest asks for the latter), and then rustls cannot pick one for the
/// kube client by itself: it panics. Call before building a `kube::Client`.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// 32 random bytes, URL-safe base64.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `Some(pod)` once ready, `None` while starting, `Err` once it failed.
fn readiness(name: &str, pod: &Pod) -> Result<Option<Pod>, KubeError> {
    match phase(pod) {
        Some("Failed") | Some("Succeeded") => Err(KubeError::Pod {
            pod: name.to_owned(),
            message: format!("ended while starting: {}", why_not_running(pod)),
        }),
        Some("Running") if is_ready(pod) && pod_ip(pod).is_some() => Ok(Some(pod.clone())),
        _ => Ok(None),
    }
}

/// The most telling reason a pod gives for not running.
fn why_not_running(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref())
        .find_map(|s| {
            let t = s
                .terminated
                .as_ref()
                .map(|t| (t.reason.clone().unwrap_or_default(), t.message.clone()));
            t.or_else(|| {
                s.waiting
                    .as_ref()
                    .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone()))
            })
        });
    match (waiting, status.and_then(|s| s.message.clone())) {
        (Some((reason, Some(message))), _) => format!("{reason}: {message}"),
        (Some((reason, None)), _) => reason,
        (None, Some(message)) => message,
        (None, None) => "no reason given".into(),
    }
}

/// What the server records of a running pod: no host pid (0: its agent is
/// PID 1 in the pod's own PID namespace, on another machine), its start
/// time as the identity check, its and its node's IP.
fn started_of(name: &str, pod: &Pod) -> Result<Started, KubeError> {
    let status = pod.status.as_ref();
    let ip = pod_ip(pod).ok_or_else(|| KubeError::NoAddress(name.to_owned()))?;
    let start_time = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.timestamp().max(0) as u64)
        .unwrap_or(0);
    Ok(Started {
        pid: 0,
        start_time,
        sandbox_ip: ip.to_owned(),
        host_ip: status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        agent_listening: false,
    })
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(response) if response.code == code)
}

async fn create_if_absent<K>(api: &Api<K>, object: &K) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(err) if is_status(&err, 409) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Creates `object`, replacing one of the same name a crash left behind.
async fn replace<K>(api: &Api<K>, object: &K) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(err) if is_status(&err, 409) => {
            let name = object.meta().name.clone().unwrap_or_default();
            delete_if_present(api, &name, &DeleteParams::default()).await?;
            api.create(&PostParams::default(), object).await?;
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(err) if is_status(&err, 404) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
