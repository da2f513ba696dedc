//! Queue: stable partitioning, due order, ack, reschedule, re-partitioning, capture.

use std::sync::Arc;

use proptest::prelude::*;
use tito_capture::{CaptureError, Db, Mutation};
use tito_engine::memory::MemoryEngine;
use tito_queue::codec::event_key;
use tito_queue::{
    Event, QueueError, QueuedEvent, ack, decode_event, partition_for, publish, pull, pull_in,
    repartition_key, reschedule, stable_hash,
};

async fn db() -> Db {
    Db::open(Arc::new(MemoryEngine::new())).await.unwrap()
}

/// The partition hash is part of the on-disk contract: these constants must never change.
/// (`xxh3_64("")` is the published XXH3 test vector 0x2D06800538D394C2.)
#[test]
fn partition_hash_is_stable() {
    let pinned: [(&str, u64, u32); 5] = [
        ("", 0x2d06800538d394c2, 2),
        ("a", 0xe6c632b61e964e1f, 15),
        ("order-42", 0x79cca5910b9ace3c, 12),
        ("user:1001", 0x783864580ee66e90, 0),
        ("tito", 0xb1517373ed0c0f2a, 10),
    ];
    for (key, hash, p16) in pinned {
        assert_eq!(stable_hash(key.as_bytes()), hash, "hash of {key:?}");
        assert_eq!(
            partition_for(key.as_bytes(), 16).unwrap(),
            p16,
            "partition of {key:?} among 16"
        );
        assert_eq!(partition_for(key.as_bytes(), 1).unwrap(), 0);
    }
    assert!(matches!(
        partition_for(b"a", 0),
        Err(QueueError::ZeroPartitions)
    ));
}

async fn publish_all(db: &Db, partitions: u32, events: Vec<Event>) -> Vec<QueuedEvent> {
    db.transaction(|txn| {
        let events = events.clone();
        async move {
            events
                .into_iter()
                .map(|e| publish(&txn, partitions, e))
                .collect::<Result<Vec<_>, _>>()
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pull_returns_due_events_in_scheduled_order() {
    let db = db().await;
    // One key, so one partition; published out of order.
    let events: Vec<Event> = [(b"e3", 300u64), (b"e1", 100), (b"e4", 400), (b"e2", 100)]
        .iter()
        .map(|(id, at)| Event::new(id.to_vec(), b"order-42".to_vec(), id.to_vec(), 50, *at))
        .collect();
    let queued = publish_all(&db, 16, events).await;
    assert!(queued.iter().all(|q| q.partition == 12));

    let ids = |v: Vec<QueuedEvent>| v.into_iter().map(|q| q.event.id).collect::<Vec<_>>();
    assert_eq!(
        ids(pull(&db, 12, 99, 10).await.unwrap()),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        ids(pull(&db, 12, 100, 10).await.unwrap()),
        vec![b"e1".to_vec(), b"e2".to_vec()]
    );
    assert_eq!(
        ids(pull(&db, 12, 350, 10).await.unwrap()),
        vec![b"e1".to_vec(), b"e2".to_vec(), b"e3".to_vec()]
    );
    assert_eq!(
        ids(pull(&db, 12, u64::MAX, 2).await.unwrap()),
        vec![b"e1".to_vec(), b"e2".to_vec()]
    );
    assert_eq!(pull(&db, 11, u64::MAX, 10).await.unwrap(), vec![]);
    // Pulling removes nothing and the pulled events round-trip every field.
    let all = pull(&db, 12, u64::MAX, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[3].event,
        Event::new(
            b"e4".to_vec(),
            b"order-42".to_vec(),
            b"e4".to_vec(),
            50,
            400
        )
    );
}

#[tokio::test]
async fn ack_and_reschedule() {
    let db = db().await;
    let q = publish_all(
        &db,
        4,
        vec![Event::new(
            b"id".to_vec(),
            b"k".to_vec(),
            b"p".to_vec(),
            1,
            10,
        )],
    )
    .await;
    let q = q[0].clone();

    let moved = db
        .transaction(|txn| {
            let q = q.clone();
            async move { reschedule(&txn, &q, 500).await }
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (moved.event.scheduled_at_ms, moved.event.attempts),
        (500, 1)
    );
    assert_eq!(pull(&db, q.partition, 499, 10).await.unwrap(), vec![]);
    assert_eq!(
        pull(&db, q.partition, 500, 10).await.unwrap(),
        vec![moved.clone()]
    );
    // The old position is gone: rescheduling or acking it again finds nothing.
    let txn = db.begin().await.unwrap();
    assert_eq!(reschedule(&txn, &q, 7).await.unwrap(), None);
    assert!(!ack(&txn, &q).await.unwrap());
    assert!(ack(&txn, &moved).await.unwrap());
    assert!(!ack(&txn, &moved).await.unwrap());
    txn.commit().await.unwrap();
    assert_eq!(pull(&db, q.partition, u64::MAX, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn concurrent_acks_of_one_event_succeed_once() {
    let db = db().await;
    let q = publish_all(
        &db,
        1,
        vec![Event::new(b"id".to_vec(), b"k".to_vec(), vec![], 1, 1)],
    )
    .await[0]
        .clone();
    let a = db.begin().await.unwrap();
    let b = db.begin().await.unwrap();
    assert_eq!(pull_in(&a, 0, 1, 10).await.unwrap(), vec![q.clone()]);
    assert!(ack(&a, &q).await.unwrap());
    assert!(ack(&b, &q).await.unwrap());
    a.commit().await.unwrap();
    let err = b.commit().await.unwrap_err();
    assert!(
        matches!(err, CaptureError::Engine(ref e) if e.is_conflict()),
        "{err}"
    );
}

#[tokio::test]
async fn queue_writes_are_captured_in_the_log() {
    let db = db().await;
    let (q, lsn) = db
        .transaction_lsn(|txn| async move {
            txn.put(b"order/42".to_vec(), b"paid".to_vec())?;
            publish(
                &txn,
                8,
                Event::new(b"ev".to_vec(), b"order-42".to_vec(), b"x".to_vec(), 5, 6),
            )
        })
        .await
        .unwrap();
    let rec = &db.read_log(lsn.unwrap() - 1, 1, usize::MAX).await.unwrap()[0];
    assert_eq!(
        rec.mutations,
        vec![
            Mutation::Put {
                key: b"order/42".to_vec(),
                value: b"paid".to_vec()
            },
            Mutation::Put {
                key: q.engine_key(),
                value: q.engine_value()
            },
        ]
    );
    let txn = db.begin().await.unwrap();
    assert!(ack(&txn, &q).await.unwrap());
    let lsn = txn.commit().await.unwrap().unwrap();
    let rec = &db.read_log(lsn - 1, 1, usize::MAX).await.unwrap()[0];
    assert_eq!(
        rec.mutations,
        vec![Mutation::Delete {
            key: q.engine_key()
        }]
    );
}

#[test]
fn repartitioning_moves_events_to_their_new_partition() {
    let e = Event::new(
        b"id-1".to_vec(),
        b"order-42".to_vec(),
        b"payload".to_vec(),
        3,
        9,
    );
    let old = QueuedEvent {
        partition: partition_for(&e.key, 16).unwrap(),
        event: e.clone(),
    };
    let (k, v) = (old.engine_key(), old.engine_value());
    for n in [1u32, 3, 16, 1000] {
        let new_key = repartition_key(&k, &v, n).unwrap();
        let moved = decode_event(&new_key, &v).unwrap();
        assert_eq!(moved.partition, partition_for(b"order-42", n).unwrap());
        assert_eq!(moved.event, e, "only the partition changes");
    }
    assert_eq!(repartition_key(&k, &v, 16).unwrap(), k);
    assert_eq!(
        repartition_key(&k, &v, 1).unwrap(),
        event_key(0, 9, b"id-1")
    );
    assert!(matches!(
        repartition_key(&k, &v, 0),
        Err(QueueError::ZeroPartitions)
    ));
    assert!(matches!(
        repartition_key(b"not a queue key", &v, 4),
        Err(QueueError::BadKey { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// `pull` returns exactly the due events of a partition, in (due time, id) order.
    #[test]
    fn pull_matches_a_model(events in proptest::collection::vec((0u8..40, 0u8..6, 0u64..50), 1..30), now in 0u64..60) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let db = db().await;
            let events: Vec<Event> = events
                .iter()
                .map(|(id, key, at)| Event::new(vec![*id], vec![*key], vec![*id, *key], 0, *at))
                .collect();
            let queued = publish_all(&db, 3, events).await;
            for p in 0..3 {
                let mut want: Vec<QueuedEvent> =
                    queued.iter().filter(|q| q.partition == p && q.event.scheduled_at_ms <= now).cloned().collect();
                want.sort_by(|a, b| (a.event.scheduled_at_ms, &a.event.id).cmp(&(b.event.scheduled_at_ms, &b.event.id)));
                // Publishing the same (partition, time, id) twice keeps the last one.
                want.dedup_by(|b, a| (a.event.scheduled_at_ms, &a.event.id) == (b.event.scheduled_at_ms, &b.event.id));
                let got = pull(&db, p, now, usize::MAX).await.unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!((g.partition, g.event.scheduled_at_ms, &g.event.id), (w.partition, w.event.scheduled_at_ms, &w.event.id));
                }
            }
        });
    }
}
