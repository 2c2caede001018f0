//! Garbage collection of the layer store (`sandpit_images::gc`): what the
//! store (database) refers to is read here, the layer store removes the
//! rest once its grace period is over. It runs every `--gc-interval-seconds`
//! and on `POST /api/v1/admin/gc` (`sandpit gc`).
//!
//! Each replica has a layer store of its own in its data dir, so every
//! replica collects its own store (against the references of the whole
//! cluster, which are in the shared database): a pass only ever removes
//! what no snapshot, template or sandbox of any replica refers to.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sandpit_images::{GcOptions, GcReport, LayerStore};

use crate::store::Store;

/// When the periodic pass runs and how long garbage waits.
#[derive(Debug, Clone, Copy)]
pub struct GcConfig {
    /// Between two periodic passes (`None`: only `sandpit gc`).
    pub interval: Option<Duration>,
    /// How long an image or layer must have been unreferenced (and
    /// unchanged) before it is removed.
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(600)),
            grace: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("reading the images in use")]
    Store(#[from] crate::store::StoreError),
    #[error("collecting the layer store")]
    Layers(#[from] sandpit_images::StoreError),
    #[error("the collector task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// One pass over `layers` (dry: report only).
pub async fn collect(
    store: &Store,
    layers: &Arc<LayerStore>,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let referenced: HashSet<String> = store.referenced_images().await?;
    let layers = layers.clone();
    let options = GcOptions {
        grace,
        dry_run,
        now: SystemTime::now(),
    };
    let report =
        tokio::task::spawn_blocking(move || layers.collect_garbage(&referenced, options)).await??;
    crate::metrics::global().layer_gc(&report);
    if report.images_removed + report.layers_removed > 0 || !report.errors.is_empty() {
        tracing::info!(
            dry_run,
            images = report.images_removed,
            layers = report.layers_removed,
            bytes = report.bytes_freed,
            errors = ?report.errors,
            "layer store garbage collection"
        );
    }
    Ok(report)
}

/// The periodic pass (spawned by `serve` when an interval is set).
pub async fn periodic(store: Store, layers: Arc<LayerStore>, config: GcConfig) {
    let Some(interval) = config.interval else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = collect(&store, &layers, config.grace, false).await {
            let err = anyhow::Error::from(err);
            tracing::warn!(
                error = format!("{err:#}"),
                "layer store garbage collection failed"
            );
        }
    }
}
