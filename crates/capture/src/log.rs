//! Reading and trimming the change log (for the backup shipper), and how a record's body
//! is stored in the engine.
//!
//! The log is read through engine read views and raw transactions, never through the
//! user API. LSNs are dense (each record's LSN is the previous plus one) except for the
//! jump [`tito_engine::Engine::advance_version`] makes after a restore and for records
//! already trimmed.
//!
//! # Stored body
//!
//! The engine value of a record is `be_u64(time_ms) ++ stored`, where `stored` is the
//! record body itself or, when that is smaller, the body compressed with zstd behind a
//! crc32c checksum ([`tito_format::stored`]). Every byte a commit writes costs disk I/O
//! before it is durable, and a record repeats every key and value of its transaction.

use tito_engine::{Engine, KeyRange, transaction};
use tito_format::record::LogRecord;
use tito_format::stored::{StoredValueError, decode_stored_value};

pub use tito_format::stored::{COMPRESS_MAX, COMPRESSED, COMPRESSED_V1, pack_body};

use crate::keys::{self, display_key};
use crate::{CaptureError, Result};

/// Records (or keys) read from the engine per page.
const PAGE: usize = 256;
/// Log keys deleted per trim transaction.
const TRIM_BATCH: usize = 1000;

/// The LSNs present in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Oldest LSN present.
    pub oldest: u64,
    /// Newest LSN present.
    pub newest: u64,
}

impl LogBounds {
    /// Upper bound of the number of records present (exact while LSNs are dense).
    pub fn max_count(&self) -> u64 {
        self.newest - self.oldest + 1
    }
}

/// Decode one log entry from its engine key and value.
pub fn decode_log_entry(key: &[u8], value: &[u8]) -> Result<LogRecord> {
    decode_entry(key, value).map(|(rec, _)| rec)
}

/// Decode one log entry; also returns the size of its value uncompressed.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<(LogRecord, usize)> {
    let lsn = keys::log_key_lsn(key).ok_or_else(|| CaptureError::BadLogKey {
        key: display_key(key),
    })?;
    decode_stored_value(lsn, value).map_err(|e| match e {
        StoredValueError::Record { source, .. } => CaptureError::CorruptRecord {
            key: display_key(key),
            source,
        },
        StoredValueError::Stored { lsn, source } => CaptureError::CorruptStoredBody {
            lsn,
            key: display_key(key),
            problem: source.to_string(),
        },
    })
}

/// Records with an LSN greater than `after`, in LSN order: at most `max_records`, and
/// stopping once their keys and uncompressed values total `max_bytes` or more (at least
/// one record is returned if any exists, however large). All come from one consistent
/// read view.
pub async fn read_log(
    engine: &dyn Engine,
    after: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<LogRecord>> {
    let view = engine.read_view().await?;
    let mut range = keys::log_range_after(after);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while out.len() < max_records && bytes < max_bytes {
        let page = view.scan(&range, PAGE.min(max_records - out.len())).await?;
        let full = page.len() == PAGE.min(max_records - out.len());
        let Some(last) = page.last().map(|(k, _)| k.clone()) else {
            break;
        };
        for (k, v) in &page {
            let (rec, value_len) = decode_entry(k, v)?;
            out.push(rec);
            bytes = bytes.saturating_add(k.len() + value_len);
            if bytes >= max_bytes {
                break;
            }
        }
        if !full {
            break;
        }
        range = range.after(&last);
    }
    Ok(out)
}

/// Delete every log record with an LSN of at most `through_lsn` that exists when the
/// call starts, in transactions of at most 1000 keys. Returns how many were deleted.
/// Records are immutable once written, so deleting them is a blind write that conflicts
/// with no writer.
pub async fn trim_log(engine: &dyn Engine, through_lsn: u64) -> Result<u64> {
    let view = engine.read_view().await?;
    let full = keys::log_range_through(through_lsn);
    let mut range = full.clone();
    let mut deleted = 0u64;
    loop {
        let page = view.scan(&range, TRIM_BATCH).await?;
        let Some((last, _)) = page.last() else { break };
        let batch = KeyRange {
            start: range.start.clone(),
            end: Some(full.after(last).start),
        };
        transaction(engine, |tx| {
            let batch = batch.clone();
            async move { Ok::<_, CaptureError>(tx.delete_range(&batch)?) }
        })
        .await?;
        deleted += page.len() as u64;
        if page.len() < TRIM_BATCH {
            break;
        }
        range = range.after(last);
    }
    Ok(deleted)
}

/// The oldest and newest LSNs present, or `None` if the log is empty.
pub async fn log_bounds(engine: &dyn Engine) -> Result<Option<LogBounds>> {
    transaction(engine, |tx| async move {
        let range = keys::log_range();
        let first = tx.scan(&range, 1).await?;
        let last = tx.scan_reverse(&range, 1).await?;
        let lsn = |kv: Option<&(Vec<u8>, Vec<u8>)>| -> Result<Option<u64>> {
            kv.map(|(k, _)| {
                keys::log_key_lsn(k).ok_or_else(|| CaptureError::BadLogKey {
                    key: display_key(k),
                })
            })
            .transpose()
        };
        Ok::<_, CaptureError>(match (lsn(first.first())?, lsn(last.first())?) {
            (Some(oldest), Some(newest)) => Some(LogBounds { oldest, newest }),
            _ => None,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tito_format::record::{Mutation, encode_body};

    use super::*;

    fn stored_value(time_ms: u64, body: Vec<u8>) -> Vec<u8> {
        let mut v = time_ms.to_be_bytes().to_vec();
        v.extend_from_slice(&pack_body(body));
        v
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let bytes = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (0..300usize, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ];
        prop_oneof![
            (bytes.clone(), bytes.clone()).prop_map(|(key, value)| Mutation::Put { key, value }),
            bytes.clone().prop_map(|key| Mutation::Delete { key }),
            (bytes.clone(), proptest::option::of(bytes))
                .prop_map(|(start, end)| Mutation::DeleteRange { start, end }),
        ]
    }

    proptest! {
        #[test]
        fn stored_bodies_decode_to_the_record(
            lsn in 1u64..u64::MAX,
            time_ms in any::<u64>(),
            mutations in proptest::collection::vec(mutation(), 0..20),
        ) {
            let body = encode_body(&mutations);
            let stored = pack_body(body.clone());
            prop_assert!(stored.len() <= body.len(), "never larger than the body");
            let rec = decode_log_entry(&keys::log_key(lsn), &stored_value(time_ms, body)).unwrap();
            prop_assert_eq!(rec, LogRecord { lsn, time_ms, mutations });
        }

        #[test]
        fn damaged_compressed_bodies_are_errors(cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mutations = vec![Mutation::Put { key: b"user/1".to_vec(), value: vec![7; 500] }; 3];
            let value = stored_value(5, encode_body(&mutations));
            prop_assert_eq!(value[8], COMPRESSED);
            let key = keys::log_key(9);
            // Truncated anywhere after the marker.
            let truncated = &value[..9 + cut.index(value.len() - 9)];
            prop_assert!(decode_log_entry(&key, truncated).is_err());
            // One bit flipped anywhere after the marker: the checksum catches it, naming the LSN.
            let mut flipped = value.clone();
            let at = 9 + flip.index(value.len() - 9);
            flipped[at] ^= 1 << bit;
            let err = decode_log_entry(&key, &flipped).unwrap_err();
            prop_assert!(matches!(err, CaptureError::CorruptStoredBody { lsn: 9, .. }), "{}", err);
            prop_assert!(err.to_string().contains("LSN 9"), "{}", err);
        }
    }

    #[test]
    fn bench_sized_records_shrink_and_small_ones_stay_plain() {
        let puts: Vec<Mutation> = (0..10)
            .map(|i| Mutation::Put {
                key: format!("user/{i:012}").into_bytes(),
                value: vec![0x5a; 100],
            })
            .collect();
        let body = encode_body(&puts);
        let stored = pack_body(body.clone());
        assert_eq!(stored[0], COMPRESSED);
        assert!(
            stored.len() * 4 < body.len(),
            "{} of {}",
            stored.len(),
            body.len()
        );
        let small = encode_body(&[Mutation::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }]);
        assert_eq!(pack_body(small.clone()), small);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..400)
            .map(|_| {
                // xorshift64*: bytes zstd cannot shrink.
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect();
        let noisy = encode_body(&[Mutation::Put {
            key: b"k".to_vec(),
            value: random,
        }]);
        assert_eq!(
            pack_body(noisy.clone()),
            noisy,
            "incompressible bodies stay plain"
        );
    }

    #[test]
    fn an_oversized_length_is_refused_before_decompressing() {
        // The unchecksummed form of earlier builds: the length is all that guards it.
        let mut value = 1u64.to_be_bytes().to_vec();
        value.push(COMPRESSED_V1);
        tito_format::record::put_varint(&mut value, COMPRESS_MAX as u64 + 1);
        value.extend_from_slice(&[0; 16]);
        let err = decode_log_entry(&keys::log_key(3), &value).unwrap_err();
        assert!(
            matches!(err, CaptureError::CorruptStoredBody { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
