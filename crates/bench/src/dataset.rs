//! The generated dataset: UTF-8 keys under the original design's `table:` prefix and JSON
//! object values of an exact size, deterministic for a seed, generated in any slice.

use tito_engine::{Engine, KeyRange, KeyValue};

use crate::error::{Ctx, Result};

/// Prefix of every dataset key: the original design backed up `table:` keys only.
pub const KEY_PREFIX: &str = "table:bench:";

/// Words the `note` field is made of: JSON rows of real applications repeat field names
/// and draw text from a small vocabulary, so this compresses like such rows do.
const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "order", "shipped", "pending",
    "invoice", "refund", "parcel",
];
const STATUSES: [&str; 4] = ["pending", "paid", "shipped", "returned"];

/// A dataset of `keys` pairs whose values are `value_size`-byte JSON objects.
#[derive(Clone, Copy, Debug)]
pub struct Dataset {
    /// Number of keys.
    pub keys: u64,
    /// Bytes of each value (values are never shorter than their fixed fields, ~80 bytes).
    pub value_size: usize,
    /// Seed.
    pub seed: u64,
}

/// splitmix64: a tiny PRNG with a fixed definition, so a seed gives the same dataset on
/// every build (rand's generators may change between releases).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic stream of random numbers.
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(mix(seed))
    }
    /// The next number.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }
    /// A number below `n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

impl Dataset {
    /// The key of pair `i`.
    pub fn key(i: u64) -> Vec<u8> {
        format!("{KEY_PREFIX}{i:010}").into_bytes()
    }

    /// The value of pair `i` at `version` (0 for the initial load; later versions are the
    /// updates of the shipping and RPO workloads). Keys appear in sorted order and there is
    /// no whitespace, so the original design's parse-and-reserialize returns the same bytes.
    pub fn value(&self, i: u64, version: u64) -> Vec<u8> {
        let mut rng = Rng::new(self.seed ^ mix(i) ^ version.rotate_left(32));
        let head = format!(
            "{{\"amount\":{},\"customer\":\"cust-{:05}\",\"id\":{i},\"note\":\"",
            rng.below(1_000_000),
            rng.below(100_000)
        );
        let tail = format!(
            "\",\"status\":\"{}\",\"version\":{version}}}",
            STATUSES[rng.below(4) as usize]
        );
        let room = self.value_size.saturating_sub(head.len() + tail.len());
        let mut note = String::with_capacity(room + 10);
        while note.len() < room {
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        note.truncate(room);
        let mut v = head.into_bytes();
        v.extend_from_slice(note.as_bytes());
        v.extend_from_slice(tail.as_bytes());
        v
    }

    /// Pairs `start..end` (clamped to the dataset).
    pub fn pairs(&self, start: u64, end: u64) -> Vec<KeyValue> {
        (start..end.min(self.keys))
            .map(|i| (Self::key(i), self.value(i, 0)))
            .collect()
    }

    /// Key and value bytes of the whole dataset.
    pub fn raw_bytes(&self) -> u64 {
        (0..self.keys)
            .map(|i| (Self::key(i).len() + self.value(i, 0).len()) as u64)
            .sum()
    }

    /// Load the dataset into `engine` with `bulk_load`, `batch` pairs at a time (the
    /// database's contents before any measurement; not timed).
    pub async fn load(&self, engine: &dyn Engine, batch: u64) -> Result<()> {
        let mut start = 0;
        while start < self.keys {
            let end = (start + batch.max(1)).min(self.keys);
            engine.bulk_load(self.pairs(start, end)).await.ctx("load")?;
            start = end;
        }
        Ok(())
    }
}

/// Count and blake3 digest of every pair under [`KEY_PREFIX`] in `engine`: two engines
/// hold the same dataset exactly when both agree.
pub async fn digest(engine: &dyn Engine) -> Result<(u64, [u8; 32])> {
    let view = engine.read_view().await.ctx("verify")?;
    let mut range = KeyRange::prefix(KEY_PREFIX.as_bytes());
    let mut hasher = blake3::Hasher::new();
    let mut count = 0u64;
    loop {
        let page = view.scan(&range, 10_000).await.ctx("verify")?;
        let Some((last, _)) = page.last() else { break };
        range = range.after(last);
        for (k, v) in &page {
            hasher.update(&(k.len() as u64).to_le_bytes());
            hasher.update(k);
            hasher.update(&(v.len() as u64).to_le_bytes());
            hasher.update(v);
            count += 1;
        }
    }
    Ok((count, *hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_of_the_exact_size_and_round_trip_through_serde_json() {
        let d = Dataset {
            keys: 50,
            value_size: 200,
            seed: 7,
        };
        for i in 0..50 {
            let v = d.value(i, 0);
            assert_eq!(v.len(), 200, "value {i}");
            let parsed: serde_json::Value = serde_json::from_slice(&v).expect("json");
            assert_eq!(serde_json::to_vec(&parsed).expect("encode"), v, "value {i}");
        }
        assert_eq!(d.value(3, 0), d.value(3, 0), "deterministic");
        assert_ne!(d.value(3, 0), d.value(3, 1), "versions differ");
        assert_ne!(
            d.value(3, 0),
            Dataset { seed: 8, ..d }.value(3, 0),
            "seeds differ"
        );
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert!(Dataset::key(9) < Dataset::key(10));
        assert!(Dataset::key(999_999) < Dataset::key(1_000_000));
    }
}
