//! Every single-byte change, truncation, deletion, insertion and append of a segment or chunk
//! is detected by its reader, with an error naming the object.

use tito_format::{ChunkReader, ChunkWriter, RawRecord, SegmentReader, SegmentWriter};

const NAME: &str = "timelines/00000001/damaged-object";

fn read_segment(bytes: &[u8]) -> Result<usize, String> {
    let r = SegmentReader::new(bytes, NAME).map_err(|e| e.to_string())?;
    let mut n = 0;
    for rec in r {
        rec.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

fn read_chunk(bytes: &[u8]) -> Result<usize, String> {
    let r = ChunkReader::new(bytes, NAME).map_err(|e| e.to_string())?;
    let mut n = 0;
    for pair in r {
        pair.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// A ~3 KiB segment of several frames with mixed-size records.
fn small_segment() -> Vec<u8> {
    let mut w = SegmentWriter::new(Vec::new(), 1).with_frame_target(400);
    for i in 0..60u64 {
        let body: Vec<u8> = (0..(i * 7 % 50)).map(|j| (i * 31 + j * 17) as u8).collect();
        w.push(&RawRecord {
            lsn: 100 + i,
            time_ms: 1_700_000_000_000 + i / 3,
            body,
        })
        .expect("push");
    }
    w.finish_into_inner().expect("finish").1
}

/// A pseudo-random byte (incompressible values keep the test object big enough).
fn noise(n: u64) -> u8 {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u8
}

/// A ~3 KiB chunk of several frames.
fn small_chunk() -> Vec<u8> {
    let mut w = ChunkWriter::new(Vec::new()).with_frame_target(400);
    for i in 0..60u64 {
        let key = format!("user/{:05}", i * 13).into_bytes();
        let value: Vec<u8> = (0..(i * 7 % 60)).map(|j| noise(i * 1000 + j)).collect();
        w.push(&key, &value).expect("push");
    }
    w.finish_into_parts().expect("finish").2
}

/// Every mutation of `good` that `variants` produces must make `read` fail naming the object.
fn assert_all_detected(
    what: &str,
    good: &[u8],
    read: fn(&[u8]) -> Result<usize, String>,
    variants: impl Iterator<Item = (String, Vec<u8>)>,
) -> usize {
    let expected = read(good).expect("the intact object reads");
    assert!(expected > 0);
    let mut checked = 0;
    for (desc, bad) in variants {
        match read(&bad) {
            Ok(n) => {
                panic!("{what}: {desc} went undetected ({n} items read, intact has {expected})")
            }
            Err(msg) => assert!(
                msg.contains(NAME),
                "{what}: {desc}: error does not name the object: {msg}"
            ),
        }
        checked += 1;
    }
    checked
}

fn flips(good: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    (0..good.len()).flat_map(move |pos| {
        [1u8, 2, 4, 8, 16, 32, 64, 128, 0xff]
            .into_iter()
            .map(move |mask| {
                let mut bad = good.to_vec();
                bad[pos] ^= mask;
                (format!("xor 0x{mask:02x} at byte {pos}"), bad)
            })
    })
}

fn truncations(good: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    (0..good.len()).map(move |len| (format!("truncation to {len} bytes"), good[..len].to_vec()))
}

fn deletions(good: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    (0..good.len()).map(move |pos| {
        let mut bad = good.to_vec();
        bad.remove(pos);
        (format!("deletion of byte {pos}"), bad)
    })
}

fn insertions(good: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    (0..=good.len()).map(move |pos| {
        let mut bad = good.to_vec();
        bad.insert(pos, (pos as u8).wrapping_mul(37));
        (format!("insertion at byte {pos}"), bad)
    })
}

fn appends(good: &[u8]) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    [vec![0u8], vec![b'F'], vec![b'T'], good.to_vec()]
        .into_iter()
        .map(move |tail| {
            let mut bad = good.to_vec();
            bad.extend_from_slice(&tail);
            (format!("append of {} bytes", tail.len()), bad)
        })
}

#[test]
fn every_segment_byte_flip_is_detected() {
    let good = small_segment();
    assert!(
        (2048..=4096).contains(&good.len()),
        "segment is {} bytes",
        good.len()
    );
    let n = assert_all_detected("segment", &good, read_segment, flips(&good));
    assert_eq!(n, good.len() * 9);
}

#[test]
fn every_segment_truncation_deletion_insertion_and_append_is_detected() {
    let good = small_segment();
    let all = truncations(&good)
        .chain(deletions(&good))
        .chain(insertions(&good))
        .chain(appends(&good));
    assert_all_detected("segment", &good, read_segment, all);
}

#[test]
fn every_chunk_byte_flip_is_detected() {
    let good = small_chunk();
    assert!(
        (2048..=4096).contains(&good.len()),
        "chunk is {} bytes",
        good.len()
    );
    let n = assert_all_detected("chunk", &good, read_chunk, flips(&good));
    assert_eq!(n, good.len() * 9);
}

#[test]
fn every_chunk_truncation_deletion_insertion_and_append_is_detected() {
    let good = small_chunk();
    let all = truncations(&good)
        .chain(deletions(&good))
        .chain(insertions(&good))
        .chain(appends(&good));
    assert_all_detected("chunk", &good, read_chunk, all);
}

/// Empty objects (header and trailer only) are covered exhaustively too.
#[test]
fn empty_objects_detect_every_change() {
    let seg = SegmentWriter::new(Vec::new(), 7)
        .finish_into_inner()
        .expect("finish")
        .1;
    let chunk = ChunkWriter::new(Vec::new())
        .finish_into_parts()
        .expect("finish")
        .2;
    for (good, read) in [
        (seg, read_segment as fn(&[u8]) -> Result<usize, String>),
        (chunk, read_chunk),
    ] {
        assert_eq!(read(&good), Ok(0));
        let all = flips(&good)
            .chain(truncations(&good))
            .chain(deletions(&good))
            .chain(appends(&good));
        for (desc, bad) in all {
            let err = read(&bad).expect_err(&desc);
            assert!(err.contains(NAME), "{desc}: {err}");
        }
    }
}

/// Bigger objects (multi-frame, ~1 MiB): sampled positions.
#[test]
fn sampled_changes_in_large_objects_are_detected() {
    let mut w = SegmentWriter::new(Vec::new(), 2).with_frame_target(64 << 10);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..4000u64 {
        let body: Vec<u8> = (0..(i % 300))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 16) as u8
            })
            .collect();
        w.push(&RawRecord {
            lsn: i + 1,
            time_ms: i,
            body,
        })
        .expect("push");
    }
    let good = w.finish_into_inner().expect("finish").1;
    let len = good.len();
    let step = (len / 400).max(1);
    let sampled = (0..len).step_by(step).flat_map(|pos| {
        let mut flip = good.clone();
        flip[pos] ^= 1 << (pos % 8);
        let mut del = good.clone();
        del.remove(pos);
        [
            (format!("bit flip at {pos}"), flip),
            (format!("deletion at {pos}"), del),
            (format!("truncation to {pos}"), good[..pos].to_vec()),
        ]
    });
    let n = assert_all_detected("large segment", &good, read_segment, sampled);
    assert!(n >= 1000);
}
