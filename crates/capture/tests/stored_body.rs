//! Stored log bodies through real engines (memory and redb): a damaged compressed body is
//! a clear error naming its LSN, and bodies written by builds before the checksum still read.

use std::sync::Arc;

use tito_capture::keys;
use tito_capture::log::{COMPRESSED, COMPRESSED_V1};
use tito_capture::{CaptureError, Db, Mutation};
use tito_engine::memory::MemoryEngine;
use tito_engine::redb::RedbEngine;
use tito_engine::{Engine, transaction};

/// A `0x81` stored body exactly as the build before the checksum wrote it (pinned bytes).
const LEGACY_HEX: &str = "81dd0128b52ffd20ddbd0100340201050109757365722f3030303028613128623228633328640209757365722f3030303107007065000ce0ca0018c095b90a0694a00e";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What the legacy body holds.
fn legacy_mutations() -> Vec<Mutation> {
    (0..4u8)
        .map(|i| Mutation::Put {
            key: format!("user/{i:04}").into_bytes(),
            value: vec![b'a' + i; 40],
        })
        .chain([Mutation::Delete {
            key: b"user/0001".to_vec(),
        }])
        .collect()
}

async fn engines(dir: &tempfile::TempDir) -> Vec<(&'static str, Arc<dyn Engine>)> {
    let redb = RedbEngine::open(dir.path().join("db.redb")).await.unwrap();
    vec![
        ("memory", Arc::new(MemoryEngine::new())),
        ("redb", Arc::new(redb)),
    ]
}

async fn raw_get(engine: &dyn Engine, key: &[u8]) -> Vec<u8> {
    let key = key.to_vec();
    transaction(engine, |tx| {
        let key = key.clone();
        async move { tx.get(&key).await }
    })
    .await
    .unwrap()
    .expect("log record present")
}

async fn raw_put(engine: &dyn Engine, key: &[u8], value: &[u8]) {
    let (key, value) = (key.to_vec(), value.to_vec());
    transaction(engine, |tx| {
        let (key, value) = (key.clone(), value.clone());
        async move { tx.put(key, value) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_body_is_detected_on_every_engine() {
    let dir = tempfile::tempdir().unwrap();
    for (name, engine) in engines(&dir).await {
        let db = Db::open(engine.clone()).await.unwrap();
        let txn = db.begin().await.unwrap();
        for i in 0..8 {
            txn.put(format!("user/{i:04}").into_bytes(), vec![b'x'; 200])
                .unwrap();
        }
        let lsn = txn.commit().await.unwrap().expect("a record");
        let key = keys::log_key(lsn);
        let good = raw_get(engine.as_ref(), &key).await;
        assert_eq!(good[8], COMPRESSED, "{name}: the body is stored compressed");
        let expected = db.read_log(lsn - 1, 1, usize::MAX).await.unwrap();
        assert_eq!(expected[0].mutations.len(), 8, "{name}");
        // Every byte after the marker: the marker itself changes the form (tested in the
        // format crate); the 8-byte time prefix is outside the body.
        for at in 9..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            raw_put(engine.as_ref(), &key, &bad).await;
            let err = db.read_log(lsn - 1, 1, usize::MAX).await.unwrap_err();
            assert!(
                matches!(err, CaptureError::CorruptStoredBody { lsn: l, .. } if l == lsn),
                "{name}, byte {at}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("LSN {lsn}")) && msg.contains("checksum"),
                "{name}, byte {at}: {msg}"
            );
        }
        raw_put(engine.as_ref(), &key, &good).await;
        assert_eq!(
            db.read_log(lsn - 1, 1, usize::MAX).await.unwrap(),
            expected,
            "{name}: restored bytes read again"
        );
    }
}

#[tokio::test]
async fn bodies_written_before_the_checksum_still_read_on_every_engine() {
    let dir = tempfile::tempdir().unwrap();
    for (name, engine) in engines(&dir).await {
        let db = Db::open(engine.clone()).await.unwrap();
        let mut value = 1_700_000_000_000u64.to_be_bytes().to_vec();
        let legacy = unhex(LEGACY_HEX);
        assert_eq!(legacy[0], COMPRESSED_V1);
        value.extend_from_slice(&legacy);
        raw_put(engine.as_ref(), &keys::log_key(5), &value).await;
        let recs = db.read_log(4, 1, usize::MAX).await.unwrap();
        assert_eq!(recs.len(), 1, "{name}");
        assert_eq!(recs[0].lsn, 5, "{name}");
        assert_eq!(recs[0].time_ms, 1_700_000_000_000, "{name}");
        assert_eq!(recs[0].mutations, legacy_mutations(), "{name}");
    }
}

/// Pairs of a bulk load: user keys with JSON-like values, and queue state.
fn load_pairs(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let value = format!(
                "{{\"id\":{i},\"note\":\"row {} of the load\"}}",
                i * 31 % 977
            );
            (format!("user/{i:08}").into_bytes(), value.into_bytes())
        })
        .collect();
    let mut queue = keys::QUEUE_PREFIX.to_vec();
    queue.extend_from_slice(b"p/0/x");
    pairs.push((queue, b"queue state".to_vec()));
    pairs
}

#[tokio::test]
async fn prepared_puts_commit_the_record_txn_puts_would_on_every_engine() {
    let dir = tempfile::tempdir().unwrap();
    // Small (one frame), and over 1 MiB of record (several frames).
    for n in [10, 40_000] {
        for (name, engine) in engines(&dir).await {
            let db = Db::open(engine.clone()).await.unwrap();
            let pairs = load_pairs(n);
            let expected: Vec<Mutation> = pairs
                .iter()
                .map(|(k, v)| Mutation::Put {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            let before = db.read_log(0, usize::MAX, usize::MAX).await.unwrap().len();
            let lsn = tito_capture::PreparedPuts::new(pairs.clone())
                .unwrap()
                .commit(&db)
                .await
                .unwrap()
                .expect("a record");
            let recs = db.read_log(lsn - 1, 1, usize::MAX).await.unwrap();
            assert_eq!(recs.len(), 1, "{name}");
            assert_eq!(recs[0].lsn, lsn, "{name}");
            assert_eq!(recs[0].mutations, expected, "{name} {n}");
            assert_eq!(
                db.read_log(0, usize::MAX, usize::MAX).await.unwrap().len(),
                before + 1,
                "{name}: one record"
            );
            let stored = raw_get(engine.as_ref(), &keys::log_key(lsn)).await;
            assert_eq!(stored[8], COMPRESSED, "{name} {n}: stored compressed");
            let body_len: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
            assert!(stored.len() * 2 < body_len, "{name} {n}: {}", stored.len());
            // The pairs are there, queue state included.
            for (k, v) in [&pairs[0], &pairs[n - 1], &pairs[n]] {
                let got = transaction(engine.as_ref(), |tx| {
                    let k = k.clone();
                    async move { tx.get(&k).await }
                })
                .await
                .unwrap();
                assert_eq!(got.as_ref(), Some(v), "{name}");
            }
            engine.close().await.unwrap();
        }
        std::fs::remove_file(dir.path().join("db.redb")).unwrap();
    }
}

#[tokio::test]
async fn prepared_puts_refuse_reserved_keys_outside_the_queue() {
    let mut meta = keys::RESERVED.to_vec();
    meta.extend_from_slice(b"meta/x");
    let pairs = vec![(b"a".to_vec(), b"1".to_vec()), (meta, b"x".to_vec())];
    let err = tito_capture::PreparedPuts::new(pairs)
        .err()
        .expect("refused");
    assert!(matches!(err, CaptureError::ReservedKey { .. }), "{err}");
    let db = Db::open(Arc::new(MemoryEngine::new())).await.unwrap();
    let none = tito_capture::PreparedPuts::new(Vec::new()).unwrap();
    assert_eq!(none.commit(&db).await.unwrap(), None, "no pairs, no record");
}
