//! Following sandbox pods through the watch API: the Kubernetes backend's
//! equivalent of the local backend's pidfd exit watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::{mpsc, oneshot};

use crate::manifests;

/// A sandbox pod that stopped running without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodExit {
    pub id: String,
    /// The pod's uid, telling this pod from a later one of the same sandbox.
    pub uid: Option<String>,
    /// `Failed`, `Succeeded`, `Terminating` or `Deleted`.
    pub how: String,
}

/// Watches every sandbox pod in `namespace` and sends each one that ends
/// (its phase turns `Failed`/`Succeeded`, it is being deleted — e.g.
/// evicted from a lost node — or it is gone). Re-lists and
/// watches anew whenever a watch ends or expires; stops when the receiver
/// is dropped.
pub fn exits(client: kube::Client, namespace: &str) -> mpsc::Receiver<PodExit> {
    let (tx, rx) = mpsc::channel(64);
    let api: Api<Pod> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        while !tx.is_closed() {
            if let Err(err) = follow(&api, &tx).await {
                tracing::warn!(error = %err, "watching sandbox pods failed; watching again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    rx
}

async fn follow(api: &Api<Pod>, tx: &mpsc::Sender<PodExit>) -> Result<(), kube::Error> {
    let selector = manifests::managed_selector();
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let version = list.metadata.resource_version.unwrap_or_default();
    for pod in &list.items {
        if let Some(exit) = ended(pod, false) {
            if tx.send(exit).await.is_err() {
                return Ok(());
            }
        }
    }
    let params = WatchParams::default().labels(&selector).timeout(290);
    let mut events = api.watch(&params, &version).await?.boxed();
    while let Some(event) = events.try_next().await? {
        let exit = match event {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => ended(&pod, false),
            WatchEvent::Deleted(pod) => ended(&pod, true),
            WatchEvent::Bookmark(_) => None,
            WatchEvent::Error(err) => {
                tracing::debug!(code = err.code, "sandbox pod watch expired");
                return Ok(());
            }
        };
        if let Some(exit) = exit {
            if tx.send(exit).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn ended(pod: &Pod, deleted: bool) -> Option<PodExit> {
    let id = manifests::sandbox_id(&pod.metadata)?.to_owned();
    let uid = pod.metadata.uid.clone();
    if deleted {
        return Some(PodExit {
            id,
            uid,
            how: "Deleted".into(),
        });
    }
    // Being deleted (evicted from a lost node, or deleted by anyone): the
    // sandbox is gone even while no kubelet confirms it.
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(PodExit {
            id,
            uid,
            how: "Terminating".into(),
        });
    }
    let phase = pod.status.as_ref()?.phase.as_deref()?;
    matches!(phase, "Failed" | "Succeeded").then(|| PodExit {
        id,
        uid,
        how: phase.to_owned(),
    })
}

/// A pod's uid (`None`: any pod of the sandbox) and who waits for its end.
type Waiter = (Option<String>, oneshot::Sender<()>);

/// Who waits for which pod to end: [`crate::KubernetesRuntime`]'s
/// `Runtime::exited`, fed by one [`exits`] watch for every sandbox.
#[derive(Default)]
pub struct ExitBook {
    /// Sandbox id → who waits for which of its pods.
    waiters: HashMap<String, Vec<Waiter>>,
    /// The pods seen ending, per sandbox (a waiter may come after).
    ended: HashMap<String, Option<String>>,
}

fn same_pod(waited: &Option<String>, ended: &Option<String>) -> bool {
    match (waited, ended) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl ExitBook {
    /// A receiver that resolves (or errs, when the book is dropped) once
    /// sandbox `id`'s pod `uid` (any pod when `None`) has ended.
    pub fn wait(&mut self, id: &str, uid: Option<String>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match self.ended.get(id) {
            Some(ended) if same_pod(&uid, ended) => {
                let _ = tx.send(());
            }
            _ => self
                .waiters
                .entry(id.to_owned())
                .or_default()
                .push((uid, tx)),
        }
        rx
    }

    /// A new pod of sandbox `id` is starting: forget its earlier ends.
    pub fn starting(&mut self, id: &str) {
        self.ended.remove(id);
    }

    /// Sandbox `id` stopped on purpose: nobody waits for it any more.
    pub fn forget(&mut self, id: &str) {
        self.ended.remove(id);
        self.waiters.remove(id);
    }

    /// `exit` happened: wakes who waits for it.
    pub fn ended(&mut self, exit: &PodExit) {
        self.ended.insert(exit.id.clone(), exit.uid.clone());
        if let Some(waiters) = self.waiters.remove(&exit.id) {
            let (wake, keep): (Vec<_>, Vec<_>) = waiters
                .into_iter()
                .partition(|(uid, _)| same_pod(uid, &exit.uid));
            for (_, tx) in wake {
                let _ = tx.send(());
            }
            if !keep.is_empty() {
                self.waiters.insert(exit.id.clone(), keep);
            }
        }
    }
}

/// Feeds `book` from a watch of every sandbox pod in `namespace`, until
/// the book is dropped.
pub fn feed(client: kube::Client, namespace: &str, book: &Arc<Mutex<ExitBook>>) {
    let mut exits = exits(client, namespace);
    let book = Arc::downgrade(book);
    tokio::spawn(async move {
        while let Some(exit) = exits.recv().await {
            let Some(book) = book.upgrade() else { return };
            book.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ended(&exit);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(id: &str, uid: &str) -> PodExit {
        PodExit {
            id: id.into(),
            uid: Some(uid.into()),
            how: "Failed".into(),
        }
    }

    #[test]
    fn an_end_wakes_only_the_waiters_of_that_pod() {
        let mut book = ExitBook::default();
        let mut old = book.wait("a", Some("uid-1".into()));
        let mut new = book.wait("a", Some("uid-2".into()));
        let mut other = book.wait("b", None);
        book.ended(&exit("a", "uid-1"));
        assert!(old.try_recv().is_ok());
        assert!(new.try_recv().is_err(), "a later pod of the same sandbox");
        assert!(other.try_recv().is_err());
        book.ended(&exit("a", "uid-2"));
        assert!(new.try_recv().is_ok());
    }

    #[test]
    fn a_waiter_after_the_end_is_woken_at_once_until_a_new_pod_starts() {
        let mut book = ExitBook::default();
        book.ended(&exit("a", "uid-1"));
        assert!(book.wait("a", Some("uid-1".into())).try_recv().is_ok());
        book.starting("a");
        assert!(book.wait("a", Some("uid-1".into())).try_recv().is_err());
    }
}
