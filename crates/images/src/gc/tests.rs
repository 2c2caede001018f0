use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::store::ImageRecord;
use crate::ImageConfig;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A store with image `a` (layers 1, 2) and image `b` (layers 2, 3).
fn store() -> (tempfile::TempDir, Arc<LayerStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LayerStore::open(dir.path()).unwrap());
    for (image, layers) in [('a', ['1', '2']), ('b', ['2', '3'])] {
        for layer in layers {
            let path = store.layer_dir(&digest(layer)).unwrap();
            fs::create_dir_all(path.join("etc")).unwrap();
            fs::write(path.join("etc").join(format!("f{layer}")), vec![0u8; 1000]).unwrap();
        }
        store
            .put_image(&ImageRecord {
                reference: format!("reg/{image}:1"),
                digest: digest(image),
                layers: layers.iter().map(|l| digest(*l)).collect(),
                config: ImageConfig::default(),
            })
            .unwrap();
    }
    (dir, store)
}

fn only(image: char) -> HashSet<String> {
    HashSet::from([digest(image)])
}

fn pass(store: &LayerStore, refs: &HashSet<String>, grace: u64, at: u64, dry: bool) -> GcReport {
    store
        .collect_garbage(
            refs,
            GcOptions {
                grace: Duration::from_secs(grace),
                dry_run: dry,
                now: SystemTime::now() + Duration::from_secs(at),
            },
        )
        .unwrap()
}

#[test]
fn shared_layers_stay_and_orphans_go_only_after_the_grace_period() {
    let (_dir, store) = store();
    let first = pass(&store, &only('a'), 60, 0, false);
    assert_eq!((first.images_removed, first.layers_removed), (0, 0));
    assert_eq!((first.images_in_grace, first.layers_in_grace), (1, 1));
    assert_eq!((first.images_in_use, first.layers_in_use), (1, 2));
    // Still inside the grace period: nothing goes.
    let second = pass(&store, &only('a'), 60, 30, false);
    assert_eq!(second.layers_removed + second.images_removed, 0);
    let third = pass(&store, &only('a'), 60, 61, false);
    assert_eq!(third.removed_images, vec![digest('b')]);
    assert_eq!(third.removed_layers, vec![digest('3')]);
    assert_eq!(third.bytes_freed, 1000);
    assert!(store.has_layer(&digest('1')) && store.has_layer(&digest('2')));
    assert!(!store.has_layer(&digest('3')));
    assert!(store.image(&digest('a')).unwrap().is_some());
    assert!(store.image(&digest('b')).unwrap().is_none());
}

#[test]
fn a_grace_of_zero_collects_in_one_pass() {
    let (_dir, store) = store();
    let report = pass(&store, &only('a'), 0, 0, false);
    assert_eq!(report.removed_images, vec![digest('b')]);
    assert_eq!(report.removed_layers, vec![digest('3')]);
    let everything = pass(&store, &HashSet::new(), 0, 0, false);
    assert_eq!(everything.layers_removed, 2);
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        0
    );
}

#[test]
fn an_entry_changed_within_the_grace_period_stays_whatever_its_mark_says() {
    let (_dir, store) = store();
    // Marked unreferenced long ago, but just (re)written: a pull that just
    // finished, its snapshot row not written yet.
    let old = serde_json::json!({ digest('b'): 0, digest('3'): 0 });
    fs::write(store.root().join(MARKS), old.to_string()).unwrap();
    let report = pass(&store, &only('a'), 60, 0, false);
    assert_eq!(report.images_removed + report.layers_removed, 0);
    assert_eq!(report.images_in_grace, 1);
}

#[test]
fn a_kept_image_keeps_its_layers() {
    let (_dir, store) = store();
    // Layer 3 has been orphaned for long, but image b is back in grace
    // (pulled again): b's layers stay.
    let old = serde_json::json!({ digest('3'): 0 });
    fs::write(store.root().join(MARKS), old.to_string()).unwrap();
    let report = pass(&store, &only('a'), 60, 0, false);
    assert_eq!(report.layers_removed, 0);
    assert!(store.has_layer(&digest('3')));
}

#[test]
fn pins_protect_pulls_in_flight() {
    let (_dir, store) = store();
    let image = store.pin(&digest('b'));
    let report = pass(&store, &HashSet::new(), 0, 0, false);
    assert_eq!(report.removed_images, vec![digest('a')]);
    assert_eq!(report.removed_layers, vec![digest('1')]);
    drop(image);
    let layer = store.pin(&digest('3'));
    let report = pass(&store, &HashSet::new(), 0, 0, false);
    assert_eq!(report.removed_layers, vec![digest('2')]);
    assert!(store.has_layer(&digest('3')));
    drop(layer);
    assert_eq!(
        pass(&store, &HashSet::new(), 0, 0, false).removed_layers,
        vec![digest('3')]
    );
}

#[test]
fn a_dry_run_removes_nothing() {
    let (_dir, store) = store();
    let dry = pass(&store, &only('a'), 0, 0, true);
    assert!(dry.dry_run);
    assert_eq!((dry.images_removed, dry.layers_removed), (1, 1));
    assert_eq!(dry.bytes_freed, 1000);
    assert!(store.has_layer(&digest('3')));
    assert!(store.image(&digest('b')).unwrap().is_some());
    let real = pass(&store, &only('a'), 0, 0, false);
    assert_eq!(real.removed_layers, dry.removed_layers);
}

#[test]
fn links_and_strangers_are_never_followed_or_removed() {
    let (dir, store) = store();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep").unwrap();
    // A link inside an orphaned layer, and a link posing as a layer.
    std::os::unix::fs::symlink(&outside, store.layer_dir(&digest('3')).unwrap().join("up"))
        .unwrap();
    let posing = store.layer_dir(&digest('9')).unwrap();
    std::os::unix::fs::symlink(&outside, &posing).unwrap();
    fs::create_dir(store.root().join("layers").join("not-a-digest")).unwrap();
    let report = pass(&store, &only('a'), 0, 0, false);
    assert_eq!(report.removed_layers, vec![digest('3')]);
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep");
    assert!(fs::symlink_metadata(&posing).is_ok());
    assert!(store.root().join("layers").join("not-a-digest").is_dir());
}

#[test]
fn a_referenced_image_whose_record_is_unreadable_keeps_every_layer() {
    let (_dir, store) = store();
    let key = crate::store::digest_key(&digest('a')).unwrap();
    fs::write(
        store.root().join("images").join(format!("{key}.json")),
        b"{not json",
    )
    .unwrap();
    let report = pass(&store, &only('a'), 0, 0, false);
    assert_eq!(report.layers_removed, 0);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        3
    );
}

#[test]
fn verdicts() {
    let grace = Duration::from_secs(10);
    assert_eq!(verdict(100, 100, 110, grace), Verdict::Remove);
    assert_eq!(verdict(100, 105, 110, grace), Verdict::InGrace);
    assert_eq!(verdict(105, 100, 110, grace), Verdict::InGrace);
    assert_eq!(verdict(u64::MAX, 0, 110, grace), Verdict::InGrace);
}
