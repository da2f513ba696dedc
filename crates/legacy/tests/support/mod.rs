//! A history of the original's application and backups, run through the re-implemented
//! writer into a store, next to an oracle of what the original's restore meant to produce
//! at any second: computed from the history (the application's state when each run
//! happened, which runs' objects are still there), never from the objects written.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tito_engine::Engine;
use tito_legacy::original::{Clock, Config, EventChangelogEntry, Source, Writer};
use tito_queue::{Event, QueuedEvent};
use tito_store::Store;

/// The start of every history (ms).
pub const T0: i64 = 1_700_000_000_000;

/// One step of a history.
#[derive(Clone, Debug)]
pub enum Step {
    /// Put key `k` (of a few) to a value made from `v`.
    Put(u8, u16),
    /// Delete key `k`.
    Delete(u8),
    /// Publish an event for key `k`.
    Event(u8),
    /// Move the clock forward by this many ms.
    Wait(u32),
    /// Move to the next second and run `run_backup`.
    Backup,
    /// Move to the next second and run a full backup that dies after this many chunks.
    CrashFull(u8),
}

/// A change-log op: key and value (`None`: delete).
type Op = (String, Option<Vec<u8>>);

/// A full backup as the oracle sees it.
#[derive(Clone, Debug)]
struct FullRec {
    /// It wrote its marker.
    complete: bool,
    /// Chunks uploaded (all, if complete).
    chunks: usize,
    /// The application's `table:` state when it ran.
    state: BTreeMap<String, Vec<u8>>,
}

/// The oracle: runs whose objects are still in the store.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    fulls: BTreeMap<i64, FullRec>,
    /// Partial runs: the change-log ops each shipped, in order (`None` value: delete).
    partials: BTreeMap<i64, Vec<Op>>,
    /// Event runs: the events each shipped.
    events: BTreeMap<i64, Vec<EventChangelogEntry>>,
    /// `LATEST_STATE_FULL`.
    marker: Option<i64>,
    chunk_size: usize,
}

/// What the oracle expects of an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The backed-up keyspace, and the full backup used.
    State(BTreeMap<Vec<u8>, Vec<u8>>, i64),
    /// No usable full backup.
    NotFound,
    /// No completed full backup at all: the marker is missing.
    NoMarker,
}

impl Oracle {
    /// What an import at second `t` (`None`: newest) should produce; events enqueued into
    /// `partitions` partitions if given.
    pub fn expect(&self, t: Option<i64>, partitions: Option<u32>) -> Expected {
        let Some(marker) = self.marker else {
            return if self.fulls.values().any(|f| f.chunks > 0) {
                Expected::NoMarker
            } else {
                Expected::NotFound
            };
        };
        let upto = |s: i64| t.is_none_or(|t| s <= t);
        // A full backup newer than the marker is known interrupted; an older interrupted
        // one cannot be told from a complete one, and is used with what it holds.
        let chosen = self.fulls.iter().rfind(|(s, f)| {
            // The import sees a full backup through its chunks, or through the marker (an
            // empty one wrote none).
            let seen = f.chunks > 0 || **s == marker;
            seen && upto(**s) && (f.complete || **s < marker)
        });
        let Some((&full_secs, full)) = chosen else {
            return Expected::NotFound;
        };
        let mut state: BTreeMap<Vec<u8>, Vec<u8>> = full
            .state
            .iter()
            .take(if full.complete {
                usize::MAX
            } else {
                full.chunks * self.chunk_size
            })
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect();
        for (_, ops) in self
            .partials
            .range(full_secs + 1..)
            .filter(|(s, _)| upto(**s))
        {
            for (k, v) in ops {
                match v {
                    Some(v) => state.insert(k.as_bytes().to_vec(), v.clone()),
                    None => state.remove(k.as_bytes()),
                };
            }
        }
        if let Some(p) = partitions {
            for (_, evs) in self.events.iter().filter(|(s, _)| upto(**s)) {
                for e in evs {
                    let q = queued(e, p);
                    state.insert(q.engine_key(), q.engine_value());
                }
            }
        }
        Expected::State(state, full_secs)
    }

    /// Seconds worth importing at: every run's, the ones around them, none.
    pub fn interesting_times(&self) -> Vec<Option<i64>> {
        let mut out = vec![None];
        for s in self
            .fulls
            .keys()
            .chain(self.partials.keys())
            .chain(self.events.keys())
        {
            out.extend([Some(s - 1), Some(*s), Some(s + 1)]);
        }
        out
    }
}

/// The queue event an archived event becomes (times in ms as the history wrote them).
pub fn queued(e: &EventChangelogEntry, partitions: u32) -> QueuedEvent {
    let event = Event::new(
        e.event_id.as_bytes().to_vec(),
        e.event_key.as_bytes().to_vec(),
        serde_json::to_vec(&e.data).unwrap(),
        e.created_at as u64,
        e.scheduled_at as u64,
    );
    QueuedEvent {
        partition: (tito_queue::stable_hash(e.event_key.as_bytes()) % partitions as u64) as u32,
        event,
    }
}

/// The value a step writes: JSON with keys out of order and spacing the original's
/// restore normalizes.
pub fn value(k: u8, v: u16) -> Value {
    match v % 4 {
        0 => json!({"z": v, "a": format!("k{k}"), "n": null}),
        1 => json!([v, 1.5, true, {"y": 1, "b": [v]}]),
        2 => json!(format!("text \"{v}\" é")),
        _ => json!(v as f64 / 8.0),
    }
}

/// A history being written.
pub struct Sim {
    /// The original's database.
    pub source: Source,
    /// The writer.
    pub writer: Writer,
    /// The oracle.
    pub oracle: Oracle,
    /// Change-log ops not shipped yet.
    pending: Vec<Op>,
    /// Events not shipped yet.
    pending_events: Vec<EventChangelogEntry>,
    next_event: u64,
}

impl Sim {
    /// A history writing into `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Sim {
        let chunk_size = config.chunk_size as usize;
        Sim {
            source: Source::default(),
            writer: Writer {
                store,
                config,
                clock: Clock::at(T0),
            },
            oracle: Oracle {
                chunk_size,
                ..Oracle::default()
            },
            pending: Vec::new(),
            pending_events: Vec::new(),
            next_event: 0,
        }
    }

    fn clock(&self) -> &Clock {
        &self.writer.clock
    }

    /// The key of key number `k`.
    pub fn key(k: u8) -> String {
        format!("table:users:{k:03}")
    }

    /// Run one step.
    pub async fn step(&mut self, step: &Step) {
        // Every change-log entry gets its own millisecond: the original's markers lose an
        // entry written in the marker's millisecond after the scan (its flaw 1, tested
        // apart).
        self.clock().advance(1);
        match step {
            Step::Put(k, v) => {
                let data = value(*k, *v);
                let clock = self.clock().clone();
                self.source.put(&clock, &Self::key(*k), &data);
                self.pending
                    .push((Self::key(*k), Some(serde_json::to_vec(&data).unwrap())));
            }
            Step::Delete(k) => {
                let clock = self.clock().clone();
                self.source.delete(&clock, &Self::key(*k));
                self.pending.push((Self::key(*k), None));
            }
            Step::Event(k) => {
                self.next_event += 1;
                let now = self.clock().now_ms();
                let e = EventChangelogEntry {
                    event_id: format!("ev-{}", self.next_event),
                    event_key: Self::key(*k),
                    created_at: now,
                    scheduled_at: now + 5000,
                    max_retries: 3,
                    data: json!({"kind": "changed", "key": Self::key(*k), "n": self.next_event}),
                };
                let clock = self.clock().clone();
                self.source.publish(&clock, &e);
                self.pending_events.push(e);
            }
            Step::Wait(ms) => self.clock().advance(*ms as i64),
            Step::Backup => {
                self.next_second();
                self.backup().await;
            }
            Step::CrashFull(n) => {
                self.next_second();
                let secs = self.clock().now_secs();
                let r = self
                    .writer
                    .run_full_state_backup(&self.source, Some(*n as usize))
                    .await
                    .unwrap();
                assert_eq!(r, None);
                let chunks = (*n as usize).min(self.full_chunks());
                self.oracle.fulls.insert(
                    secs,
                    FullRec {
                        complete: false,
                        chunks,
                        state: self.table_state(),
                    },
                );
            }
        }
    }

    /// Move the clock into the next second, a little past its start.
    pub fn next_second(&self) {
        let next = (self.clock().now_secs() + 1) * 1000 + 17;
        self.clock().set(next);
    }

    fn table_state(&self) -> BTreeMap<String, Vec<u8>> {
        self.source
            .map
            .iter()
            .filter(|(k, v)| k.starts_with(b"table:") && serde_json::from_slice::<Value>(v).is_ok())
            .filter_map(|(k, v)| Some((String::from_utf8(k.clone()).ok()?, v.clone())))
            .collect()
    }

    /// Chunks a full backup of the current state writes.
    fn full_chunks(&self) -> usize {
        self.table_state().len().div_ceil(self.oracle.chunk_size)
    }

    /// `run_backup` now, with the oracle following.
    pub async fn backup(&mut self) {
        let secs = self.clock().now_secs();
        let last_full = self.oracle.marker.unwrap_or(0);
        let due = secs - last_full >= self.writer.config.full_backup_interval_secs;
        let result = self.writer.run_backup(&mut self.source).await.unwrap();
        assert_eq!(result.state_changelog_entries, self.pending.len());
        assert_eq!(result.event_changelog_entries, self.pending_events.len());
        if !self.pending.is_empty() {
            self.oracle
                .partials
                .insert(secs, std::mem::take(&mut self.pending));
        }
        if !self.pending_events.is_empty() {
            self.oracle
                .events
                .insert(secs, std::mem::take(&mut self.pending_events));
        }
        assert_eq!(result.full_backup_entries.is_some(), due);
        if due {
            let chunks = self.full_chunks();
            self.oracle.fulls.insert(
                secs,
                FullRec {
                    complete: true,
                    chunks,
                    state: self.table_state(),
                },
            );
            self.oracle.marker = Some(secs);
            // A completed full backup deletes every partial chunk, and by age old full
            // backups and event chunks.
            self.oracle.partials.clear();
            let cutoff = secs - self.writer.config.retention_secs;
            self.oracle.fulls.retain(|s, _| *s >= cutoff);
            self.oracle.events.retain(|s, _| *s >= cutoff);
        }
    }
}

/// The backed-up keyspace of `engine`.
pub async fn keyspace(engine: &dyn Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let view = engine.read_view().await.unwrap();
    let mut out = BTreeMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = tito_capture::scan_backed_up(view.as_ref(), after.as_deref(), 1000)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = Some(last.clone());
        out.extend(page);
    }
}
