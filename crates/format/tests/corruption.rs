//! Every single-byte change, truncation, deletion, insertion and append of a segment or chunk
//! is detected by its reader, with an error naming the object.

use std::io::Cursor;

use tito_format::{ChunkReader, ChunkWriter, RawRecord, SegmentReader, SegmentWriter};

const NAME: &str = "timelines/00000001/damaged-object";

/// Reads a whole object: the items it holds, or the message of the first error.
type Reader = fn(&[u8]) -> Result<usize, String>;

/// The items of an opened reader, or the message of the first error.
fn count_items<T>(
    opened: tito_format::Result<impl Iterator<Item = tito_format::Result<T>>>,
) -> Result<usize, String> {
    let mut n = 0;
    for item in opened.map_err(|e| e.to_string())? {
        item.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

fn read_segment(bytes: &[u8]) -> Result<usize, String> {
    count_items(SegmentReader::new(bytes, NAME))
}

fn read_chunk(bytes: &[u8]) -> Result<usize, String> {
    count_items(ChunkReader::new(bytes, NAME))
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

/// Both object kinds: a name, a ~3 KiB object of several frames and its reader.
fn small_objects() -> [(&'static str, Vec<u8>, Reader); 2] {
    [
        ("segment", small_segment(), read_segment),
        ("chunk", small_chunk(), read_chunk),
    ]
}

/// Every mutation of `good` that `variants` produces must make `read` fail naming the object.
fn assert_all_detected(
    what: &str,
    good: &[u8],
    read: Reader,
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
fn every_byte_flip_is_detected() {
    for (what, good, read) in small_objects() {
        assert!(
            (2048..=4096).contains(&good.len()),
            "{what} is {} bytes",
            good.len()
        );
        let n = assert_all_detected(what, &good, read, flips(&good));
        assert_eq!(n, good.len() * 9, "{what}");
    }
}

#[test]
fn every_truncation_deletion_insertion_and_append_is_detected() {
    for (what, good, read) in small_objects() {
        let all = truncations(&good)
            .chain(deletions(&good))
            .chain(insertions(&good))
            .chain(appends(&good));
        assert_all_detected(what, &good, read, all);
    }
}

/// For every 7th byte flip of `good` (header, frames and trailer alike) that `open` accepts:
/// the reader stops at its first error (there must be one), yields nothing after it, has no
/// summary, and `verify` then refuses it, naming the object.
fn ends_at_first_error<R, T>(
    good: &[u8],
    open: fn(Cursor<Vec<u8>>) -> tito_format::Result<R>,
    has_summary: fn(&R) -> bool,
    verify: fn(R) -> Result<(), String>,
) where
    R: Iterator<Item = tito_format::Result<T>>,
{
    let mut opened = 0;
    for (desc, bad) in flips(good).step_by(7) {
        let Ok(mut reader) = open(Cursor::new(bad)) else {
            continue;
        };
        opened += 1;
        loop {
            match reader.next() {
                Some(Ok(_)) => {}
                Some(Err(_)) => break,
                None => panic!("{desc} went undetected"),
            }
        }
        assert!(reader.next().is_none(), "{desc}: an item after the error");
        assert!(!has_summary(&reader), "{desc}: a summary after the error");
        let err = verify(reader).expect_err(&desc);
        assert!(
            err.contains("earlier read") && err.contains(NAME),
            "{desc}: {err}"
        );
    }
    assert!(opened > good.len(), "only {opened} damaged objects opened");
}

#[test]
fn readers_end_at_their_first_error() {
    ends_at_first_error(
        &small_segment(),
        |bytes| SegmentReader::new(bytes, NAME),
        |r| r.summary().is_some(),
        |r| r.verify().map(drop).map_err(|e| e.to_string()),
    );
    ends_at_first_error(
        &small_chunk(),
        |bytes| ChunkReader::new(bytes, NAME),
        |r| r.summary().is_some(),
        |r| r.verify().map(drop).map_err(|e| e.to_string()),
    );
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
    for (good, read) in [(seg, read_segment as Reader), (chunk, read_chunk)] {
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
