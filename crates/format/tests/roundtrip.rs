//! Round trips of segments and chunks against in-memory oracles, plus writer/reader rules.

use proptest::prelude::*;
use tito_format::{
    ChunkReader, ChunkWriter, FormatError, KeyspaceDigest, RawRecord, SegmentReader, SegmentWriter,
};

fn write_segment(
    tl: u64,
    recs: &[RawRecord],
    target: usize,
) -> (Vec<u8>, tito_format::SegmentSummary) {
    let mut w = SegmentWriter::new(Vec::new(), tl).with_frame_target(target);
    for r in recs {
        w.push(r).expect("push");
    }
    let (s, bytes) = w.finish_into_inner().expect("finish");
    (bytes, s)
}

fn records(first: u64, t0: u64, bodies: Vec<(u64, Vec<u8>)>) -> Vec<RawRecord> {
    let mut t = t0;
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (dt, body))| {
            t += dt;
            RawRecord {
                lsn: first + i as u64,
                time_ms: t,
                body,
            }
        })
        .collect()
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(0u8..4, 0..2000),
        1 => Just(Vec::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segment_round_trips(
        tl in 0u64..10,
        first in prop_oneof![Just(0u64), 1u64..1_000_000, Just(u64::MAX - 300)],
        t0 in 0u64..2_000_000_000_000,
        bodies in proptest::collection::vec((0u64..3, body()), 0..200),
        target in prop_oneof![1usize..64, 64usize..4096, Just(1 << 20)],
    ) {
        let recs = records(first, t0, bodies);
        let (bytes, s) = write_segment(tl, &recs, target);
        prop_assert_eq!(s.count, recs.len() as u64);
        prop_assert_eq!(s.bytes, bytes.len() as u64);
        prop_assert_eq!(&s.checksum, &blake3::hash(&bytes).to_hex().to_string());
        if let (Some(a), Some(b)) = (recs.first(), recs.last()) {
            prop_assert_eq!((s.first, s.last, s.t0, s.t1), (a.lsn, b.lsn, a.time_ms, b.time_ms));
        } else {
            prop_assert_eq!((s.first, s.last, s.t0, s.t1), (0, 0, 0, 0));
            prop_assert_eq!(s.object_key(), None);
        }
        let mut reader = SegmentReader::new(bytes.as_slice(), "seg").expect("open");
        prop_assert_eq!(reader.timeline(), tl);
        let back: Vec<RawRecord> = (&mut reader).collect::<Result<_, _>>().expect("read");
        prop_assert_eq!(&back, &recs);
        prop_assert_eq!(reader.summary(), Some(&s));
    }

    #[test]
    fn chunk_round_trips(
        pairs in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..24),
            prop_oneof![3 => proptest::collection::vec(any::<u8>(), 0..100), 1 => proptest::collection::vec(0u8..2, 0..3000)],
            0..200),
        target in prop_oneof![1usize..64, 64usize..4096, Just(1 << 20)],
    ) {
        let mut w = ChunkWriter::new(Vec::new()).with_frame_target(target);
        let mut oracle = KeyspaceDigest::new();
        for (k, v) in &pairs {
            w.push(k, v).expect("push");
            oracle.update(k, v);
        }
        let (s, digest, bytes) = w.finish_into_parts().expect("finish");
        prop_assert_eq!(digest.finish(), oracle.finish());
        prop_assert_eq!(s.count, pairs.len() as u64);
        prop_assert_eq!(s.bytes, bytes.len() as u64);
        prop_assert_eq!(&s.checksum, &blake3::hash(&bytes).to_hex().to_string());
        prop_assert_eq!(s.raw_bytes, pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>());
        prop_assert_eq!(&s.first_key, &pairs.keys().next().cloned().unwrap_or_default());
        prop_assert_eq!(&s.last_key, &pairs.keys().last().cloned().unwrap_or_default());
        let mut reader = ChunkReader::new(bytes.as_slice(), "chunk").expect("open");
        let back: Vec<(Vec<u8>, Vec<u8>)> = (&mut reader).collect::<Result<_, _>>().expect("read");
        prop_assert_eq!(back, pairs.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(reader.summary(), Some(&s));
    }

    /// The keyspace digest does not depend on how pairs are split into chunks.
    #[test]
    fn digest_is_independent_of_chunking(
        pairs in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..8), proptest::collection::vec(any::<u8>(), 0..8), 0..50),
        cut in 0usize..50,
    ) {
        let pairs: Vec<_> = pairs.into_iter().collect();
        let cut = cut.min(pairs.len());
        let mut one = KeyspaceDigest::new();
        for (k, v) in &pairs { one.update(k, v); }
        let mut w = ChunkWriter::new(Vec::new());
        for (k, v) in &pairs[..cut] { w.push(k, v).expect("push"); }
        let (_, d, a) = w.finish_into_parts().expect("finish");
        let mut w = ChunkWriter::continuing(Vec::new(), d);
        for (k, v) in &pairs[cut..] { w.push(k, v).expect("push"); }
        let (_, d, b) = w.finish_into_parts().expect("finish");
        prop_assert_eq!(d.finish(), one.finish());
        // And a verifier reading the chunks back computes the same digest.
        let mut again = KeyspaceDigest::new();
        ChunkReader::new(a.as_slice(), "a").expect("open").verify_into(&mut again).expect("verify a");
        ChunkReader::new(b.as_slice(), "b").expect("open").verify_into(&mut again).expect("verify b");
        prop_assert_eq!(again.finish(), one.finish());
    }
}

/// Length prefixes keep `("ab","c")` and `("a","bc")` apart.
#[test]
fn digest_separates_key_and_value() {
    let mut a = KeyspaceDigest::new();
    a.update(b"ab", b"c");
    let mut b = KeyspaceDigest::new();
    b.update(b"a", b"bc");
    assert_ne!(a.finish(), b.finish());
    let mut manual = blake3::Hasher::new();
    for part in [&b"ab"[..], &b"c"[..]] {
        manual.update(&(part.len() as u64).to_le_bytes());
        manual.update(part);
    }
    assert_eq!(a.finish(), manual.finalize().to_hex().to_string());
}

#[test]
fn segment_writer_rejects_gaps_repeats_and_time_going_back() {
    let rec = |lsn, time_ms| RawRecord {
        lsn,
        time_ms,
        body: vec![1],
    };
    let mut w = SegmentWriter::new(Vec::new(), 1).named("timelines/1/log/x.seg");
    w.push(&rec(5, 100)).expect("first");
    let gap = w.push(&rec(7, 100)).expect_err("gap");
    assert!(
        matches!(
            gap,
            FormatError::UnexpectedLsn {
                expected: 6,
                found: 7,
                ..
            }
        ),
        "{gap}"
    );
    assert!(gap.to_string().contains("timelines/1/log/x.seg"), "{gap}");
    let repeat = w.push(&rec(5, 100)).expect_err("repeat");
    assert!(
        matches!(
            repeat,
            FormatError::UnexpectedLsn {
                expected: 6,
                found: 5,
                ..
            }
        ),
        "{repeat}"
    );
    let back = w.push(&rec(6, 99)).expect_err("time back");
    assert!(
        matches!(back, FormatError::TimeWentBackwards { lsn: 6, .. }),
        "{back}"
    );
    // Rejected records leave the writer usable.
    w.push(&rec(6, 100)).expect("next");
    let s = w.finish().expect("finish");
    assert_eq!((s.first, s.last, s.count), (5, 6, 2));
}

#[test]
fn segment_writer_rejects_lsn_overflow() {
    let mut w = SegmentWriter::new(Vec::new(), 1);
    w.push(&RawRecord {
        lsn: u64::MAX,
        time_ms: 1,
        body: vec![],
    })
    .expect("max");
    let e = w
        .push(&RawRecord {
            lsn: 0,
            time_ms: 1,
            body: vec![],
        })
        .expect_err("wrap");
    assert!(e.to_string().contains("largest possible"), "{e}");
}

#[test]
fn chunk_writer_rejects_unsorted_and_duplicate_keys() {
    let mut w = ChunkWriter::new(Vec::new()).named("snap/000001.chunk");
    w.push(b"b", b"1").expect("b");
    let dup = w.push(b"b", b"2").expect_err("dup");
    assert!(
        matches!(dup, FormatError::KeyOrder { index: 1, .. }),
        "{dup}"
    );
    assert!(dup.to_string().contains("snap/000001.chunk"), "{dup}");
    let back = w.push(b"a", b"2").expect_err("back");
    assert!(matches!(back, FormatError::KeyOrder { .. }), "{back}");
    w.push(b"c", b"3").expect("c");
    let (s, _) = w.finish().expect("finish");
    assert_eq!(s.count, 2);
}

/// Same records, same bytes: re-shipping a segment writes an identical object.
#[test]
fn segments_are_deterministic() {
    let recs = records(
        10,
        1000,
        (0..500)
            .map(|i| (1, format!("body {i}").into_bytes()))
            .collect(),
    );
    let (a, sa) = write_segment(3, &recs, 1024);
    let (b, sb) = write_segment(3, &recs, 1024);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert_eq!(
        sa.object_key(),
        Some(tito_format::layout::segment(3, 10, 509, 1001, 1500))
    );
}

/// A record larger than the frame target gets a frame of its own and reads back.
#[test]
fn large_records_and_values_round_trip() {
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let recs = vec![
        RawRecord {
            lsn: 1,
            time_ms: 1,
            body: b"small".to_vec(),
        },
        RawRecord {
            lsn: 2,
            time_ms: 2,
            body: big.clone(),
        },
        RawRecord {
            lsn: 3,
            time_ms: 2,
            body: Vec::new(),
        },
    ];
    let (bytes, s) = write_segment(1, &recs, 1 << 20);
    assert_eq!(s.count, 3);
    let back: Vec<_> = SegmentReader::new(bytes.as_slice(), "big")
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(back, recs);

    let mut w = ChunkWriter::new(Vec::new());
    w.push(b"a", &big).expect("a");
    w.push(b"b", b"").expect("b");
    let (_, _, bytes) = w.finish_into_parts().expect("finish");
    let back: Vec<_> = ChunkReader::new(bytes.as_slice(), "big")
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(
        back,
        vec![(b"a".to_vec(), big), (b"b".to_vec(), Vec::new())]
    );
}

#[test]
fn engine_value_round_trips() {
    let r = RawRecord {
        lsn: 9,
        time_ms: 0x0102_0304_0506_0708,
        body: b"xyz".to_vec(),
    };
    let v = r.engine_value();
    assert_eq!(&v[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(RawRecord::from_engine_value(9, &v).expect("parse"), r);
    let e = RawRecord::from_engine_value(9, &v[..7]).expect_err("short");
    assert!(e.to_string().contains("log record 9"), "{e}");
}

/// A reader of a chunk refuses a segment and vice versa, naming the object.
#[test]
fn kinds_are_not_confused() {
    let (seg, _) = write_segment(1, &[], 1024);
    let e = ChunkReader::new(seg.as_slice(), "x.chunk")
        .err()
        .expect("refused");
    assert!(
        matches!(e, FormatError::BadMagic { .. }) && e.to_string().contains("x.chunk"),
        "{e}"
    );
}

#[test]
fn segment_content_is_checked_against_its_name() {
    let recs = records(10, 1000, vec![(1, b"a".to_vec()), (1, b"b".to_vec())]);
    let (_, s) = write_segment(3, &recs, 1024);
    let key = s.object_key().expect("key");
    s.check_name(&key).expect("matches");
    let other = tito_format::layout::segment(3, 10, 12, 1001, 1002);
    let e = s.check_name(&other).expect_err("range differs");
    assert!(e.to_string().contains(&other), "{e}");
    assert!(
        s.check_name(&tito_format::layout::segment(4, 10, 11, 1001, 1002))
            .is_err()
    );
}

#[test]
fn chunk_is_checked_against_its_manifest_entry() {
    let mut w = ChunkWriter::new(Vec::new());
    w.push(b"a", b"1").expect("a");
    w.push(b"b", b"2").expect("b");
    let (s, _) = w.finish().expect("finish");
    let entry = s.entry(4);
    s.check_entry("c", &entry).expect("same");
    for (want, edit) in [
        (
            "size",
            Box::new(|e: &mut tito_format::ChunkEntry| e.size += 1)
                as Box<dyn Fn(&mut tito_format::ChunkEntry)>,
        ),
        ("checksum", Box::new(|e| e.checksum = "0".repeat(64))),
        ("count", Box::new(|e| e.count = 3)),
        ("first key", Box::new(|e| e.first_key = b"0".to_vec())),
        ("last key", Box::new(|e| e.last_key = b"c".to_vec())),
    ] {
        let mut bad = entry.clone();
        edit(&mut bad);
        let err = s.check_entry("snap/000004.chunk", &bad).expect_err(want);
        assert!(
            err.to_string().contains(want) && err.to_string().contains("snap/000004.chunk"),
            "{err}"
        );
    }
}
