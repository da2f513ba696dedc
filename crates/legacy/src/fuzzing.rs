//! The check function of the fuzz target `legacy_chunk` (`fuzz/fuzz_targets/`), replayed
//! over its kept corpus by `tests/fuzz_corpus.rs` (through `tito_format::fuzz_corpus`).
//!
//! A chunk of an old backup root is the one decoder of stored bytes this crate adds
//! ([`crate::chunk`]: gzip, then a JSON array of the original's entries, read one entry at
//! a time). The first input byte picks a mode: `0` feeds the rest as the chunk's bytes;
//! `1` gzips the rest first, so the fuzzer reaches the JSON behind the gzip framing. Both
//! decoders (state and events) read every input. Checks: nothing panics; the count a
//! decoder returns is the number of entries it handed out; a callback that stops early is
//! reported as stopped; what decodes encodes back (gzip'd JSON) to entries that decode the
//! same.
//!
//! Not a stable API: for the fuzz targets and tests only.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::chunk::{ChangelogEntry, EventChangelogEntry, StateOp, read_events, read_state};

const KEY: &str = "state/partial/1700000000/chunk-0000.json.gz";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// The fuzz target `legacy_chunk` (see the module docs).
pub fn legacy_chunk(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        gzip(rest)
    };
    state(&bytes);
    events(&bytes);
}

fn state(bytes: &[u8]) {
    let mut ops = Vec::new();
    let Ok(done) = read_state(bytes, KEY, |op| {
        ops.push(op);
        Ok(())
    }) else {
        return;
    };
    assert_eq!(done.expect("never stopped"), ops.len() as u64);
    if !ops.is_empty() {
        let stopped = read_state(bytes, KEY, |_| Err(crate::chunk::Stopped));
        assert!(matches!(stopped, Ok(Err(_))), "a stop is reported");
    }
    // Puts and deletes, written again as the original wrote them, decode the same.
    let kept: Vec<StateOp> = ops
        .into_iter()
        .filter(|op| matches!(op, StateOp::Put { .. } | StateOp::Delete { .. }))
        .collect();
    let entries: Vec<ChangelogEntry> = kept
        .iter()
        .map(|op| match op {
            StateOp::Put { key, value } => ChangelogEntry {
                op: "put".into(),
                key: key.clone(),
                data: Some(serde_json::from_slice(value).expect("a put's value is JSON")),
            },
            StateOp::Delete { key } => ChangelogEntry {
                op: "delete".into(),
                key: key.clone(),
                data: None,
            },
            _ => unreachable!("filtered"),
        })
        .collect();
    let again = gzip(&serde_json::to_vec(&entries).expect("entries encode"));
    let mut back = Vec::new();
    read_state(&again, KEY, |op| {
        back.push(op);
        Ok(())
    })
    .expect("re-encoded chunk decodes")
    .expect("never stopped");
    assert_eq!(back, kept, "state round trip");
}

fn events(bytes: &[u8]) {
    let mut entries = Vec::new();
    let Ok(done) = read_events(bytes, KEY, |e| {
        entries.push(e);
        Ok(())
    }) else {
        return;
    };
    assert_eq!(done.expect("never stopped"), entries.len() as u64);
    let again = gzip(&serde_json::to_vec(&entries).expect("entries encode"));
    let mut back: Vec<EventChangelogEntry> = Vec::new();
    read_events(&again, KEY, |e| {
        back.push(e);
        Ok(())
    })
    .expect("re-encoded chunk decodes")
    .expect("never stopped");
    let json = |v: &[EventChangelogEntry]| serde_json::to_value(v).expect("entries encode");
    assert_eq!(json(&back), json(&entries), "events round trip");
}

/// Valid inputs: chunks as the original writer wrote them (state with puts and deletes,
/// events), raw and as mode-1 JSON.
pub fn legacy_chunk_seeds() -> Vec<Vec<u8>> {
    let state = br#"[{"op":"put","key":"user:1","data":{"name":"ada","n":1}},{"op":"delete","key":"user:2","data":null},{"op":"put","key":"k","data":[1,"two",null]}]"#;
    let events = br#"[{"event_id":"e1","event_key":"order:7","created_at":1700000000,"scheduled_at":1700000005,"max_retries":3,"data":{"total":12.5}}]"#;
    let mut out = Vec::new();
    for json in [&state[..], &events[..], b"[]"] {
        let mut raw = vec![0];
        raw.extend_from_slice(&gzip(json));
        out.push(raw);
        let mut plain = vec![1];
        plain.extend_from_slice(json);
        out.push(plain);
    }
    out
}
