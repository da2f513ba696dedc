//! Writers and readers keep bounded memory whatever the object size.

use std::io::{self, Write};

use tito_format::{ChunkReader, ChunkWriter, RawRecord, SegmentReader, SegmentWriter};

/// A sink that counts bytes and keeps none.
#[derive(Default)]
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const TARGET: usize = tito_format::frame::DEFAULT_FRAME_TARGET;
/// One frame, its compressed copy, and slack for Vec growth.
const BOUND: usize = 4 * TARGET + (64 << 10);
/// The same for chunks, whose frames are larger (and held as two columns while filled).
const CHUNK_BOUND: usize = 4 * tito_format::frame::CHUNK_FRAME_TARGET + (64 << 10);

fn body(i: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|j| ((i * 131 + j) % 251) as u8)
        .collect()
}

#[test]
fn segment_writer_memory_is_bounded() {
    let mut w = SegmentWriter::new(Counting::default(), 1);
    let mut fed = 0usize;
    let mut i = 0u64;
    while fed < 24 << 20 {
        let rec = RawRecord {
            lsn: i,
            time_ms: i,
            body: body(i, 1000 + (i as usize * 37) % 3000),
        };
        fed += rec.body.len();
        w.push(&rec).expect("push");
        assert!(
            w.buffered_bytes() <= BOUND,
            "writer holds {} bytes after {fed} fed",
            w.buffered_bytes()
        );
        i += 1;
    }
    let (s, sink) = w.finish_into_inner().expect("finish");
    assert_eq!(s.bytes, sink.0);
    assert_eq!(s.count, i);
}

#[test]
fn chunk_writer_and_reader_memory_is_bounded() {
    let mut w = ChunkWriter::new(Vec::new());
    let mut fed = 0usize;
    let mut i = 0u64;
    while fed < 48 << 20 {
        let value = body(i, 500 + (i as usize * 53) % 4000);
        fed += value.len();
        w.push(format!("key/{i:012}").as_bytes(), &value)
            .expect("push");
        assert!(
            w.buffered_bytes() <= CHUNK_BOUND,
            "writer holds {} bytes after {fed} fed",
            w.buffered_bytes()
        );
        i += 1;
    }
    let (s, _, bytes) = w.finish_into_parts().expect("finish");
    assert!(bytes.len() as u64 == s.bytes);
    let mut r = ChunkReader::new(bytes.as_slice(), "big.chunk").expect("open");
    let mut n = 0;
    while let Some(pair) = r.next() {
        pair.expect("pair");
        n += 1;
        assert!(
            r.buffered_bytes() <= CHUNK_BOUND,
            "reader holds {} bytes",
            r.buffered_bytes()
        );
    }
    assert_eq!(n, i);
}

/// A huge record gets a frame of its own; the writer gives the memory back afterwards.
#[test]
fn buffers_shrink_after_a_huge_record() {
    let mut w = SegmentWriter::new(Counting::default(), 1);
    w.push(&RawRecord {
        lsn: 1,
        time_ms: 1,
        body: vec![7; 8 * TARGET],
    })
    .expect("huge");
    w.push(&RawRecord {
        lsn: 2,
        time_ms: 1,
        body: vec![1; 10],
    })
    .expect("small");
    assert!(
        w.buffered_bytes() <= BOUND,
        "writer holds {} bytes",
        w.buffered_bytes()
    );
    let mut out = Vec::new();
    let mut w = SegmentWriter::new(&mut out, 1);
    w.push(&RawRecord {
        lsn: 1,
        time_ms: 1,
        body: vec![7; 8 * TARGET],
    })
    .expect("huge");
    for lsn in 2..2000 {
        w.push(&RawRecord {
            lsn,
            time_ms: 1,
            body: vec![1; 1000],
        })
        .expect("small");
    }
    w.finish().expect("finish");
    let mut r = SegmentReader::new(out.as_slice(), "huge.seg").expect("open");
    r.next().expect("first").expect("ok");
    let mut last_frame = 0;
    while let Some(rec) = r.next() {
        rec.expect("rec");
        last_frame = r.buffered_bytes();
    }
    assert!(
        last_frame <= BOUND,
        "reader holds {last_frame} bytes after the huge frame"
    );
}
