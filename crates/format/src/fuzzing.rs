//! The check functions of the fuzz targets (`fuzz/` at the repository root) and the seeds
//! of their corpora, shared with the corpus replay test (`tests/fuzz_corpus.rs`) so that
//! a fuzz target and its replay run one piece of code.
//!
//! Each check takes arbitrary bytes, decodes them with a reader of stored bytes and
//! panics only when a property is broken: a decoder panicked, something decoded does not
//! survive a decode → encode → decode round trip, or a reader's buffers grew far beyond
//! what the input can justify (a length field trusted before it was checked).
//!
//! The first input byte picks a mode. Mode "raw" feeds the rest as it is; mode "sealed"
//! builds an object from the rest with every checksum right, so that the fuzzer reaches
//! the parsing behind the checksums (a mutated raw object almost never gets past them).
//! Sealed inputs describe frames with their *uncompressed* entries, so mutations change
//! entries rather than zstd bytes.
//!
//! Not a stable API: for the fuzz targets and tests only.

use std::borrow::Cow;

use crate::chunk::{CHUNK_FORMAT_VERSION, CHUNK_MAGIC, ChunkReader, ChunkWriter, KeyspaceDigest};
use crate::frame::{FrameReader, FrameWriter, Next, put_bytes};
use crate::layout::{self, ObjectName};
use crate::manifest::{self, Manifest};
use crate::record::{BodyBuilder, LogRecord, Mutation, decode_body, encode_body};
use crate::repo::{self, RepoConfig, RestorePoint, TimelineHistory};
use crate::segment::{
    RawRecord, SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC, SegmentReader, SegmentWriter,
};
use crate::stored;

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its check function.
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// The check: panics if a property is broken.
    pub check: fn(&[u8]),
    /// Valid inputs made by the real writers.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "log_record",
        check: log_record,
        seeds: log_record_seeds,
    },
    Target {
        name: "frame",
        check: frame,
        seeds: frame_seeds,
    },
    Target {
        name: "segment",
        check: segment,
        seeds: segment_seeds,
    },
    Target {
        name: "chunk",
        check: chunk,
        seeds: chunk_seeds,
    },
    Target {
        name: "manifest",
        check: manifest,
        seeds: manifest_seeds,
    },
    Target {
        name: "documents",
        check: documents,
        seeds: documents_seeds,
    },
];

/// Mode byte: feed the rest as it is.
const RAW: u8 = 0;
/// Mode byte: build a checksummed object from the rest.
const SEALED: u8 = 1;

/// How much a reader may hold beyond what the input justifies: the largest frame buffer
/// it reserves from a header's length (two chunk frames), and a MiB.
const ALLOC_SLACK: usize = crate::frame::RESERVE_MAX + (1 << 20);
/// A decompressed frame may legitimately be this many times larger than the whole input.
const ALLOC_RATIO: usize = 64;

/// Fail if a reader's buffers exceed what an input of `input_len` bytes justifies.
fn check_buffers(buffered: usize, input_len: usize) {
    let limit = ALLOC_SLACK + ALLOC_RATIO * input_len;
    assert!(
        buffered <= limit,
        "reader holds {buffered} bytes for an input of {input_len} (limit {limit}): a length was trusted"
    );
}

/// A cursor over fuzz input that never fails: short reads give what is left.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).first().copied()
    }
    fn le(&mut self, n: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&{
            let mut v = self.take(n).to_vec();
            v.resize(n, 0);
            v
        });
        u64::from_le_bytes(b)
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

// ---------------------------------------------------------------------------------------
// Sealed containers: header fields, frames given by their entries, trailer fields.
//
// sealed  = fields[fields_len] block*
// block   = b:u8 with b & 1 == 0: a frame; count = (b >> 1) & 0x3f, or le_u32 after b when
//           that is 0x3f; raw_len:le_u16 raw[raw_len]; if b & 0x80, a header raw_len:le_u32
//           follows and replaces the true one (a lying, correctly checksummed header)
//         | b & 1 == 1: the trailer; its fields are the rest of the input
// Input ending before a trailer block gives an object without a trailer.
// ---------------------------------------------------------------------------------------

const COUNT_ESCAPE: u8 = 0x3f;

fn seal_container(magic: &[u8; 8], version: u32, fields_len: usize, data: &[u8]) -> Vec<u8> {
    let mut inp = Input(data);
    let mut out = magic.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    let mut fields = inp.take(fields_len).to_vec();
    fields.resize(fields_len, 0);
    out.extend_from_slice(&fields);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    while let Some(b) = inp.byte() {
        if b & 1 == 1 {
            out.push(crate::frame::TAG_TRAILER);
            out.extend_from_slice(inp.rest());
            let hash = blake3::hash(&out);
            out.extend_from_slice(hash.as_bytes());
            return out;
        }
        let count = match (b >> 1) & 0x3f {
            COUNT_ESCAPE => inp.le(4) as u32,
            c => u32::from(c),
        };
        let n = inp.le(2) as usize;
        let raw = inp.take(n);
        let raw_len = if b & 0x80 != 0 {
            inp.le(4) as u32
        } else {
            raw.len() as u32
        };
        let comp = zstd::bulk::compress(raw, 1).expect("zstd compresses");
        let mut head = [0u8; 21];
        head[0] = crate::frame::TAG_FRAME;
        head[1..5].copy_from_slice(&count.to_le_bytes());
        head[5..9].copy_from_slice(&raw_len.to_le_bytes());
        head[9..13].copy_from_slice(&(comp.len() as u32).to_le_bytes());
        head[13..17].copy_from_slice(&crc32c::crc32c(&comp).to_le_bytes());
        let hcrc = crc32c::crc32c(&head[..17]);
        head[17..21].copy_from_slice(&hcrc.to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&comp);
    }
    out
}

/// The sealed description of a valid object (the inverse of [`seal_container`]), for seeds.
fn unseal_container(obj: &[u8], fields_len: usize) -> Vec<u8> {
    let mut inp = Input(obj);
    inp.take(12);
    let mut out = inp.take(fields_len).to_vec();
    inp.take(4);
    loop {
        match inp.byte() {
            Some(crate::frame::TAG_FRAME) => {
                let count = inp.le(4) as u32;
                let raw_len = inp.le(4) as usize;
                let comp_len = inp.le(4) as usize;
                inp.take(8);
                let raw = zstd::bulk::decompress(inp.take(comp_len), raw_len).expect("valid");
                match u8::try_from(count) {
                    Ok(c) if c < COUNT_ESCAPE => out.push(c << 1),
                    _ => {
                        out.push(COUNT_ESCAPE << 1);
                        out.extend_from_slice(&count.to_le_bytes());
                    }
                }
                let len = u16::try_from(raw.len()).expect("seed frames are small");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&raw);
            }
            _ => {
                out.push(1);
                let rest = inp.rest();
                out.extend_from_slice(&rest[..rest.len() - 32]);
                return out;
            }
        }
    }
}

fn container<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    fields_len: usize,
) -> Option<Cow<'a, [u8]>> {
    let (&mode, rest) = data.split_first()?;
    Some(match mode {
        RAW => Cow::Borrowed(rest),
        SEALED => Cow::Owned(seal_container(magic, version, fields_len, rest)),
        _ => return None,
    })
}

/// Both forms of a valid object as seeds: raw, and sealed.
fn both(obj: &[u8], fields_len: usize) -> [Vec<u8>; 2] {
    let mut raw = vec![RAW];
    raw.extend_from_slice(obj);
    let mut sealed = vec![SEALED];
    sealed.extend_from_slice(&unseal_container(obj, fields_len));
    [raw, sealed]
}

// ---------------------------------------------------------------------------------------
// log_record: the record body, and the engine value (`be_u64(time) ++ stored`).
// ---------------------------------------------------------------------------------------

/// Mode: a record body.
const BODY: u8 = 0;
/// Mode: an engine log value as it is.
const VALUE: u8 = 1;
/// Mode: a body, stored compressed (forced, even when larger): must decode to the same.
const COMPRESSED_BODY: u8 = 2;
/// Mode: `raw_len:varint zstd_frame` behind a correct checksum.
const SEALED_STORED: u8 = 3;

/// The log record target: record bodies and stored engine values.
pub fn log_record(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        BODY => {
            if let Ok(ms) = decode_body(rest) {
                // The encoding is canonical: whatever decodes re-encodes to the same bytes.
                assert_eq!(encode_body(&ms), rest);
                let mut b = BodyBuilder::new();
                ms.iter().for_each(|m| b.push(m));
                assert_eq!(b.count(), ms.len() as u64);
                assert_eq!(b.take(), rest);
            }
        }
        VALUE => {
            if let Ok((rec, len)) = stored::decode_stored_value(7, rest) {
                let body = encode_body(&rec.mutations);
                assert_eq!(len, 8 + body.len());
                let mut again = rec.time_ms.to_be_bytes().to_vec();
                again.extend_from_slice(&stored::pack_body(body));
                assert_eq!(stored::decode_stored_value(7, &again).unwrap().0, rec);
                assert_eq!(
                    LogRecord::from_stamped(7, &again).is_ok(),
                    !stored::is_compressed(&again[8..])
                );
            }
        }
        COMPRESSED_BODY => {
            let mut value = 1u64.to_be_bytes().to_vec();
            value.push(stored::COMPRESSED);
            let mut sealed = Vec::new();
            crate::record::put_varint(&mut sealed, rest.len() as u64);
            sealed.extend_from_slice(&zstd::bulk::compress(rest, 1).expect("zstd"));
            value.extend_from_slice(&crc32c::crc32c(&sealed).to_le_bytes());
            value.extend_from_slice(&sealed);
            let plain = decode_body(rest);
            match stored::decode_stored_value(1, &value) {
                Ok((rec, _)) => assert_eq!(Ok(rec.mutations), plain),
                Err(e) => assert!(
                    plain.is_err() || rest.len() > stored::STORED_MAX,
                    "a good body failed compressed: {e}"
                ),
            }
        }
        SEALED_STORED => {
            let mut value = 1u64.to_be_bytes().to_vec();
            value.push(stored::COMPRESSED);
            value.extend_from_slice(&crc32c::crc32c(rest).to_le_bytes());
            value.extend_from_slice(rest);
            if let Ok((rec, _)) = stored::decode_stored_value(1, &value) {
                let body = stored::unpack_body(&value[8..]).unwrap();
                assert_eq!(encode_body(&rec.mutations), body.as_ref());
            }
        }
        _ => {}
    }
}

fn sample_mutations() -> Vec<Vec<Mutation>> {
    let put = |k: &str, v: Vec<u8>| Mutation::Put {
        key: k.as_bytes().to_vec(),
        value: v,
    };
    vec![
        vec![],
        vec![put("k", b"v".to_vec())],
        vec![
            put("user/0001", vec![0x5a; 100]),
            Mutation::Delete {
                key: b"user/0002".to_vec(),
            },
            Mutation::DeleteRange {
                start: b"a".to_vec(),
                end: Some(b"b".to_vec()),
            },
            Mutation::DeleteRange {
                start: b"z".to_vec(),
                end: None,
            },
        ],
        (0..12)
            .map(|i| put(&format!("user/{i:012}"), format!("value {i}").into_bytes()))
            .collect(),
    ]
}

fn log_record_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ms in sample_mutations() {
        let body = encode_body(&ms);
        let with = |mode: u8, bytes: &[u8]| {
            let mut v = vec![mode];
            v.extend_from_slice(bytes);
            v
        };
        out.push(with(BODY, &body));
        out.push(with(COMPRESSED_BODY, &body));
        let mut value = 1_700_000_000_000u64.to_be_bytes().to_vec();
        value.extend_from_slice(&stored::pack_body(body.clone()));
        if stored::is_compressed(&value[8..]) {
            out.push(with(SEALED_STORED, &value[13..]));
        }
        out.push(with(VALUE, &value));
    }
    out
}

// ---------------------------------------------------------------------------------------
// frame: the container alone, entries as u32-length-prefixed byte strings.
// ---------------------------------------------------------------------------------------

const FUZZ_MAGIC: &[u8; 8] = b"TITO-FUZ";
const FUZZ_FIELDS: usize = 4;

/// The framed container target.
pub fn frame(data: &[u8]) {
    let Some(obj) = container(data, FUZZ_MAGIC, 1, FUZZ_FIELDS) else {
        return;
    };
    let Some((fields, entries, trailer)) = read_fuzz_container(&obj) else {
        return;
    };
    // Written again (in frames of another size), it reads back the same.
    let again = write_fuzz_container(&fields, &entries, &trailer, 1 + obj.len() % 61);
    let back = read_fuzz_container(&again).expect("a rewritten container reads");
    assert_eq!(back, (fields, entries, trailer));
}

type FuzzContainer = (Vec<u8>, Vec<Vec<u8>>, Vec<u8>);

fn read_fuzz_container(obj: &[u8]) -> Option<FuzzContainer> {
    let (mut r, fields) = FrameReader::open(
        obj,
        "fuzz".into(),
        "fuzz object",
        FUZZ_MAGIC,
        1..=1,
        FUZZ_FIELDS,
    )
    .ok()?;
    let mut entries = Vec::new();
    loop {
        let next = r.advance();
        check_buffers(r.buffered_bytes(), obj.len());
        match next.ok()? {
            Next::Entry => entries.push(r.take_bytes().ok()?),
            Next::Trailer => {
                let trailer = r.read_bytes("fields").ok()?;
                r.finish().ok()?;
                return Some((fields, entries, trailer));
            }
        }
    }
}

fn write_fuzz_container(
    fields: &[u8],
    entries: &[Vec<u8>],
    trailer: &[u8],
    target: usize,
) -> Vec<u8> {
    let mut header = FUZZ_MAGIC.to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(fields);
    let mut w = FrameWriter::new(Vec::new(), "fuzz".into(), header);
    w.set_target(target);
    for e in entries {
        put_bytes(w.raw_mut(), "fuzz", "entry", e).expect("entry fits");
        w.entry_done().expect("entry");
    }
    let mut t = Vec::new();
    put_bytes(&mut t, "fuzz", "fields", trailer).expect("fields fit");
    w.finish(&t).expect("finish").2
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let entries: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 3]).collect();
    let mut out = Vec::new();
    for (n, target) in [(0, 64), (1, 64), (20, 40), (20, 1 << 20)] {
        let obj = write_fuzz_container(b"head", &entries[..n], b"trailer", target);
        out.extend(both(&obj, FUZZ_FIELDS));
    }
    out
}

// ---------------------------------------------------------------------------------------
// segment
// ---------------------------------------------------------------------------------------

/// The log segment target.
pub fn segment(data: &[u8]) {
    let Some(obj) = container(data, SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, 8) else {
        return;
    };
    let Ok(mut r) = SegmentReader::new(&obj[..], "fuzz") else {
        return;
    };
    let mut records = Vec::new();
    loop {
        let next = r.next();
        check_buffers(r.buffered_bytes(), obj.len());
        match next {
            Some(Ok(rec)) => records.push(rec),
            Some(Err(_)) => return,
            None => break,
        }
    }
    let s = r
        .summary()
        .expect("an iteration that ends well has a summary")
        .clone();
    assert_eq!(s.count, records.len() as u64);
    assert_eq!(s.bytes, obj.len() as u64);
    assert_eq!(s.checksum, blake3::hash(&obj).to_hex().as_str());
    if let Some(key) = s.object_key() {
        s.check_name(&key).expect("a segment matches its own name");
    }
    let mut w = SegmentWriter::new(Vec::new(), s.timeline).with_frame_target(1 + obj.len() % 97);
    for rec in &records {
        w.push(rec)
            .expect("records a reader accepted are accepted by the writer");
    }
    let (s2, bytes) = w.finish_into_inner().expect("finish");
    let strip = |s: &crate::SegmentSummary| (s.timeline, s.first, s.last, s.t0, s.t1, s.count);
    assert_eq!(strip(&s2), strip(&s));
    let back: Vec<RawRecord> = SegmentReader::new(&bytes[..], "again")
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("a rewritten segment reads");
    assert_eq!(back, records);
}

fn segment_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, target) in [(0usize, 64), (1, 64), (12, 64), (12, 1 << 20)] {
        let mut w = SegmentWriter::new(Vec::new(), 3).with_frame_target(target);
        for (i, ms) in sample_mutations().iter().cycle().take(n).enumerate() {
            w.push(&RawRecord {
                lsn: 100 + i as u64,
                time_ms: 1_700_000_000_000 + (i as u64 / 2),
                body: encode_body(ms),
            })
            .unwrap();
        }
        out.extend(both(&w.finish_into_inner().unwrap().1, 8));
    }
    out
}

// ---------------------------------------------------------------------------------------
// chunk
// ---------------------------------------------------------------------------------------

/// The snapshot chunk target.
pub fn chunk(data: &[u8]) {
    let Some(obj) = container(data, CHUNK_MAGIC, CHUNK_FORMAT_VERSION, 0) else {
        return;
    };
    let Ok(mut r) = ChunkReader::new(&obj[..], "fuzz") else {
        return;
    };
    let mut pairs = Vec::new();
    let mut digest = KeyspaceDigest::new();
    loop {
        let next = r.next();
        check_buffers(r.buffered_bytes(), obj.len());
        match next {
            Some(Ok((k, v))) => {
                digest.update(&k, &v);
                pairs.push((k, v));
            }
            Some(Err(_)) => return,
            None => break,
        }
    }
    let s = r
        .summary()
        .expect("an iteration that ends well has a summary")
        .clone();
    assert_eq!(s.count, pairs.len() as u64);
    assert_eq!(s.bytes, obj.len() as u64);
    s.check_entry("fuzz", &s.entry(0))
        .expect("a chunk matches its own entry");
    let mut w = ChunkWriter::new(Vec::new()).with_frame_target(1 + obj.len() % 97);
    for (k, v) in &pairs {
        w.push(k, v)
            .expect("pairs a reader accepted are accepted by the writer");
    }
    let (s2, digest2, bytes) = w.finish_into_parts().expect("finish");
    let strip = |s: &crate::ChunkSummary| {
        (
            s.count,
            s.first_key.clone(),
            s.last_key.clone(),
            s.raw_bytes,
        )
    };
    assert_eq!(strip(&s2), strip(&s));
    assert_eq!(digest2.finish(), digest.finish());
    let back: Vec<(Vec<u8>, Vec<u8>)> = ChunkReader::new(&bytes[..], "again")
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("a rewritten chunk reads");
    assert_eq!(back, pairs);
}

fn chunk_pairs(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("user/{i:06}").into_bytes(),
                vec![b'a' + (i % 26) as u8; i % 7],
            )
        })
        .collect()
}

fn chunk_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, target) in [(0usize, 64), (1, 64), (15, 64), (15, 1 << 20)] {
        let mut w = ChunkWriter::new(Vec::new()).with_frame_target(target);
        for (k, v) in chunk_pairs(n) {
            w.push(&k, &v).unwrap();
        }
        out.extend(both(&w.finish_into_parts().unwrap().2, 0));
    }
    out
}

// ---------------------------------------------------------------------------------------
// JSON documents: raw, or sealed (the rest is the JSON; the checksum line is added).
// ---------------------------------------------------------------------------------------

fn document<'a>(data: &'a [u8], kind: &str, version: u32) -> Option<Cow<'a, [u8]>> {
    let (&mode, rest) = data.split_first()?;
    Some(match mode {
        RAW => Cow::Borrowed(rest),
        SEALED => {
            let mut out = rest.to_vec();
            let hash = blake3::hash(rest).to_hex();
            out.extend_from_slice(format!("\n{kind} v{version} blake3:{hash}\n").as_bytes());
            Cow::Owned(out)
        }
        _ => return None,
    })
}

/// The JSON of a document (its bytes without the checksum line), for sealed seeds.
fn doc_json(doc: &[u8]) -> &[u8] {
    let body = &doc[..doc.len() - 1];
    &body[..body
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("checksum line")]
}

fn doc_seeds(doc: &[u8]) -> [Vec<u8>; 2] {
    let mut raw = vec![RAW];
    raw.extend_from_slice(doc);
    let mut sealed = vec![SEALED];
    sealed.extend_from_slice(doc_json(doc));
    [raw, sealed]
}

/// The snapshot manifest target.
pub fn manifest(data: &[u8]) {
    let Some(doc) = document(data, manifest::KIND, manifest::MANIFEST_FORMAT_VERSION) else {
        return;
    };
    if let Ok(m) = Manifest::decode(&doc, "fuzz") {
        let again = m.encode("fuzz").expect("a decoded manifest encodes");
        assert_eq!(Manifest::decode(&again, "fuzz").expect("decodes"), m);
    }
}

fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut digest = KeyspaceDigest::new();
    let pairs = chunk_pairs(9);
    for (n, part) in pairs.chunks(4).enumerate() {
        let mut w = ChunkWriter::continuing(Vec::new(), digest);
        for (k, v) in part {
            w.push(k, v).unwrap();
        }
        let (s, d) = w.finish().unwrap();
        digest = d;
        let mut entry = s.entry(n as u32);
        entry.content = Some(format!("{n:064x}"));
        chunks.push(entry);
    }
    let m = |chunks: Vec<crate::ChunkEntry>| Manifest {
        format_version: manifest::MANIFEST_FORMAT_VERSION,
        id: "0123456789abcdef".into(),
        timeline: 1,
        lsn: 42,
        lsn_time_ms: 1_700_000_000_000,
        started_ms: 1_700_000_000_001,
        finished_ms: 1_700_000_000_002,
        engine: "redb".into(),
        database_id: "db-1".into(),
        total_count: chunks.iter().map(|c| c.count).sum(),
        total_raw_bytes: chunks.iter().filter_map(|c| c.raw_bytes).sum(),
        chunks,
        keyspace_digest: digest.finish(),
    };
    [m(chunks), m(Vec::new())]
        .iter()
        .flat_map(|m| doc_seeds(&m.encode("seed").unwrap()))
        .collect()
}

/// Which document the second byte of a `documents` input names.
const REPO: u8 = 0;
const TIMELINE: u8 = 1;
const RESTORE_POINT: u8 = 2;
const OBJECT_NAME: u8 = 3;

/// The other stored documents: repository config, timeline history, restore point, and
/// the object names a store listing returns.
pub fn documents(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which {
        REPO => round_trip(rest, repo::REPO_KIND, repo::REPO_FORMAT_VERSION, |b| {
            RepoConfig::decode(b, "fuzz").ok()
        }),
        TIMELINE => round_trip(
            rest,
            repo::TIMELINE_KIND,
            repo::TIMELINE_FORMAT_VERSION,
            |b| TimelineHistory::decode(b, "fuzz").ok(),
        ),
        RESTORE_POINT => round_trip(
            rest,
            repo::RESTORE_POINT_KIND,
            repo::RESTORE_POINT_FORMAT_VERSION,
            |b| RestorePoint::decode(b, "fuzz").ok(),
        ),
        OBJECT_NAME => object_name(rest),
        _ => {}
    }
}

/// The documents that [`documents`] round-trips.
trait Doc: PartialEq + std::fmt::Debug {
    fn encode(&self, object: &str) -> Result<Vec<u8>, crate::FormatError>;
}
impl Doc for RepoConfig {
    fn encode(&self, object: &str) -> Result<Vec<u8>, crate::FormatError> {
        RepoConfig::encode(self, object)
    }
}
impl Doc for TimelineHistory {
    fn encode(&self, object: &str) -> Result<Vec<u8>, crate::FormatError> {
        TimelineHistory::encode(self, object)
    }
}
impl Doc for RestorePoint {
    fn encode(&self, object: &str) -> Result<Vec<u8>, crate::FormatError> {
        RestorePoint::encode(self, object)
    }
}

fn round_trip<T: Doc>(data: &[u8], kind: &str, version: u32, decode: impl Fn(&[u8]) -> Option<T>) {
    let Some(doc) = document(data, kind, version) else {
        return;
    };
    if let Some(d) = decode(&doc) {
        let again = d.encode("fuzz").expect("a decoded document encodes");
        assert_eq!(decode(&again).expect("re-encoded document decodes"), d);
    }
}

/// A key parsed back into what it names gives the same key when named again.
fn object_name(data: &[u8]) {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let again = match layout::parse(key) {
        ObjectName::Other => return,
        ObjectName::RepoConfig => layout::REPO_CONFIG.to_string(),
        ObjectName::TimelineHistory { timeline } => layout::timeline_history(timeline),
        ObjectName::Segment {
            timeline,
            first,
            last,
            t0,
            t1,
        } => layout::segment(timeline, first, last, t0, t1),
        ObjectName::SnapshotChunk {
            timeline,
            lsn,
            id,
            n,
        } => layout::snapshot_chunk(&layout::snapshot_dir(timeline, lsn, &id), n),
        ObjectName::SnapshotManifest { timeline, lsn, id } => {
            layout::snapshot_manifest(&layout::snapshot_dir(timeline, lsn, &id))
        }
        ObjectName::RestorePoint { name } => layout::restore_point(&name),
        ObjectName::SharedChunk { hash } => layout::shared_chunk(&hash),
        ObjectName::WriterClaim {
            timeline,
            epoch,
            writer,
        } => layout::writer_claim(timeline, epoch, &writer),
    };
    assert_eq!(again, key);
}

fn documents_seeds() -> Vec<Vec<u8>> {
    let with = |which: u8, seed: Vec<u8>| {
        let mut v = vec![which];
        v.extend(seed);
        v
    };
    let mut out = Vec::new();
    let repo = RepoConfig {
        created_ms: 1_700_000_000_000,
        repository_id: "00112233445566778899aabbccddeeff".into(),
        ..RepoConfig::new("db-1")
    };
    out.extend(doc_seeds(&repo.encode("seed").unwrap()).map(|s| with(REPO, s)));
    for parent in [None, Some(1)] {
        let t = TimelineHistory {
            timeline: 2,
            parent,
            branch_lsn: 40,
            branch_time_ms: 1_699_999_999_000,
            branch_id: "0123456789abcdef".into(),
            created_ms: 1_700_000_000_000,
        };
        out.extend(doc_seeds(&t.encode("seed").unwrap()).map(|s| with(TIMELINE, s)));
    }
    let p = RestorePoint {
        name: "before-migration_v2".into(),
        timeline: 1,
        lsn: 99,
        created_ms: 1_700_000_000_000,
    };
    out.extend(doc_seeds(&p.encode("seed").unwrap()).map(|s| with(RESTORE_POINT, s)));
    let dir = layout::snapshot_dir(1, 42, "0123456789abcdef");
    for key in [
        layout::REPO_CONFIG.to_string(),
        layout::timeline_history(1),
        layout::segment(1, 1, 10, 1_700_000_000_000, 1_700_000_000_500),
        layout::snapshot_chunk(&dir, 3),
        layout::snapshot_manifest(&dir),
        layout::restore_point("before-migration"),
        layout::writer_claim(1, 7, &layout::Writer::Shipper("00ff12ab".into())),
        layout::writer_claim(1, 8, &layout::Writer::RetiredBy(2)),
    ] {
        out.push(with(OBJECT_NAME, key.into_bytes()));
    }
    out
}
