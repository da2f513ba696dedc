//! Writing a plan into a target database.
//!
//! The target must hold nothing to lose (no backed-up key, no log record; metadata alone
//! is fine). Every chunk is checked first ([`crate::check`]); only then is the target
//! marked as a restore in progress (so an interrupted import is refused as partial, like
//! an interrupted restore) and written in large captured transactions: the log records
//! the import like any write, so the first `tito backup` ships it and the database is an
//! ordinary Tito database from LSN 1. The marker is removed last.
//!
//! One thread decodes chunks in order into batches while the previous batch commits;
//! chunks download a few ahead. Memory: the compressed chunks in flight and two batches.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tito_capture::Db;
use tito_capture::keys::{self, display_key};
use tito_engine::Engine;
use tito_queue::Event;
use tito_restore::Progress;
use tito_store::Store;
use tokio::sync::mpsc;

use crate::chunk::{self, EventChangelogEntry, StateOp, Stopped};
use crate::error::LegacyError;
use crate::layout::{ChunkObject, Kind, read_inventory};
use crate::plan::Plan;
use crate::report::{ImportReport, Warning, WarningKind};

/// What to do with archived events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsMode {
    /// Leave them out (the default: whether each was processed is unknown).
    #[default]
    Skip,
    /// Enqueue every one into Tito's queue, partitioned by the stable hash of its key.
    Enqueue,
}

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The time to import as of (ms since the epoch; the old format resolves seconds).
    /// `None`: the newest state.
    pub to_ms: Option<u64>,
    /// Archived events.
    pub events: EventsMode,
    /// Partitions of the queue events are enqueued into (needed with
    /// [`EventsMode::Enqueue`]).
    pub partitions: Option<u32>,
    /// Plan and check every chunk; write nothing.
    pub dry_run: bool,
    /// Chunks downloaded at once.
    pub concurrency: usize,
    /// Most writes per transaction (the engine's limits may lower it).
    pub batch_ops: usize,
    /// Most key and value bytes per transaction (the log record repeats them).
    pub batch_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            to_ms: None,
            events: EventsMode::Skip,
            partitions: None,
            dry_run: false,
            concurrency: 8,
            batch_ops: 20_000,
            batch_bytes: 8 << 20,
        }
    }
}

/// An import planned and checked, nothing written yet: its report says what was found and
/// warns of what the old format cannot guarantee, before [`apply`] writes.
pub struct Prepared {
    store: Arc<dyn Store>,
    plan: Plan,
    partitions: u32,
    started: Instant,
}

impl Prepared {
    /// What was found and chosen, and the warnings so far.
    pub fn report(&self) -> &ImportReport {
        &self.plan.report
    }
}

/// Import the old backup root in `store` into `target` as `opts` says: [`prepare`], then
/// [`apply`].
pub async fn import(
    store: Arc<dyn Store>,
    target: Arc<dyn Engine>,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, LegacyError> {
    let prepared = prepare(store, target.as_ref(), opts, progress).await?;
    apply(prepared, target, opts, progress).await
}

/// Plan from the listing, check that `target` holds nothing to lose, and read and decode
/// every chunk the plan uses. Nothing is written.
pub async fn prepare(
    store: Arc<dyn Store>,
    target: &dyn Engine,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Prepared, LegacyError> {
    let started = Instant::now();
    let partitions = match (opts.events, opts.partitions) {
        (_, Some(0)) => return Err(LegacyError::Usage("--partitions must be at least 1".into())),
        (EventsMode::Enqueue, None) => {
            return Err(LegacyError::Usage(
                "enqueueing events needs the partition count the application pulls from (--partitions N)"
                    .into(),
            ));
        }
        (_, p) => p.unwrap_or(1),
    };
    let target_secs = opts.to_ms.map(|ms| (ms / 1000) as i64);
    let inventory = read_inventory(store.as_ref()).await?;
    let mut plan = crate::plan::plan(&inventory, target_secs)?;
    check_target(target).await?;
    crate::check::check(store.clone(), &mut plan, opts.concurrency, progress).await?;
    let report = &mut plan.report;
    if !plan.events.is_empty() {
        report.warnings.push(match opts.events {
            EventsMode::Skip => Warning::new(
                WarningKind::EventsUnknown,
                format!(
                    "{} archived events in {} chunks are not imported: the original archived every event \
                     when it was created, so whether each was processed is unknown (--events enqueue \
                     enqueues them all)",
                    report.event_entries, report.event_chunks_used
                ),
            ),
            EventsMode::Enqueue => Warning::new(
                WarningKind::EventsUnknown,
                format!(
                    "{} archived events are enqueued: whether each was processed is unknown, so \
                     consumers see processed ones again",
                    report.event_entries
                ),
            ),
        });
    }
    Ok(Prepared {
        store,
        plan,
        partitions,
        started,
    })
}

/// Write a prepared import into `target` (the one [`prepare`] checked); with
/// `opts.dry_run`, write nothing and return the report.
pub async fn apply(
    prepared: Prepared,
    target: Arc<dyn Engine>,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, LegacyError> {
    let Prepared {
        store,
        mut plan,
        partitions,
        started,
    } = prepared;
    let mut report = std::mem::take(&mut plan.report);
    let events_used = !plan.events.is_empty();
    if opts.dry_run {
        report.dry_run = true;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        progress.finish();
        return Ok(report);
    }

    tito_capture::meta::ensure_database_id(target.as_ref()).await?;
    let marker = serde_json::json!({
        "import_legacy": {"store": report.store, "full": report.full_used, "as_of": report.state_as_of_secs}
    });
    set_marker(target.as_ref(), Some(marker.to_string().into_bytes())).await?;

    let db = Db::new(target.clone());
    let state: Vec<ChunkObject> = plan.state_chunks().cloned().collect();
    progress.phase("import state", report.state_entries);
    let counts = write_chunks(&db, store.clone(), state, opts, partitions, progress).await?;
    report.puts = counts.puts;
    report.deletes = counts.deletes;
    report.bytes_downloaded += counts.bytes;
    if events_used && opts.events == EventsMode::Enqueue {
        progress.phase("enqueue events", report.event_entries);
        let counts =
            write_chunks(&db, store, plan.events.clone(), opts, partitions, progress).await?;
        report.events_enqueued = counts.events;
        report.event_times_in_seconds = counts.seconds;
        report.bytes_downloaded += counts.bytes;
    }
    set_marker(target.as_ref(), None).await?;
    progress.finish();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Refuse a target holding an unfinished restore or import, or any backed-up key or log
/// record. Metadata alone (a database id) is fine.
async fn check_target(engine: &dyn Engine) -> Result<(), LegacyError> {
    if tito_capture::meta::restore_in_progress(engine).await? {
        return Err(LegacyError::TargetPartial);
    }
    let view = engine.read_view().await?;
    let mut ranges = keys::backed_up_ranges();
    ranges.push(keys::log_range());
    for range in ranges {
        if let Some((k, _)) = view.scan(&range, 1).await?.into_iter().next() {
            return Err(LegacyError::TargetNotEmpty {
                sample: display_key(&k),
            });
        }
    }
    Ok(())
}

async fn set_marker(engine: &dyn Engine, value: Option<Vec<u8>>) -> Result<(), LegacyError> {
    tito_engine::transaction(engine, |tx| {
        let value = value.clone();
        async move {
            let key = keys::META_RESTORE_IN_PROGRESS.to_vec();
            match value {
                Some(v) => tx.put(key, v)?,
                None => tx.delete(key)?,
            }
            Ok::<_, LegacyError>(())
        }
    })
    .await
}

/// One write of a batch.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Event(Event),
}

/// Writes of one transaction, in order, and the entries they came from.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    bytes: usize,
    entries: u64,
}

/// What [`write_chunks`] wrote.
#[derive(Default)]
struct Counts {
    puts: u64,
    deletes: u64,
    events: u64,
    seconds: u64,
    bytes: u64,
}

/// Download, decode and write `chunks` in order.
async fn write_chunks(
    db: &Db,
    store: Arc<dyn Store>,
    chunks: Vec<ChunkObject>,
    opts: &ImportOptions,
    partitions: u32,
    progress: &dyn Progress,
) -> Result<Counts, LegacyError> {
    let limits = db.engine().limits();
    let max_ops = opts
        .batch_ops
        .min(limits.max_txn_ops.saturating_sub(1))
        .max(1);
    let max_bytes = opts.batch_bytes.min(limits.max_txn_bytes / 2).max(1);
    let (bytes_tx, mut bytes_rx) = mpsc::channel::<(ChunkObject, Bytes)>(opts.concurrency.max(1));
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(1);
    let feed = async move {
        let mut fetched = crate::check::fetch(store, chunks, opts.concurrency).boxed();
        let mut bytes = 0;
        while let Some(item) = fetched.next().await {
            let (c, b) = item?;
            bytes += b.len() as u64;
            if bytes_tx.send((c, b)).await.is_err() {
                break; // the decoder failed: its error is reported
            }
        }
        Ok::<_, LegacyError>(bytes)
    };
    let decode = tokio::task::spawn_blocking(move || {
        let mut counts = Counts::default();
        let mut batch = Batch::default();
        let send = |batch: &mut Batch| batch_tx.blocking_send(std::mem::take(batch));
        while let Some((c, bytes)) = bytes_rx.blocking_recv() {
            let mut push = |op: Option<Op>, counts: &mut Counts| -> Result<(), Stopped> {
                batch.entries += 1;
                if let Some(op) = op {
                    batch.bytes += match &op {
                        Op::Put(k, v) => k.len() + v.len(),
                        Op::Delete(k) => k.len(),
                        Op::Event(e) => e.id.len() + e.key.len() + e.payload.len() + 32,
                    } + 16;
                    match op {
                        Op::Put(..) => counts.puts += 1,
                        Op::Delete(_) => counts.deletes += 1,
                        Op::Event(_) => counts.events += 1,
                    }
                    batch.ops.push(op);
                }
                if batch.ops.len() >= max_ops || batch.bytes >= max_bytes {
                    send(&mut batch).map_err(|_| Stopped)?;
                }
                Ok(())
            };
            let done = match c.kind {
                Kind::Events => chunk::read_events(&bytes, &c.key, |e| {
                    let op = Op::Event(event_of(e, &mut counts.seconds));
                    push(Some(op), &mut counts)
                })?,
                _ => chunk::read_state(&bytes, &c.key, |op| {
                    let op = match op {
                        StateOp::Put { key, value } => Some(Op::Put(key.into_bytes(), value)),
                        StateOp::Delete { key } => Some(Op::Delete(key.into_bytes())),
                        StateOp::PutWithoutData | StateOp::Unknown => None,
                    };
                    push(op, &mut counts)
                })?,
            };
            if done.is_err() {
                return Ok(counts); // the committer failed: its error is reported
            }
        }
        if batch.entries > 0 {
            let _ = send(&mut batch);
        }
        Ok::<_, LegacyError>(counts)
    });
    let commit = async move {
        while let Some(batch) = batch_rx.recv().await {
            let entries = batch.entries;
            commit_batch(db, Arc::new(batch.ops), partitions).await?;
            progress.advance(entries);
        }
        Ok::<_, LegacyError>(())
    };
    let decode = async { decode.await.map_err(|e| LegacyError::Task(e.to_string()))? };
    let (bytes, mut counts, ()) = futures::try_join!(feed, decode, commit)?;
    counts.bytes = bytes;
    Ok(counts)
}

/// Commit `ops` as one captured transaction.
async fn commit_batch(db: &Db, ops: Arc<Vec<Op>>, partitions: u32) -> Result<(), LegacyError> {
    if ops.is_empty() {
        return Ok(());
    }
    db.transaction(|txn| {
        let ops = ops.clone();
        async move {
            for op in ops.iter() {
                match op {
                    Op::Put(k, v) => txn.put(k.clone(), v.clone())?,
                    Op::Delete(k) => txn.delete(k.clone())?,
                    Op::Event(e) => {
                        tito_queue::publish(&txn, partitions, e.clone())?;
                    }
                }
            }
            Ok::<_, LegacyError>(())
        }
    })
    .await
}

/// An archived event as a Tito queue event: the payload is the compact JSON the original
/// enqueued; times below 10^11 are taken for seconds (`seconds` counts such events),
/// negative ones for 0.
fn event_of(e: EventChangelogEntry, seconds: &mut u64) -> Event {
    let mut in_secs = false;
    let mut ms = |v: i64| -> u64 {
        if v <= 0 {
            0
        } else if v < 100_000_000_000 {
            in_secs = true;
            v as u64 * 1000
        } else {
            v as u64
        }
    };
    let created = ms(e.created_at);
    let scheduled = ms(e.scheduled_at);
    if in_secs {
        *seconds += 1;
    }
    Event::new(
        e.event_id.into_bytes(),
        e.event_key.into_bytes(),
        serde_json::to_vec(&e.data).unwrap_or_default(),
        created,
        scheduled,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(created_at: i64, scheduled_at: i64) -> EventChangelogEntry {
        EventChangelogEntry {
            event_id: "e1".into(),
            event_key: "order:1".into(),
            created_at,
            scheduled_at,
            max_retries: 3,
            data: json!({"b": 1, "a": [true]}),
        }
    }

    #[test]
    fn archived_events_become_queue_events_in_milliseconds() {
        let mut seconds = 0;
        let e = event_of(entry(1_764_000_000_123, 1_764_000_005_000), &mut seconds);
        assert_eq!(
            (e.created_at_ms, e.scheduled_at_ms, seconds),
            (1_764_000_000_123, 1_764_000_005_000, 0)
        );
        assert_eq!(e.payload, br#"{"a":[true],"b":1}"#.to_vec());
        assert_eq!(
            (e.id.as_slice(), e.key.as_slice()),
            (b"e1".as_slice(), b"order:1".as_slice())
        );
        let e = event_of(entry(1_764_000_000, 1_764_000_005), &mut seconds);
        assert_eq!(
            (e.created_at_ms, e.scheduled_at_ms, seconds),
            (1_764_000_000_000, 1_764_000_005_000, 1)
        );
        let e = event_of(entry(-5, 0), &mut seconds);
        assert_eq!((e.created_at_ms, e.scheduled_at_ms, seconds), (0, 0, 1));
    }
}
