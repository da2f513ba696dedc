//! Change capture: reserved-prefix rules, what commits append, the log reader, meta.

use std::sync::Arc;

use tito_capture::keys::{self, LOG_PREFIX, META_TIMELINE, QUEUE_PREFIX, RESERVED};
use tito_capture::{CaptureError, Db, LogRecord, Mutation, apply_record, meta};
use tito_engine::memory::MemoryEngine;
use tito_engine::{Engine, KeyRange};

async fn db() -> Db {
    Db::open(Arc::new(MemoryEngine::new())).await.unwrap()
}

fn reserved_key(suffix: &[u8]) -> Vec<u8> {
    let mut k = RESERVED.to_vec();
    k.extend_from_slice(suffix);
    k
}

async fn log(db: &Db) -> Vec<LogRecord> {
    db.read_log(0, usize::MAX, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn reserved_keys_are_rejected_with_a_clear_error() {
    let db = db().await;
    let txn = db.begin().await.unwrap();
    for key in [
        RESERVED.to_vec(),
        keys::log_key(1),
        reserved_key(b"q/x"),
        META_TIMELINE.to_vec(),
    ] {
        let err = txn.put(key.clone(), b"v".to_vec()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, CaptureError::ReservedKey { op: "write", .. }),
            "{msg}"
        );
        assert!(
            msg.contains(&keys::display_key(&key)) && msg.contains("reserved prefix"),
            "{msg}"
        );
        assert!(matches!(
            txn.delete(key.clone()),
            Err(CaptureError::ReservedKey { op: "delete", .. })
        ));
        assert!(matches!(
            txn.get(&key).await,
            Err(CaptureError::ReservedKey { op: "read", .. })
        ));
        assert!(matches!(
            txn.batch_get(&[b"a".to_vec(), key]).await,
            Err(CaptureError::ReservedKey { .. })
        ));
    }
    for r in [
        KeyRange::all(),
        KeyRange::from(b"\xff".to_vec()),
        KeyRange::new(b"a".to_vec(), reserved_key(b"a")),
        KeyRange::prefix(LOG_PREFIX),
    ] {
        let err = txn.delete_range(&r).unwrap_err();
        assert!(matches!(err, CaptureError::ReservedRange { .. }), "{err}");
        assert!(
            err.to_string().contains("overlaps the reserved prefix"),
            "{err}"
        );
    }
    // Neighbours of the prefix are ordinary user keys.
    txn.put(b"\xfftito".to_vec(), b"below".to_vec()).unwrap();
    txn.put(b"\xfftito\x01".to_vec(), b"above".to_vec())
        .unwrap();
    txn.delete_range(&KeyRange::new(b"a".to_vec(), RESERVED.to_vec()))
        .unwrap();
    txn.delete_range(&KeyRange::from(b"\xfftito\x01\x00".to_vec()))
        .unwrap();
    // The queue API cannot reach log or meta keys, nor user keys.
    for key in [keys::log_key(1), META_TIMELINE.to_vec(), b"user".to_vec()] {
        assert!(matches!(
            txn.put_queue(key.clone(), vec![]),
            Err(CaptureError::NotQueueKey { .. })
        ));
        assert!(matches!(
            txn.delete_queue(key.clone()),
            Err(CaptureError::NotQueueKey { .. })
        ));
        assert!(matches!(
            txn.get_queue(&key).await,
            Err(CaptureError::NotQueueKey { .. })
        ));
    }
    assert!(
        txn.scan_queue(&KeyRange::prefix(RESERVED), 10)
            .await
            .is_err()
    );
    // Rejected calls recorded nothing: only the two puts and two range deletes.
    assert_eq!(txn.mutation_count(), 4);
    let lsn = txn.commit().await.unwrap();
    assert_eq!(lsn, Some(1));
    assert_eq!(log(&db).await[0].mutations.len(), 4);
}

#[tokio::test]
async fn scans_skip_the_reserved_prefix() {
    let db = db().await;
    let txn = db.begin().await.unwrap();
    txn.put(b"a".to_vec(), b"1".to_vec()).unwrap();
    txn.put(b"\xff\xff".to_vec(), b"2".to_vec()).unwrap();
    txn.put_queue(reserved_key(b"q/1"), b"q".to_vec()).unwrap();
    txn.commit().await.unwrap();
    let txn = db.begin().await.unwrap();
    let all = txn.scan(&KeyRange::all(), 10).await.unwrap();
    assert_eq!(
        all,
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"\xff\xff".to_vec(), b"2".to_vec())
        ]
    );
    let rev = txn.scan_reverse(&KeyRange::all(), 1).await.unwrap();
    assert_eq!(rev, vec![(b"\xff\xff".to_vec(), b"2".to_vec())]);
    assert_eq!(
        txn.scan(&KeyRange::prefix(RESERVED), 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        txn.scan_queue(&KeyRange::prefix(QUEUE_PREFIX), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(txn.commit().await.unwrap(), None);
}

#[tokio::test]
async fn only_writing_commits_append_one_record_each() {
    let db = db().await;
    // Read-only: nothing.
    let txn = db.begin().await.unwrap();
    assert_eq!(txn.get(b"x").await.unwrap(), None);
    assert_eq!(txn.commit().await.unwrap(), None);
    // Rolled back: nothing.
    let txn = db.begin().await.unwrap();
    txn.put(b"x".to_vec(), b"1".to_vec()).unwrap();
    txn.rollback().await.unwrap();
    // Aborted by the closure: nothing.
    let r: Result<(), CaptureError> = db
        .transaction(|txn| async move {
            txn.put(b"x".to_vec(), b"2".to_vec())?;
            Err(CaptureError::BadLogKey {
                key: "abort".into(),
            })
        })
        .await;
    assert!(r.is_err());
    assert!(log(&db).await.is_empty());
    assert_eq!(db.log_bounds().await.unwrap(), None);

    // Writing: one record each, mutations in call order, dense LSNs.
    let (_, lsn) = db
        .transaction_lsn(|txn| async move {
            txn.put(b"b".to_vec(), b"1".to_vec())?;
            txn.delete(b"a".to_vec())?;
            txn.put(b"b".to_vec(), b"2".to_vec())?;
            txn.delete_range(&KeyRange::new(b"c".to_vec(), b"d".to_vec()))?;
            Ok::<_, CaptureError>(())
        })
        .await
        .unwrap();
    assert_eq!(lsn, Some(1));
    let txn = db.begin().await.unwrap();
    let clone = txn.clone();
    clone.put(b"z".to_vec(), vec![]).unwrap();
    assert_eq!(txn.commit().await.unwrap(), Some(2));
    // The clone shares the finished transaction.
    assert!(clone.put(b"y".to_vec(), vec![]).is_err());

    let records = log(&db).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].mutations,
        vec![
            Mutation::Put {
                key: b"b".to_vec(),
                value: b"1".to_vec()
            },
            Mutation::Delete { key: b"a".to_vec() },
            Mutation::Put {
                key: b"b".to_vec(),
                value: b"2".to_vec()
            },
            Mutation::DeleteRange {
                start: b"c".to_vec(),
                end: Some(b"d".to_vec())
            },
        ]
    );
    assert_eq!(records[1].lsn, 2);
    assert!(records[1].time_ms >= records[0].time_ms && records[0].time_ms > 1_600_000_000_000);
}

#[tokio::test]
async fn conflicting_transactions_are_retried_and_logged_once() {
    let db = db().await;
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (db, attempts) = (db.clone(), attempts.clone());
            tokio::spawn(async move {
                db.transaction(|txn| {
                    let attempts = attempts.clone();
                    async move {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let n = txn.get(b"counter").await?.map_or(0, |v| v[0]);
                        tokio::task::yield_now().await;
                        txn.put(b"counter".to_vec(), vec![n + 1])?;
                        Ok::<_, CaptureError>(())
                    }
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let txn = db.begin().await.unwrap();
    assert_eq!(txn.get(b"counter").await.unwrap(), Some(vec![8]));
    let records = log(&db).await;
    assert_eq!(
        records.len(),
        8,
        "one record per committed transaction, none for conflicted attempts"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.mutations,
            vec![Mutation::Put {
                key: b"counter".to_vec(),
                value: vec![i as u8 + 1]
            }]
        );
    }
    let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        attempts > 8,
        "the test must provoke conflicts (attempts: {attempts})"
    );
}

#[tokio::test]
async fn read_log_pages_and_trim() {
    let db = db().await;
    for i in 0..25u8 {
        let txn = db.begin().await.unwrap();
        txn.put(vec![i], vec![i; 100]).unwrap();
        assert_eq!(txn.commit().await.unwrap(), Some(u64::from(i) + 1));
    }
    let page = db.read_log(0, 10, usize::MAX).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let page = db.read_log(20, 10, usize::MAX).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        (21..=25).collect::<Vec<_>>()
    );
    // Each record is ~130 bytes; a 300-byte budget stops after the third.
    assert_eq!(db.read_log(0, 100, 300).await.unwrap().len(), 3);
    // At least one record, however small the budget.
    assert_eq!(db.read_log(5, 100, 1).await.unwrap()[0].lsn, 6);
    assert!(db.read_log(25, 10, usize::MAX).await.unwrap().is_empty());
    assert!(
        db.read_log(u64::MAX, 10, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.read_log(0, 0, usize::MAX).await.unwrap().is_empty());

    assert_eq!(db.trim_log(10).await.unwrap(), 10);
    assert_eq!(db.trim_log(10).await.unwrap(), 0);
    let b = db.log_bounds().await.unwrap().unwrap();
    assert_eq!((b.oldest, b.newest, b.max_count()), (11, 25, 15));
    assert_eq!(db.read_log(0, 1, usize::MAX).await.unwrap()[0].lsn, 11);
    // Trimming does not touch user data, and later LSNs continue densely.
    let txn = db.begin().await.unwrap();
    assert_eq!(txn.get(&[3]).await.unwrap(), Some(vec![3; 100]));
    txn.put(b"next".to_vec(), vec![]).unwrap();
    assert_eq!(txn.commit().await.unwrap(), Some(26));
    assert_eq!(db.trim_log(u64::MAX).await.unwrap(), 16);
    assert_eq!(db.log_bounds().await.unwrap(), None);
}

#[tokio::test]
async fn trim_works_in_batches_larger_than_one_page() {
    let db = db().await;
    for _ in 0..2_100 {
        let txn = db.begin().await.unwrap();
        txn.put(b"k".to_vec(), vec![]).unwrap();
        txn.commit().await.unwrap();
    }
    assert_eq!(db.trim_log(2_050).await.unwrap(), 2_050);
    assert_eq!(db.read_log(0, 1000, usize::MAX).await.unwrap().len(), 50);
}

#[tokio::test]
async fn corrupt_log_entries_are_reported_with_their_key() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let tx = engine.begin().await.unwrap();
    let mut value = 5u64.to_be_bytes().to_vec();
    value.extend_from_slice(&[1, 1, 0x77]);
    tx.put(keys::log_key(3), value).unwrap();
    tx.commit().await.unwrap();
    let err = Db::new(engine)
        .read_log(0, 10, usize::MAX)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CaptureError::CorruptRecord { .. }), "{msg}");
    assert!(
        msg.contains("log/") && msg.contains("unknown mutation tag 0x77"),
        "{msg}"
    );
}

#[tokio::test]
async fn apply_record_replays_in_order_and_refuses_internal_keys() {
    let engine = MemoryEngine::new();
    let rec = LogRecord {
        lsn: 9,
        time_ms: 0,
        mutations: vec![
            Mutation::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            Mutation::DeleteRange {
                start: b"a".to_vec(),
                end: Some(b"b".to_vec()),
            },
            Mutation::Put {
                key: b"a".to_vec(),
                value: b"2".to_vec(),
            },
            Mutation::Put {
                key: reserved_key(b"q/e"),
                value: b"q".to_vec(),
            },
        ],
    };
    let tx = engine.begin().await.unwrap();
    apply_record(tx.as_ref(), &rec).unwrap();
    tx.commit().await.unwrap();
    let tx = engine.begin().await.unwrap();
    assert_eq!(tx.get(b"a").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(
        tx.get(&reserved_key(b"q/e")).await.unwrap(),
        Some(b"q".to_vec())
    );

    for bad in [
        Mutation::Put {
            key: keys::log_key(1),
            value: vec![],
        },
        Mutation::Delete {
            key: META_TIMELINE.to_vec(),
        },
        Mutation::DeleteRange {
            start: b"a".to_vec(),
            end: None,
        },
    ] {
        let rec = LogRecord {
            lsn: 4,
            time_ms: 0,
            mutations: vec![
                Mutation::Put {
                    key: b"ok".to_vec(),
                    value: vec![],
                },
                bad,
            ],
        };
        let tx = engine.begin().await.unwrap();
        let err = apply_record(tx.as_ref(), &rec).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::NotBackedUp {
                    lsn: 4,
                    index: 1,
                    ..
                }
            ),
            "{err}"
        );
        // Refused before anything was buffered.
        assert_eq!(tx.get(b"ok").await.unwrap(), None);
    }
}

#[tokio::test]
async fn database_id_and_timeline() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    assert_eq!(meta::database_id(engine.as_ref()).await.unwrap(), None);
    let db = Db::open(engine.clone()).await.unwrap();
    let id = db.database_id().await.unwrap().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // Opening again keeps the id; another database gets another one.
    Db::open(engine.clone()).await.unwrap();
    assert_eq!(db.database_id().await.unwrap(), Some(id.clone()));
    let other = Db::open(Arc::new(MemoryEngine::new())).await.unwrap();
    assert_ne!(other.database_id().await.unwrap(), Some(id));

    assert_eq!(db.timeline().await.unwrap(), meta::DEFAULT_TIMELINE);
    db.set_timeline(7).await.unwrap();
    assert_eq!(db.timeline().await.unwrap(), 7);
    // Meta writes are not captured in the log.
    assert!(db.log_bounds().await.unwrap().is_none());
    // A corrupt timeline value is named in the error.
    let tx = engine.begin().await.unwrap();
    tx.put(META_TIMELINE.to_vec(), vec![1, 2]).unwrap();
    tx.commit().await.unwrap();
    let msg = db.timeline().await.unwrap_err().to_string();
    assert!(
        msg.contains("meta/timeline") && msg.contains("expected 8 bytes"),
        "{msg}"
    );
}
