//! Write and read throughput of log segments and snapshot chunks, on in-memory buffers and
//! through the local directory store (a durable put: file and directory synced; a get that
//! reads the file back), next to `zstd -1` over the same raw bytes, in one run.
//! Run: `cargo bench -p tito-format`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tito_format::{ChunkReader, ChunkWriter, RawRecord, SegmentReader, SegmentWriter};
use tito_store::{LocalStore, Store};

const N: u64 = 20_000;

/// Records of ~200 bytes with some redundancy, like encoded mutations.
fn records() -> Vec<RawRecord> {
    (0..N)
        .map(|i| {
            let body = format!(
                "put user/{:08} {{\"n\":{},\"name\":\"user-{}\",\"pad\":\"{}\"}}",
                i,
                i * 7,
                i % 977,
                "x".repeat((i % 150) as usize)
            );
            RawRecord {
                lsn: i + 1,
                time_ms: 1_700_000_000_000 + i / 10,
                body: body.into_bytes(),
            }
        })
        .collect()
}

fn pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
    records()
        .into_iter()
        .map(|r| (format!("user/{:012}", r.lsn).into_bytes(), r.body))
        .collect()
}

fn write_segment(recs: &[RawRecord]) -> Vec<u8> {
    let mut w = SegmentWriter::new(Vec::new(), 1);
    for r in recs {
        w.push(r).expect("push");
    }
    w.finish_into_inner().expect("finish").1
}

fn write_chunk(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = ChunkWriter::new(Vec::new());
    for (k, v) in pairs {
        w.push(k, v).expect("push");
    }
    w.finish_into_parts().expect("finish").2
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let pairs = pairs();
    let raw_seg: usize = recs.iter().map(|r| 20 + r.body.len()).sum();
    let raw_chunk: usize = pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let seg = write_segment(&recs);
    let chunk = write_chunk(&pairs);
    let mut raw_bytes = Vec::with_capacity(raw_chunk);
    for (k, v) in &pairs {
        raw_bytes.extend_from_slice(k);
        raw_bytes.extend_from_slice(v);
    }
    println!(
        "segment: {raw_seg} raw bytes -> {} bytes; chunk: {raw_chunk} -> {} bytes",
        seg.len(),
        chunk.len()
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = std::env::temp_dir().join(format!("tito-format-bench-{}", std::process::id()));
    let store = LocalStore::new(&dir).expect("local store");
    rt.block_on(async {
        store
            .put("bench/segment-read", Bytes::from(seg.clone()))
            .await
            .expect("put");
        store
            .put("bench/chunk-read", Bytes::from(chunk.clone()))
            .await
            .expect("put");
    });

    for (unit, seg_tp, chunk_tp) in [
        (
            "MBps",
            Throughput::Bytes(raw_seg as u64),
            Throughput::Bytes(raw_chunk as u64),
        ),
        (
            "records_per_s",
            Throughput::Elements(N),
            Throughput::Elements(N),
        ),
    ] {
        let mut g = c.benchmark_group(unit);
        g.sample_size(10);
        g.throughput(seg_tp.clone());
        g.bench_function("segment_write", |b| {
            b.iter(|| black_box(write_segment(&recs)))
        });
        g.bench_function("segment_read", |b| {
            b.iter(|| {
                SegmentReader::new(seg.as_slice(), "bench")
                    .expect("open")
                    .verify()
                    .expect("read")
            })
        });
        g.throughput(chunk_tp.clone());
        g.bench_function("chunk_write", |b| b.iter(|| black_box(write_chunk(&pairs))));
        g.bench_function("chunk_read", |b| {
            b.iter(|| {
                ChunkReader::new(chunk.as_slice(), "bench")
                    .expect("open")
                    .verify()
                    .expect("read")
            })
        });
        g.bench_function("zstd_1_raw_compress", |b| {
            b.iter(|| zstd::bulk::compress(&raw_bytes, 1).expect("zstd"))
        });
        // Through the local store: encode + durable put, and get + verify.
        g.throughput(seg_tp.clone());
        g.bench_function("segment_write_local_store", |b| {
            b.to_async(&rt).iter(|| async {
                let bytes = Bytes::from(write_segment(&recs));
                store.put("bench/segment", bytes).await.expect("put")
            })
        });
        g.bench_function("segment_read_local_store", |b| {
            b.to_async(&rt).iter(|| async {
                let bytes = store.get("bench/segment-read").await.expect("get");
                SegmentReader::new(&bytes[..], "bench")
                    .expect("open")
                    .verify()
                    .expect("read")
            })
        });
        g.throughput(chunk_tp.clone());
        g.bench_function("chunk_write_local_store", |b| {
            b.to_async(&rt).iter(|| async {
                let bytes = Bytes::from(write_chunk(&pairs));
                store.put("bench/chunk", bytes).await.expect("put")
            })
        });
        g.bench_function("chunk_read_local_store", |b| {
            b.to_async(&rt).iter(|| async {
                let bytes = store.get("bench/chunk-read").await.expect("get");
                ChunkReader::new(&bytes[..], "bench")
                    .expect("open")
                    .verify()
                    .expect("read")
            })
        });
        g.finish();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
