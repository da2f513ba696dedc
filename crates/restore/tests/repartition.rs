//! Re-partitioning queue events on restore never overwrites one event with another and
//! never deletes one it just moved, even when events of different partitions share a due
//! time and id; a true clash (two such events that must share a partition) is refused.

mod common;

use std::sync::Arc;

use common::Fixture;
use tito_catalog::Target;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_queue::{Event, partition_for};
use tito_restore::{NoProgress, RestoreError, RestoreOptions, restore};

/// A key whose partition is `from` among 2 and `to` among 3.
fn key_moving(from: u32, to: u32) -> Vec<u8> {
    (0..10_000u32)
        .map(|i| format!("order-{i}").into_bytes())
        .find(|k| partition_for(k, 2).unwrap() == from && partition_for(k, 3).unwrap() == to)
        .expect("some key hashes there")
}

async fn publish(fx: &Fixture, key: &[u8]) {
    let key = key.to_vec();
    fx.db
        .transaction(|txn| {
            let key = key.clone();
            async move {
                // Same id and due time for every event: identity clashes across partitions.
                let event = Event::new(b"same-id".to_vec(), key, b"payload".to_vec(), 5, 5);
                tito_queue::publish(&txn, 2, event).map_err(|e| {
                    tito_capture::CaptureError::from(tito_engine::EngineError::Invalid(
                        e.to_string(),
                    ))
                })?;
                Ok::<_, tito_capture::CaptureError>(())
            }
        })
        .await
        .unwrap();
}

async fn restore_with(
    fx: &Fixture,
    partitions: u32,
) -> (Result<u64, RestoreError>, Arc<dyn Engine>) {
    fx.service.run_backup().await.unwrap();
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let mut opts = RestoreOptions::new(Target::Latest);
    opts.partitions = Some(partitions);
    let r = restore(&fx.repo().await, engine.clone(), &opts, &NoProgress)
        .await
        .map(|r| r.events_pending);
    (r, engine)
}

#[tokio::test]
async fn a_move_into_the_old_key_of_a_moving_event_keeps_both() {
    let fx = Fixture::new().await;
    // A moves from partition 0 to 1, into the old key of B, which moves from 1 to 2.
    publish(&fx, &key_moving(0, 1)).await;
    publish(&fx, &key_moving(1, 2)).await;
    let (pending, _) = restore_with(&fx, 3).await;
    assert_eq!(
        pending.expect("restore"),
        2,
        "both events survive re-partitioning"
    );
}

#[tokio::test]
async fn two_events_that_must_share_a_key_are_refused() {
    let fx = Fixture::new().await;
    // Both land in partition 1 of 3 with the same due time and id: one would be lost.
    publish(&fx, &key_moving(0, 1)).await;
    publish(&fx, &key_moving(1, 1)).await;
    match restore_with(&fx, 3).await.0 {
        Err(RestoreError::Refused { reason }) => {
            assert!(reason.contains("unique across partitions"), "{reason}")
        }
        other => panic!("a clash must be refused, not an overwrite: {other:?}"),
    }
}
