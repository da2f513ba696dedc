//! The generated dataset: UTF-8 keys under the original design's `table:` prefix and JSON
//! object values of an exact size, deterministic for a seed, generated in any slice.
//!
//! What the values look like decides every size ratio, so the kind is an option
//! ([`ValueKind`]): `orders` (the default) are rows of an order table as applications
//! store them, with the redundancy such rows have (customers and products recur across
//! rows, timestamps grow, notes come from templates); `words` is uniform text over a
//! 32-word vocabulary, where every byte saved is entropy coding; `random` is a random
//! base64 string, which no compressor shrinks below 6 bits a character.

use clap::ValueEnum;
use serde::Serialize;
use tito_engine::{Engine, KeyRange, KeyValue};

use crate::error::{Ctx, Result};

/// Prefix of every dataset key: the original design backed up `table:` keys only.
pub const KEY_PREFIX: &str = "table:bench:";

/// What the generated JSON values contain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueKind {
    /// Order rows: customer (one of keys/20), 1–3 line items (more in values over 1 KiB;
    /// fewer where they do not fit) from a 5,000-product catalogue where popular products
    /// recur, a growing timestamp, a status and a note of template phrases that pads the
    /// value to the size asked.
    #[default]
    Orders,
    /// Random words from a 32-word vocabulary after a few numeric fields.
    Words,
    /// A random base64 string after the id: incompressible beyond 6 bits a character.
    Random,
}

/// Words the `words` kind draws its text from, uniformly.
const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "order", "shipped", "pending",
    "invoice", "refund", "parcel",
];
const STATUSES: [&str; 4] = ["pending", "paid", "shipped", "returned"];
const FIRST: [&str; 24] = [
    "Ada", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kim",
    "Leila", "Marco", "Nina", "Omar", "Paula", "Quentin", "Rosa", "Sam", "Tara", "Umar", "Vera",
    "Wen", "Yusuf",
];
const LAST: [&str; 24] = [
    "Almeida", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt",
    "Tanaka", "Usman", "Varga", "Weber", "Zhang",
];
const CITIES: [&str; 16] = [
    "Lisbon", "Berlin", "Lyon", "Austin", "Osaka", "Lagos", "Krakow", "Turin", "Oslo", "Denver",
    "Porto", "Leeds", "Ghent", "Quebec", "Seville", "Utrecht",
];
const ADJECTIVES: [&str; 16] = [
    "Compact", "Classic", "Deluxe", "Eco", "Foldable", "Heavy", "Large", "Light", "Mini", "Modern",
    "Premium", "Rugged", "Slim", "Smart", "Vintage", "Wireless",
];
const MATERIALS: [&str; 8] = [
    "Steel", "Oak", "Cotton", "Glass", "Leather", "Bamboo", "Ceramic", "Wool",
];
const PRODUCTS: [&str; 20] = [
    "Kettle", "Lamp", "Chair", "Backpack", "Mug", "Blanket", "Desk", "Speaker", "Jacket", "Bottle",
    "Shelf", "Pan", "Clock", "Rug", "Vase", "Wallet", "Stool", "Tray", "Scarf", "Toaster",
];
/// Template phrases of order notes (customers and agents reuse a handful of them).
const PHRASES: [&str; 24] = [
    "leave at the front door",
    "gift wrap please",
    "call before delivery",
    "customer asked for an invoice",
    "address confirmed by phone",
    "second attempt scheduled",
    "deliver after 6 pm",
    "fragile, handle with care",
    "ring the bell twice",
    "use the side entrance",
    "refund issued for one item",
    "replacement shipped",
    "payment retried successfully",
    "express shipping upgrade",
    "loyalty discount applied",
    "pickup at the locker",
    "no signature required",
    "split into two parcels",
    "customer changed the size",
    "waiting for stock",
    "backorder cleared",
    "address updated by support",
    "return label sent",
    "delivered to a neighbour",
];
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Products in the catalogue of the `orders` kind.
const CATALOGUE: u64 = 5_000;
/// Timestamp of order 0 (2023-11-14, ms).
const EPOCH_MS: u64 = 1_700_000_000_000;

/// A dataset of `keys` pairs whose values are `value_size`-byte JSON objects.
#[derive(Clone, Copy, Debug)]
pub struct Dataset {
    /// Number of keys.
    pub keys: u64,
    /// Bytes of each value (values are never shorter than their fixed fields: about 80
    /// bytes for `words`, 170 for `orders`, 30 for `random`).
    pub value_size: usize,
    /// Seed.
    pub seed: u64,
    /// What the values contain.
    pub values: ValueKind,
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
    /// updates of the shipping and RPO workloads). Object keys appear in sorted order and
    /// there is no whitespace, so the original design's parse-and-reserialize returns the
    /// same bytes.
    pub fn value(&self, i: u64, version: u64) -> Vec<u8> {
        let mut rng = Rng::new(self.seed ^ mix(i) ^ version.rotate_left(32));
        match self.values {
            ValueKind::Orders => self.order(i, version, &mut rng),
            ValueKind::Words => self.words(i, version, &mut rng),
            ValueKind::Random => self.random(i, version, &mut rng),
        }
    }

    fn words(&self, i: u64, version: u64, rng: &mut Rng) -> Vec<u8> {
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
        let text = fill(room, || WORDS[rng.below(WORDS.len() as u64) as usize]);
        [head.as_bytes(), text.as_bytes(), tail.as_bytes()].concat()
    }

    fn order(&self, i: u64, version: u64, rng: &mut Rng) -> Vec<u8> {
        let customers = (self.keys / 20).max(1);
        let c = rng.below(customers);
        let at = EPOCH_MS + i * 1_000 + rng.below(1_000) + version * 60_000;
        let mut head = format!(
            "{{\"at\":{at},\"cust\":{{\"city\":\"{}\",\"id\":{c},\"name\":\"{} {}\"}},\"id\":{i},\"items\":[",
            CITIES[(mix(c) % CITIES.len() as u64) as usize],
            FIRST[(c % FIRST.len() as u64) as usize],
            LAST[((c / FIRST.len() as u64) % LAST.len() as u64) as usize],
        );
        let status = match rng.below(10) {
            0 => "pending",
            1 => "returned",
            2..=4 => "shipped",
            _ => "delivered",
        };
        // Larger values hold more line items before the note pads them.
        let wanted = 1 + rng.below(3) + (self.value_size / 1024) as u64;
        let mut total = 0;
        let mut items = 0;
        let tail_room = r#"],"note":"","status":"delivered","total":9999999999,"v":99999}"#.len();
        while items < wanted {
            // Popular products recur: a skewed pick from the catalogue.
            let popular = rng.below(CATALOGUE) + 1;
            let sku = rng.below(popular);
            let unit = 199 + mix(sku) % 20_000;
            let qty = 1 + rng.below(3);
            let item = format!(
                "{}{{\"qty\":{qty},\"sku\":\"SKU-{sku:05}\",\"title\":\"{} {} {}\",\"unit\":{unit}}}",
                if items > 0 { "," } else { "" },
                ADJECTIVES[(sku % 16) as usize],
                MATERIALS[((sku / 16) % 8) as usize],
                PRODUCTS[((sku / 128) % 20) as usize],
            );
            // Items go in only where they fit: a small value is an order without lines.
            if head.len() + item.len() + tail_room > self.value_size {
                break;
            }
            head.push_str(&item);
            total += unit * qty;
            items += 1;
        }
        head.push_str("],\"note\":\"");
        let tail = format!("\",\"status\":\"{status}\",\"total\":{total},\"v\":{version}}}");
        let room = self.value_size.saturating_sub(head.len() + tail.len());
        let text = fill(room, || PHRASES[rng.below(PHRASES.len() as u64) as usize]);
        [head.as_bytes(), text.as_bytes(), tail.as_bytes()].concat()
    }

    fn random(&self, i: u64, version: u64, rng: &mut Rng) -> Vec<u8> {
        let head = b"{\"blob\":\"";
        let tail = format!("\",\"id\":{i},\"v\":{version}}}");
        let room = self.value_size.saturating_sub(head.len() + tail.len());
        let mut v = head.to_vec();
        let mut bits = 0u64;
        for n in 0..room {
            if n % 10 == 0 {
                bits = rng.next();
            }
            v.push(BASE64[(bits & 63) as usize]);
            bits >>= 6;
        }
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

/// Text of exactly `room` bytes: pieces from `next` joined by spaces, the last one cut.
fn fill<'a>(room: usize, mut next: impl FnMut() -> &'a str) -> String {
    let mut text = String::with_capacity(room + 40);
    while text.len() < room {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(next());
    }
    text.truncate(room);
    text
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

    fn kinds() -> [ValueKind; 3] {
        [ValueKind::Orders, ValueKind::Words, ValueKind::Random]
    }

    #[test]
    fn values_are_json_of_the_exact_size_and_round_trip_through_serde_json() {
        for values in kinds() {
            for value_size in [200, 256, 1000, 5000] {
                let d = Dataset {
                    keys: 500,
                    value_size,
                    seed: 7,
                    values,
                };
                for i in (0..500).step_by(7) {
                    for version in [0, 3] {
                        let v = d.value(i, version);
                        let what = format!("{values:?} size {value_size} value {i}");
                        assert_eq!(v.len(), value_size, "{what}");
                        let parsed: serde_json::Value = serde_json::from_slice(&v).expect(&what);
                        assert_eq!(serde_json::to_vec(&parsed).expect("encode"), v, "{what}");
                        assert_eq!(parsed["id"], i, "{what}");
                    }
                }
                assert_eq!(d.value(3, 0), d.value(3, 0), "deterministic");
                assert_ne!(d.value(3, 0), d.value(3, 1), "versions differ");
                assert_ne!(
                    d.value(3, 0),
                    Dataset { seed: 8, ..d }.value(3, 0),
                    "seeds differ"
                );
            }
        }
    }

    #[test]
    fn small_sizes_give_the_fixed_fields_only() {
        for values in kinds() {
            let d = Dataset {
                keys: 10,
                value_size: 1,
                seed: 1,
                values,
            };
            let v = d.value(4, 0);
            assert!(v.len() < 200, "{values:?}: {}", v.len());
            serde_json::from_slice::<serde_json::Value>(&v).expect("json");
        }
    }

    #[test]
    fn orders_repeat_customers_and_products_and_fill_with_more_items_when_large() {
        let d = Dataset {
            keys: 2_000,
            value_size: 4096,
            seed: 3,
            values: ValueKind::Orders,
        };
        let mut customers = std::collections::HashSet::new();
        let mut skus = std::collections::HashMap::new();
        for i in 0..2_000 {
            let row: serde_json::Value = serde_json::from_slice(&d.value(i, 0)).expect("json");
            customers.insert(row["cust"]["id"].as_u64().expect("customer id"));
            let items = row["items"].as_array().expect("items");
            assert!(items.len() >= 4, "a 4 KiB order holds more items: {row}");
            let mut total = 0;
            for item in items {
                let sku = item["sku"].as_str().expect("sku").to_string();
                let title = item["title"].as_str().expect("title").to_string();
                // One product, one title and price, wherever it appears.
                let seen = skus
                    .entry(sku)
                    .or_insert((title.clone(), item["unit"].clone()));
                assert_eq!(seen, &(title, item["unit"].clone()));
                total += item["unit"].as_u64().expect("unit") * item["qty"].as_u64().expect("qty");
            }
            assert_eq!(row["total"], total, "{row}");
        }
        assert!(
            customers.len() <= 100,
            "keys/20 customers: {}",
            customers.len()
        );
        assert!(skus.len() < 2_000 * 4, "products recur: {}", skus.len());
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert!(Dataset::key(9) < Dataset::key(10));
        assert!(Dataset::key(999_999) < Dataset::key(1_000_000));
    }
}
