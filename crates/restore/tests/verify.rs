//! `verify`: every object is read back and checked; damage is reported by object name.

mod common;

use common::Fixture;
use tito_format::layout::{self, ObjectName};
use tito_restore::{NoProgress, verify_repository};

async fn fixture_with_history() -> Fixture {
    let fx = Fixture::new().await;
    for i in 0..40u8 {
        fx.put(&[(&[b'k', i], &[i; 50])]).await;
    }
    fx.service.run_backup().await.unwrap();
    for i in 0..20u8 {
        fx.put(&[(&[b'n', i], &[i; 50])]).await;
    }
    fx.service.ship_log().await.unwrap();
    fx.service.snapshot().await.unwrap();
    fx
}

#[tokio::test]
async fn a_healthy_repository_verifies_shallow_and_deep() {
    let fx = fixture_with_history().await;
    let report = verify_repository(&fx.repo().await, false, &NoProgress)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        report.segments_ok >= 2 && report.snapshots_ok == 2,
        "{report:?}"
    );
    let deep = verify_repository(&fx.repo().await, true, &NoProgress)
        .await
        .unwrap();
    assert!(deep.ok(), "{:?}", deep.problems);
    assert_eq!(deep.snapshots_compared, 2);
}

#[tokio::test]
async fn every_damaged_object_is_named() {
    let fx = fixture_with_history().await;
    let keys: Vec<String> = fx
        .repo()
        .await
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut checked = 0;
    let segments: Vec<&String> = keys
        .iter()
        .filter(|k| matches!(layout::parse(k), ObjectName::Segment { .. }))
        .collect();
    let ends = [
        segments.first().map(|k| k.to_string()),
        segments.last().map(|k| k.to_string()),
    ];
    for key in keys {
        if !matches!(
            layout::parse(&key),
            ObjectName::Segment { .. }
                | ObjectName::SnapshotChunk { .. }
                | ObjectName::SnapshotManifest { .. }
        ) {
            continue;
        }
        let original = fx.store.get(&key).await.unwrap();
        // An altered byte, then a truncation, then a deletion.
        let mut flipped = original.to_vec();
        let at = flipped.len() / 3;
        flipped[at] ^= 0x01;
        let mut damages: Vec<Option<Vec<u8>>> =
            vec![Some(flipped), Some(original[..original.len() - 1].to_vec())];
        // A deleted object is found by the manifest (chunks) or as a gap (segments). The
        // log's first and last segments are the exception: without them the log looks
        // pruned or not yet shipped.
        // A deleted manifest makes its snapshot one that never finished: that is the
        // manifest-last rule, not damage.
        let is_manifest = matches!(layout::parse(&key), ObjectName::SnapshotManifest { .. });
        if !ends.contains(&Some(key.clone())) && !is_manifest {
            damages.push(None);
        }
        for damage in damages {
            match damage {
                Some(bytes) => fx.store.put(&key, bytes.into()).await.unwrap(),
                None => fx
                    .store
                    .delete_many(std::slice::from_ref(&key))
                    .await
                    .unwrap(),
            }
            let outcome = verify_repository(&fx.repo().await, false, &NoProgress).await;
            let (first, last) = match layout::parse(&key) {
                ObjectName::Segment { first, last, .. } => (first, last),
                _ => (0, 0),
            };
            let gap = format!("LSNs {first}..={last} are missing");
            let named = match &outcome {
                Ok(report) => report.problems.iter().any(|p| {
                    p.key.contains(&key) || p.problem.contains(&key) || p.problem.contains(&gap)
                }),
                Err(e) => e.to_string().contains(&key),
            };
            assert!(named, "damage to {key} not reported by name: {outcome:?}");
            fx.store.put(&key, original.clone()).await.unwrap();
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} damages tried");
}

/// A manifest whose keyspace digest disagrees with its chunks passes the shallow check
/// (every chunk matches its checksum) and is caught, by name, only by the deep one.
#[tokio::test]
async fn deep_verify_catches_a_manifest_that_disagrees_with_its_chunks() {
    let fx = fixture_with_history().await;
    let repo = fx.repo().await;
    let manifest_key = repo
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .find(|k| matches!(layout::parse(k), ObjectName::SnapshotManifest { .. }))
        .expect("a manifest");
    let mut manifest = repo.manifest(&manifest_key).await.unwrap();
    manifest.keyspace_digest = blake3::hash(b"not this snapshot").to_hex().to_string();
    let forged = manifest.encode(&manifest_key).unwrap();
    fx.store.put(&manifest_key, forged.into()).await.unwrap();

    let shallow = verify_repository(&fx.repo().await, false, &NoProgress)
        .await
        .unwrap();
    assert!(
        shallow.ok(),
        "shallow verify should not decode: {shallow:?}"
    );
    let deep = verify_repository(&fx.repo().await, true, &NoProgress)
        .await
        .unwrap();
    assert!(
        deep.problems
            .iter()
            .any(|p| p.key == manifest_key && p.problem.contains("does not match its manifest")),
        "forged digest not reported: {deep:?}"
    );
    assert_eq!(deep.snapshots_compared, 1, "{deep:?}");
}
