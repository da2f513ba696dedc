//! Object names of an old backup root, and listing one.
//!
//! ```text
//! state/full/<secs>/chunk-NNNN.json.gz      a full backup, started at <secs>
//! state/partial/<secs>/chunk-NNNN.json.gz   a shipping run of the change log
//! events/<secs>/chunk-NNNN.json.gz          a shipping run of the event log
//! LATEST_STATE_FULL                         <secs> of the last full backup that completed
//! LATEST_STATE_PARTIAL, LATEST_EVENTS       <ms> of the start of the last run that completed
//! ```
//!
//! Keys are relative to the store URL given, which must be the original's `backup_root`.
//! `NNNN` is `{:04}`: five digits and more past chunk 9999.

use futures::TryStreamExt;
use serde::Serialize;
use tito_store::Store;

use crate::error::LegacyError;

/// Where full backups are.
pub const FULL: &str = "state/full/";
/// Where partial (change log) chunks are.
pub const PARTIAL: &str = "state/partial/";
/// Where event chunks are.
pub const EVENTS: &str = "events/";
/// Marker of the last completed full backup (seconds).
pub const MARKER_FULL: &str = "LATEST_STATE_FULL";
/// Marker of the last completed change-log run (milliseconds).
pub const MARKER_PARTIAL: &str = "LATEST_STATE_PARTIAL";
/// Marker of the last completed event-log run (milliseconds).
pub const MARKER_EVENTS: &str = "LATEST_EVENTS";

/// Which series a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `state/full/`.
    Full,
    /// `state/partial/`.
    Partial,
    /// `events/`.
    Events,
}

impl Kind {
    /// The key prefix of the series.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Full => FULL,
            Kind::Partial => PARTIAL,
            Kind::Events => EVENTS,
        }
    }
}

/// One chunk object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChunkObject {
    /// Its series.
    pub kind: Kind,
    /// The run's second (the directory name).
    pub secs: i64,
    /// The chunk number.
    pub seq: u64,
    /// The object key.
    pub key: String,
    /// Compressed size.
    pub size: u64,
    /// Last modification time (ms), as the store reports it.
    pub modified_ms: u64,
}

/// What an object name means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// A chunk: series, second, number.
    Chunk(Kind, i64, u64),
    /// One of the three markers.
    Marker(&'static str),
    /// Anything else.
    Other,
}

/// Parse an object key of an old root.
pub fn parse(key: &str) -> Name {
    for m in [MARKER_FULL, MARKER_PARTIAL, MARKER_EVENTS] {
        if key == m {
            return Name::Marker(m);
        }
    }
    for kind in [Kind::Full, Kind::Partial, Kind::Events] {
        let Some(rest) = key.strip_prefix(kind.prefix()) else {
            continue;
        };
        let Some((dir, file)) = rest.split_once('/') else {
            return Name::Other;
        };
        let seq = file
            .strip_prefix("chunk-")
            .and_then(|f| f.strip_suffix(".json.gz"))
            .filter(|n| digits(n))
            .and_then(|n| n.parse::<u64>().ok());
        return match (digits(dir).then(|| dir.parse::<i64>().ok()).flatten(), seq) {
            (Some(secs), Some(seq)) => Name::Chunk(kind, secs, seq),
            _ => Name::Other,
        };
    }
    Name::Other
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The markers, normalized: the full marker in seconds, the others in milliseconds (the
/// original read a value below 10^12 as seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Markers {
    /// `LATEST_STATE_FULL`, seconds.
    pub full_secs: Option<i64>,
    /// `LATEST_STATE_PARTIAL`, milliseconds.
    pub partial_ms: Option<i64>,
    /// `LATEST_EVENTS`, milliseconds.
    pub events_ms: Option<i64>,
}

/// Everything listed under a root.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Chunks of each series, sorted by (second, number, key).
    pub full: Vec<ChunkObject>,
    /// See `full`.
    pub partial: Vec<ChunkObject>,
    /// See `full`.
    pub events: Vec<ChunkObject>,
    /// The markers.
    pub markers: Markers,
    /// Objects under the three series that are not chunk names (the original's restore
    /// applied any `.json.gz` among them; this import ignores them and says so).
    pub ignored: Vec<String>,
    /// The store, for messages.
    pub store: String,
}

impl Inventory {
    /// The chunks of `kind`.
    pub fn chunks(&self, kind: Kind) -> &[ChunkObject] {
        match kind {
            Kind::Full => &self.full,
            Kind::Partial => &self.partial,
            Kind::Events => &self.events,
        }
    }

    /// True if nothing the original writes is there.
    pub fn is_empty(&self) -> bool {
        self.full.is_empty()
            && self.partial.is_empty()
            && self.events.is_empty()
            && self.markers == Markers::default()
    }
}

/// List the root: the three series and the markers (read and parsed).
pub async fn read_inventory(store: &dyn Store) -> Result<Inventory, LegacyError> {
    let mut inv = Inventory {
        store: store.describe(),
        ..Inventory::default()
    };
    for kind in [Kind::Full, Kind::Partial, Kind::Events] {
        let mut listing = store.list(kind.prefix());
        let mut chunks = Vec::new();
        while let Some(obj) = listing.try_next().await? {
            match parse(&obj.key) {
                Name::Chunk(k, secs, seq) if k == kind => chunks.push(ChunkObject {
                    kind,
                    secs,
                    seq,
                    key: obj.key,
                    size: obj.size,
                    modified_ms: obj.last_modified_ms,
                }),
                _ => inv.ignored.push(obj.key),
            }
        }
        chunks.sort_by(|a, b| (a.secs, a.seq, &a.key).cmp(&(b.secs, b.seq, &b.key)));
        match kind {
            Kind::Full => inv.full = chunks,
            Kind::Partial => inv.partial = chunks,
            Kind::Events => inv.events = chunks,
        }
    }
    inv.markers = Markers {
        full_secs: read_marker(store, MARKER_FULL)
            .await?
            .map(|v| if v >= 1_000_000_000_000 { v / 1000 } else { v }),
        partial_ms: read_marker(store, MARKER_PARTIAL).await?.map(to_ms),
        events_ms: read_marker(store, MARKER_EVENTS).await?.map(to_ms),
    };
    Ok(inv)
}

/// A marker value in milliseconds, as the original read it.
fn to_ms(v: i64) -> i64 {
    if v < 1_000_000_000_000 {
        v.saturating_mul(1000)
    } else {
        v
    }
}

/// A marker's integer, `None` if absent. Unlike the original (which took an unreadable
/// marker for a missing one), an unreadable marker is an error.
async fn read_marker(store: &dyn Store, key: &str) -> Result<Option<i64>, LegacyError> {
    let bytes = match store.get(key).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bad = |reason: String| LegacyError::BadMarker {
        key: key.to_string(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let v = text
        .trim()
        .parse::<i64>()
        .map_err(|_| bad(format!("{:?} is not a whole number", truncate(text.trim()))))?;
    if v < 0 {
        return Err(bad(format!("{v} is before 1970")));
    }
    Ok(Some(v))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse("state/full/1700000000/chunk-0003.json.gz"),
            Name::Chunk(Kind::Full, 1_700_000_000, 3)
        );
        assert_eq!(
            parse("state/partial/17/chunk-10000.json.gz"),
            Name::Chunk(Kind::Partial, 17, 10_000)
        );
        assert_eq!(
            parse("events/5/chunk-0000.json.gz"),
            Name::Chunk(Kind::Events, 5, 0)
        );
        assert_eq!(parse("LATEST_EVENTS"), Name::Marker(MARKER_EVENTS));
        for other in [
            "state/full/x/chunk-0000.json.gz",
            "state/full/-1/chunk-0000.json.gz",
            "state/full/1/chunk-00a0.json.gz",
            "state/full/1/chunk-0000.json",
            "state/full/1",
            "state/partial/1/2/chunk-0000.json.gz",
            "LATEST_STATE_FULL.bak",
        ] {
            assert_eq!(parse(other), Name::Other, "{other}");
        }
    }
}
