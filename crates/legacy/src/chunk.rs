//! Decoding one chunk: a gzip'd JSON array of entries, read entry by entry (a chunk is
//! never held decoded in memory).
//!
//! State chunks hold `{"op":"put"|"delete","key":..,"data":..}` entries, event chunks
//! `{"event_id","event_key","created_at","scheduled_at","max_retries","data"}`, as the
//! original's serde types wrote and read them (unknown fields ignored, a missing `data` of
//! a state entry is `null`).

use std::fmt;
use std::io::BufReader;

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::LegacyError;

/// The original's state entry.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct ChangelogEntry {
    /// `put` or `delete` (anything else was ignored by the original's restore).
    pub op: String,
    /// The key.
    pub key: String,
    /// The value of a put.
    pub data: Option<Value>,
}

/// The original's event entry.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct EventChangelogEntry {
    /// The event id.
    pub event_id: String,
    /// The key its partition was chosen by.
    pub event_key: String,
    /// Creation time (the original did not say in which unit).
    pub created_at: i64,
    /// Due time (same).
    pub scheduled_at: i64,
    /// Retry limit (Tito's queue has none per event).
    pub max_retries: u32,
    /// The payload.
    pub data: Value,
}

/// What one state entry does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateOp {
    /// Write the compact JSON of `data` at `key`.
    Put {
        /// The key.
        key: String,
        /// `serde_json::to_vec(&data)`, as the original's restore wrote it.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// A put without data, which the original's restore skipped.
    PutWithoutData,
    /// An op the original's restore ignored.
    Unknown,
}

impl StateOp {
    /// What the original's restore did with `entry`.
    pub fn of(entry: ChangelogEntry) -> StateOp {
        match (entry.op.as_str(), entry.data) {
            ("put", Some(data)) => StateOp::Put {
                key: entry.key,
                // A Value always serializes.
                value: serde_json::to_vec(&data).unwrap_or_default(),
            },
            ("put", None) => StateOp::PutWithoutData,
            ("delete", _) => StateOp::Delete { key: entry.key },
            _ => StateOp::Unknown,
        }
    }
}

/// Why a callback stopped the decoding (not a problem of the chunk).
#[derive(Debug)]
pub struct Stopped;

/// Decode the state chunk `bytes` (object `key`), calling `f` with each entry's op in
/// order. Returns the number of entries, or why the chunk is malformed.
pub fn read_state(
    bytes: &[u8],
    key: &str,
    mut f: impl FnMut(StateOp) -> Result<(), Stopped>,
) -> Result<Result<u64, Stopped>, LegacyError> {
    read_array::<ChangelogEntry>(bytes, key, &mut |e| f(StateOp::of(e)))
}

/// Decode the event chunk `bytes` (object `key`), calling `f` with each entry in order.
pub fn read_events(
    bytes: &[u8],
    key: &str,
    mut f: impl FnMut(EventChangelogEntry) -> Result<(), Stopped>,
) -> Result<Result<u64, Stopped>, LegacyError> {
    read_array::<EventChangelogEntry>(bytes, key, &mut f)
}

/// The JSON array of `T` in the gzip'd `bytes`, one element at a time. The outer result
/// says whether the chunk is well formed; the inner one whether `f` stopped early.
fn read_array<T: DeserializeOwned>(
    bytes: &[u8],
    key: &str,
    f: &mut dyn FnMut(T) -> Result<(), Stopped>,
) -> Result<Result<u64, Stopped>, LegacyError> {
    let reader = BufReader::with_capacity(64 << 10, GzDecoder::new(bytes));
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut stopped = false;
    let visitor = Elements {
        f,
        stopped: &mut stopped,
        _t: std::marker::PhantomData,
    };
    let bad = |e: serde_json::Error| LegacyError::Damaged {
        key: key.to_string(),
        reason: if e.is_io() {
            format!("not valid gzip ({e})")
        } else {
            format!("not a JSON array of the original's entries ({e})")
        },
    };
    let counted = serde::Deserializer::deserialize_seq(&mut de, visitor);
    if stopped {
        return Ok(Err(Stopped));
    }
    let n = counted.map_err(bad)?;
    de.end().map_err(bad)?;
    Ok(Ok(n))
}

struct Elements<'a, T> {
    f: &'a mut dyn FnMut(T) -> Result<(), Stopped>,
    stopped: &'a mut bool,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Elements<'_, T> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while let Some(entry) = seq.next_element::<T>()? {
            n += 1;
            if (self.f)(entry).is_err() {
                *self.stopped = true;
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn ops(text: &str) -> Result<Vec<StateOp>, String> {
        let mut out = Vec::new();
        read_state(&gz(text), "c", |op| {
            out.push(op);
            Ok(())
        })
        .map_err(|e| e.to_string())?
        .unwrap();
        Ok(out)
    }

    #[test]
    fn entries_as_the_original_restore_read_them() {
        let got = ops(
            r#"[{"op":"put","key":"table:a","data":{ "b" : 1, "a": [1.0, "x"] }},
               {"op":"delete","key":"table:b","data":null},
               {"op":"delete","key":"table:c"},
               {"op":"put","key":"table:d","data":null},
               {"op":"merge","key":"table:e","data":1,"extra":true}]"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                // Compact, object keys in serde_json's order (sorted).
                StateOp::Put {
                    key: "table:a".into(),
                    value: br#"{"a":[1.0,"x"],"b":1}"#.to_vec()
                },
                StateOp::Delete {
                    key: "table:b".into()
                },
                StateOp::Delete {
                    key: "table:c".into()
                },
                StateOp::PutWithoutData,
                StateOp::Unknown,
            ]
        );
        assert_eq!(ops("[]").unwrap(), vec![]);
    }

    #[test]
    fn malformed_chunks_name_the_object() {
        for bad in [
            "",
            "{}",
            "[{\"op\":\"put\"}]",
            "[{\"op\":\"put\",\"key\":1}]",
            "[1,2]",
            "[{\"op\":\"put\",\"key\":\"k\",\"data\":1}",
            "[] []",
        ] {
            let e = ops(bad).unwrap_err();
            assert!(e.contains("chunk c is malformed"), "{bad}: {e}");
        }
        let e = read_state(b"not gzip", "c", |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");
        // A chunk cut short.
        let whole = gz(r#"[{"op":"put","key":"k","data":1}]"#);
        let e = read_state(&whole[..whole.len() - 6], "c", |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
    }

    #[test]
    fn a_callback_stops_the_decoding() {
        let text = r#"[{"op":"delete","key":"a"},{"op":"delete","key":"b"}]"#;
        let mut seen = 0;
        let r = read_state(&gz(text), "c", |_| {
            seen += 1;
            Err(Stopped)
        })
        .unwrap();
        assert!(r.is_err());
        assert_eq!(seen, 1);
    }
}
