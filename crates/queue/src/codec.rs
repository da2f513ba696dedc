//! Queue keys and values.
//!
//! ```text
//! key   = QUEUE_PREFIX be_u32(partition) be_u64(scheduled_at_ms) id
//! value = version:u8 (= 1) key_len:varint key created_at_ms:varint attempts:varint payload
//! ```
//!
//! Big-endian numbers make a scan of one partition return its events in due order (ties
//! by id). The id is the rest of the key, so it may hold any bytes. In the value, the
//! payload is everything after `attempts`. Varints are unsigned LEB128 (at most 10
//! bytes, no overlong forms), as in the log record format.

use tito_capture::keys::{QUEUE_PREFIX, display_key};
use tito_engine::KeyRange;

use crate::hash::partition_for;
use crate::{QueueError, Result};

/// The value format version this code writes.
pub const VALUE_VERSION: u8 = 1;

const HEAD: usize = QUEUE_PREFIX.len() + 4 + 8;

/// An event to publish, or one read back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Unique id of the event (among events of the same partition and due time).
    pub id: Vec<u8>,
    /// The key the partition is chosen by (events of one key stay in one partition).
    pub key: Vec<u8>,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// When the event was created, in ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the event is due, in ms since the Unix epoch.
    pub scheduled_at_ms: u64,
    /// How many times it was rescheduled.
    pub attempts: u32,
}

impl Event {
    /// An event with no attempts yet.
    pub fn new(
        id: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        payload: impl Into<Vec<u8>>,
        created_at_ms: u64,
        scheduled_at_ms: u64,
    ) -> Event {
        Event {
            id: id.into(),
            key: key.into(),
            payload: payload.into(),
            created_at_ms,
            scheduled_at_ms,
            attempts: 0,
        }
    }
}

/// An event stored in a partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueuedEvent {
    /// The partition holding it.
    pub partition: u32,
    /// The event.
    pub event: Event,
}

impl QueuedEvent {
    /// Its engine key.
    pub fn engine_key(&self) -> Vec<u8> {
        event_key(self.partition, self.event.scheduled_at_ms, &self.event.id)
    }

    /// Its engine value.
    pub fn engine_value(&self) -> Vec<u8> {
        encode_value(&self.event)
    }
}

/// The engine key of an event.
pub fn event_key(partition: u32, scheduled_at_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut k = partition_prefix(partition);
    k.extend_from_slice(&scheduled_at_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

fn partition_prefix(partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(HEAD);
    k.extend_from_slice(QUEUE_PREFIX);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The keys of `partition` due at or before `now_ms`.
pub fn due_range(partition: u32, now_ms: u64) -> KeyRange {
    let all = KeyRange::prefix(&partition_prefix(partition));
    match now_ms.checked_add(1) {
        Some(next) => {
            let mut end = partition_prefix(partition);
            end.extend_from_slice(&next.to_be_bytes());
            KeyRange {
                start: all.start,
                end: Some(end),
            }
        }
        None => all,
    }
}

/// `(partition, scheduled_at_ms, id)` of a queue key.
pub fn decode_key(key: &[u8]) -> Result<(u32, u64, &[u8])> {
    let bad = |problem| QueueError::BadKey {
        key: display_key(key),
        problem,
    };
    let rest = key
        .strip_prefix(QUEUE_PREFIX)
        .ok_or_else(|| bad("not under the queue prefix"))?;
    let (p, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("too short for a partition"))?;
    let (t, id) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("too short for a due time"))?;
    Ok((u32::from_be_bytes(*p), u64::from_be_bytes(*t), id))
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// The value of an event (its id and due time are in the key).
pub fn encode_value(e: &Event) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 10 + e.key.len() + 10 + 5 + e.payload.len());
    v.push(VALUE_VERSION);
    put_varint(&mut v, e.key.len() as u64);
    v.extend_from_slice(&e.key);
    put_varint(&mut v, e.created_at_ms);
    put_varint(&mut v, u64::from(e.attempts));
    v.extend_from_slice(&e.payload);
    v
}

/// Bounds-checked reader of a value.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self, what: &str) -> std::result::Result<u64, (usize, String)> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10u32 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or((start, format!("{what}: truncated varint")))?;
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err((start, format!("{what}: varint overflows 64 bits")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err((start, format!("{what}: overlong varint")));
                }
                return Ok(v);
            }
        }
        Err((start, format!("{what}: varint longer than 10 bytes")))
    }
}

/// Decode an event from its engine key and value.
pub fn decode_event(key: &[u8], value: &[u8]) -> Result<QueuedEvent> {
    let (partition, scheduled_at_ms, id) = decode_key(key)?;
    let bad = |(offset, problem): (usize, String)| QueueError::BadValue {
        key: display_key(key),
        offset,
        problem,
    };
    let version = *value
        .first()
        .ok_or_else(|| bad((0, "empty value".into())))?;
    if version != VALUE_VERSION {
        return Err(bad((
            0,
            format!("unsupported version {version} (expected {VALUE_VERSION})"),
        )));
    }
    let mut r = Reader { buf: value, pos: 1 };
    let at = r.pos;
    let key_len = r.varint("event key length").map_err(bad)?;
    if key_len > (value.len() - r.pos) as u64 {
        return Err(bad((
            at,
            format!(
                "event key of {key_len} bytes, only {} left",
                value.len() - r.pos
            ),
        )));
    }
    let event_key = value[r.pos..r.pos + key_len as usize].to_vec();
    r.pos += key_len as usize;
    let created_at_ms = r.varint("created_at").map_err(bad)?;
    let at = r.pos;
    let attempts = r.varint("attempts").map_err(bad)?;
    let attempts = u32::try_from(attempts)
        .map_err(|_| bad((at, format!("attempts {attempts} exceeds u32"))))?;
    Ok(QueuedEvent {
        partition,
        event: Event {
            id: id.to_vec(),
            key: event_key,
            payload: value[r.pos..].to_vec(),
            created_at_ms,
            scheduled_at_ms,
            attempts,
        },
    })
}

/// The key a stored event gets among `partitions` partitions (restore uses this when
/// the partition count changes). The value is unchanged.
pub fn repartition_key(key: &[u8], value: &[u8], partitions: u32) -> Result<Vec<u8>> {
    let e = decode_event(key, value)?;
    let partition = partition_for(&e.event.key, partitions)?;
    Ok(event_key(partition, e.event.scheduled_at_ms, &e.event.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QueuedEvent {
        QueuedEvent {
            partition: 7,
            event: Event {
                id: b"id-\xff".to_vec(),
                key: b"order-42".to_vec(),
                payload: vec![0, 1, 2, 255],
                created_at_ms: 1_700_000_000_000,
                scheduled_at_ms: 1_700_000_005_000,
                attempts: 3,
            },
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let q = sample();
        let (k, v) = (q.engine_key(), q.engine_value());
        assert_eq!(decode_event(&k, &v).unwrap(), q);
        let mut expected = QUEUE_PREFIX.to_vec();
        expected.extend_from_slice(&[0, 0, 0, 7]);
        expected.extend_from_slice(&1_700_000_005_000u64.to_be_bytes());
        expected.extend_from_slice(b"id-\xff");
        assert_eq!(k, expected);
        assert_eq!(&v[..10], b"\x01\x08order-42");
        assert!(due_range(7, 1_700_000_005_000).contains(&k));
        assert!(!due_range(7, 1_700_000_004_999).contains(&k));
        assert!(!due_range(6, u64::MAX).contains(&k));
        assert!(due_range(7, u64::MAX).contains(&k));
    }

    #[test]
    fn corrupt_values_and_keys_are_errors() {
        let q = sample();
        let (k, v) = (q.engine_key(), q.engine_value());
        // Every strict prefix that cuts into the header fails; none panics.
        for n in 0..v.len() {
            let r = decode_event(&k, &v[..n]);
            if n < 12 {
                assert!(r.is_err(), "prefix {n}");
            }
        }
        let mut bad = v.clone();
        bad[0] = 9;
        let msg = decode_event(&k, &bad).unwrap_err().to_string();
        assert!(
            msg.contains("unsupported version 9") && msg.contains("offset 0"),
            "{msg}"
        );
        assert!(decode_event(b"user-key", &v).is_err());
        assert!(decode_event(&k[..QUEUE_PREFIX.len() + 6], &v).is_err());
    }
}
