//! Following sandbox pods through the watch API: the Kubernetes backend's
//! equivalent of the local backend's pidfd exit watch.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;

use crate::manifests;

/// A sandbox pod that stopped running without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodExit {
    pub id: String,
    /// `Failed`, `Succeeded` or `Deleted`.
    pub how: String,
}

/// Watches every sandbox pod in `namespace` and sends each one that ends
/// (its phase turns `Failed`/`Succeeded`, or it is deleted). Re-lists and
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
    if deleted {
        return Some(PodExit {
            id,
            how: "Deleted".into(),
        });
    }
    let phase = pod.status.as_ref()?.phase.as_deref()?;
    matches!(phase, "Failed" | "Succeeded").then(|| PodExit {
        id,
        how: phase.to_owned(),
    })
}
