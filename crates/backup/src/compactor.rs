//! The compactor: merges runs of small log segments into larger ones, level by level
//! (planned by `tito_catalog::compaction_plan`), keeping every record as it was.
//!
//! The order of steps is what makes a crash at any point safe:
//! 1. read the inputs in LSN order, streaming their records into one segment writer (each
//!    input checked to its end; a record an input repeats is skipped);
//! 2. upload the merged segment (in parts once it passes a few MiB), then read it back and
//!    check it whole, so a store that damaged it is caught while the inputs still exist;
//! 3. only then delete the inputs and the window's other segments inside its LSN range.
//!
//! A crash before 3 leaves overlapping segments of equal records (the catalog, restore,
//! verify and prune already take the one reaching furthest); the next run sees the merged
//! segment as the window's chain and finishes step 3. Deletes are safe by construction, not
//! by a lease: only closed windows are touched, and a segment is deleted only once a durable,
//! checked segment holding all its records exists, so a compactor beside a shipper, a prune
//! or another compactor can waste work but never lose a record (see the crate's
//! ARCHITECTURE row).

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tito_catalog::{Catalog, CompactionPolicy, Merge, ObjectInfo, plan_compaction};
use tito_format::layout::{self, ObjectName};
use tito_format::{SegmentReader, SegmentWriter};
use tito_store::Store;

use crate::error::BackupError;
use crate::repository::Repository;

/// Bytes of a merged segment sent per upload part (S3 needs at least 5 MiB but the last).
const PART_BYTES: usize = 8 << 20;

/// Compressed bytes of inputs downloaded ahead of the writer, at most (one input larger than
/// this is downloaded alone).
const FETCH_AHEAD_BYTES: u64 = 32 << 20;

/// How to compact and how much work a call may do.
#[derive(Clone, Debug)]
pub struct CompactionConfig {
    /// Level windows and the largest merged segment.
    pub policy: CompactionPolicy,
    /// Most input segments one call reads (at least one merge runs per call, so a backlog
    /// always drains); `None`: no limit (`tito compact`).
    pub max_inputs: Option<usize>,
    /// Stop starting merges once this long has passed (at least one merge runs per call);
    /// `None`: no limit. Continuous mode uses it so compaction never holds shipping up long.
    pub max_duration: Option<std::time::Duration>,
    /// Input downloads in flight at once.
    pub concurrency: usize,
    /// zstd level of merged segments.
    pub compression_level: i32,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            policy: CompactionPolicy::default(),
            max_inputs: Some(600),
            max_duration: Some(std::time::Duration::from_secs(2)),
            concurrency: 16,
            compression_level: tito_format::frame::DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// What a compaction did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CompactResult {
    /// Merged segments written.
    pub written: u64,
    /// Input segments read.
    pub read: u64,
    /// Segments deleted (inputs and covered leftovers).
    pub deleted: u64,
    /// Stored bytes of the inputs read.
    pub bytes_read: u64,
    /// Stored bytes of the merged segments written.
    pub bytes_written: u64,
    /// Records copied into merged segments.
    pub records: u64,
    /// Segments of the log before and after, over the timelines compacted.
    pub segments_before: u64,
    /// See `segments_before`.
    pub segments_after: u64,
    /// Merges done per level (index 0 = level 1).
    pub merges_per_level: Vec<u64>,
    /// False if the input budget ran out before every closed window was compacted.
    pub complete: bool,
    /// True if nothing was written or deleted because this was a dry run.
    pub dry_run: bool,
    /// One line per merge: its output key and inputs (or covered leftovers deleted).
    pub lines: Vec<String>,
}

/// What the caller hears about each merge as it finishes (for progress). `()` hears nothing.
pub trait CompactProgress: Send + Sync {
    /// `merge` is done; `so_far` is the result up to it.
    fn merged(&self, merge: &Merge, so_far: &CompactResult);
}

impl CompactProgress for () {
    fn merged(&self, _: &Merge, _: &CompactResult) {}
}

/// Compact every timeline of `repo` (the CLI's `tito compact`; a backup service compacts
/// its own timeline with [`compact_timelines`]).
pub async fn compact_repository(
    repo: &Repository,
    config: &CompactionConfig,
    dry_run: bool,
    on_merge: &dyn CompactProgress,
) -> Result<CompactResult, BackupError> {
    compact_timelines(repo, None, config, dry_run, on_merge).await
}

/// Compact `timeline` (every timeline for `None`): for each level from 1 up, plan from the
/// log's listing and run the merges, oldest window first, within the input budget.
pub fn compact_timelines<'a>(
    repo: &'a Repository,
    timeline: Option<u64>,
    config: &'a CompactionConfig,
    dry_run: bool,
    on_merge: &'a dyn CompactProgress,
) -> futures::future::BoxFuture<'a, Result<CompactResult, BackupError>> {
    // Boxed as `Send` here: callers' futures (the continuous backup task) then need no
    // proof about the borrows inside, which the compiler cannot always give.
    Box::pin(compact_inner(repo, timeline, config, dry_run, on_merge))
}

async fn compact_inner(
    repo: &Repository,
    timeline: Option<u64>,
    config: &CompactionConfig,
    dry_run: bool,
    on_merge: &dyn CompactProgress,
) -> Result<CompactResult, BackupError> {
    config
        .policy
        .validate()
        .map_err(|reason| BackupError::BadCompaction { reason })?;
    let prefix = match timeline {
        Some(tl) => layout::log_prefix(tl),
        None => layout::TIMELINES.to_string(),
    };
    let mut objects: Vec<ObjectInfo> = repo
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|o| matches!(layout::parse(&o.key), ObjectName::Segment { .. }))
        .map(|o| ObjectInfo {
            key: o.key,
            size: o.size,
            last_modified_ms: o.last_modified_ms,
        })
        .collect();
    let levels = config.policy.windows_ms.len();
    let mut result = CompactResult {
        segments_before: objects.len() as u64,
        merges_per_level: vec![0; levels],
        complete: true,
        dry_run,
        ..CompactResult::default()
    };
    let mut budget = config.max_inputs.unwrap_or(usize::MAX);
    let started = std::time::Instant::now();
    'levels: for level in 1..=levels {
        let catalog = Catalog::build(objects.clone(), vec![], vec![], vec![]);
        let merges = plan_compaction(&catalog, &config.policy, level);
        for merge in merges {
            let late = config.max_duration.is_some_and(|d| started.elapsed() >= d);
            if (late || (merge.writes() && merge.inputs.len() > budget)) && result.read > 0 {
                result.complete = false;
                break 'levels;
            }
            let written = if dry_run {
                merge.input_bytes()
            } else {
                run_merge(repo.store().clone(), &merge, config).await?
            };
            if merge.writes() {
                budget = budget.saturating_sub(merge.inputs.len());
                result.written += 1;
                result.read += merge.inputs.len() as u64;
                result.bytes_read += merge.input_bytes();
                result.bytes_written += written;
                result.records += merge.last - merge.first + 1;
                objects.push(ObjectInfo {
                    key: merge.output_key(),
                    size: written,
                    last_modified_ms: crate::now_ms(),
                });
            }
            result.deleted += merge.delete.len() as u64;
            result.merges_per_level[level - 1] += 1;
            result.lines.push(describe(&merge, dry_run));
            objects.retain(|o| !merge.delete.contains(&o.key));
            on_merge.merged(&merge, &result);
        }
    }
    result.segments_after = objects.len() as u64;
    Ok(result)
}

fn describe(m: &Merge, dry_run: bool) -> String {
    let (verb, gone) = if dry_run {
        ("would merge", "would delete")
    } else {
        ("merged", "deleted")
    };
    if m.writes() {
        format!(
            "level {}: {verb} {} segments (LSNs {}..={}) into {}; {gone} {}",
            m.level,
            m.inputs.len(),
            m.first,
            m.last,
            m.output_key(),
            m.delete.len()
        )
    } else {
        format!(
            "level {}: {} is whole already; {gone} {} segments it covers (left by an interrupted merge)",
            m.level,
            m.output_key(),
            m.delete.len()
        )
    }
}

/// Run one merge; returns the merged segment's stored size (0 if it writes nothing).
async fn run_merge(
    store: Arc<dyn Store>,
    merge: &Merge,
    config: &CompactionConfig,
) -> Result<u64, BackupError> {
    let mut size = 0;
    if merge.writes() {
        size = write_merged(store.clone(), merge, config).await?;
    } else {
        // Finishing an interrupted merge: its segment must be whole before what it covers goes.
        let key = merge.output_key();
        read_back(store.as_ref(), &key, None).await?;
    }
    // The merged segment is durable and checked: what it covers can go.
    for batch in merge.delete.chunks(1000) {
        store.delete_many(batch).await?;
    }
    tracing::debug!(
        output = %merge.output_key(),
        inputs = merge.inputs.len(),
        deleted = merge.delete.len(),
        "compacted"
    );
    Ok(size)
}

/// A `Write` the caller drains between pushes, so the merged segment streams to the store.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take_if_over(&self, n: usize) -> Option<Vec<u8>> {
        let mut buf = self.0.lock().expect("buffer lock");
        (buf.len() >= n).then(|| std::mem::take(&mut *buf))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stream the inputs into one segment, upload it, read it back and check it.
async fn write_merged(
    store: Arc<dyn Store>,
    merge: &Merge,
    config: &CompactionConfig,
) -> Result<u64, BackupError> {
    let key = merge.output_key();
    let buf = SharedBuf::default();
    let mut writer = SegmentWriter::new(buf.clone(), merge.timeline)
        .with_level(config.compression_level)
        .named(key.clone());
    let largest = merge
        .inputs
        .iter()
        .map(|s| s.size)
        .max()
        .unwrap_or(1)
        .max(1);
    let ahead = (FETCH_AHEAD_BYTES / largest).clamp(1, config.concurrency.max(1) as u64) as usize;
    let inputs: Vec<String> = merge.inputs.iter().map(|s| s.key.clone()).collect();
    let mut upload: Option<Box<dyn tito_store::Upload>> = None;
    let outcome = feed(
        inputs,
        ahead,
        &mut writer,
        &buf,
        &mut upload,
        &store,
        &key,
        (merge.first, merge.last),
    )
    .await;
    if let Err(e) = outcome {
        if let Some(up) = upload {
            let _ = up.abort().await;
        }
        return Err(e);
    }
    let summary = writer.finish()?;
    let expected = (merge.first, merge.last, merge.t0, merge.t1);
    if (summary.first, summary.last, summary.t0, summary.t1) != expected {
        return Err(BackupError::CompactionInput {
            key: key.clone(),
            reason: format!(
                "the merged records span LSNs {}..={} at {}..={} ms, the inputs' names say {:?}",
                summary.first, summary.last, summary.t0, summary.t1, expected
            ),
        });
    }
    let rest = buf.take_if_over(0).unwrap_or_default();
    match upload {
        Some(mut up) => {
            up.write(Bytes::from(rest)).await?;
            up.finish().await?;
        }
        None => store.put(&key, Bytes::from(rest)).await?,
    }
    // Read back: only a merged segment found whole lets its inputs go. One found damaged is
    // removed at once (its inputs are all still there), so restore never picks it.
    if let Err(e) = read_back(store.as_ref(), &key, Some(&summary.checksum)).await {
        let _ = store.delete_many(std::slice::from_ref(&key)).await;
        return Err(e);
    }
    Ok(summary.bytes)
}

/// Stream the records of the downloaded inputs into `writer`, LSNs `range.0..=range.1`,
/// sending the output's bytes to a multipart upload (opened at the first full part).
#[allow(clippy::too_many_arguments)]
async fn feed(
    inputs: Vec<String>,
    ahead: usize,
    writer: &mut SegmentWriter<SharedBuf>,
    buf: &SharedBuf,
    upload: &mut Option<Box<dyn tito_store::Upload>>,
    store: &Arc<dyn Store>,
    key: &str,
    (first, last): (u64, u64),
) -> Result<(), BackupError> {
    let mut next = first;
    let mut waiting = inputs.into_iter();
    let mut fetched = futures::stream::FuturesOrdered::new();
    loop {
        // Downloads run `ahead` at once, in LSN order.
        while fetched.len() < ahead {
            let Some(input) = waiting.next() else { break };
            fetched.push_back(fetch(store.clone(), input));
        }
        let Some(got) = fetched.next().await else {
            break;
        };
        let (input, bytes) = got?;
        copy_input(&input, &bytes, writer, &mut next, last)?;
        if let Some(part) = buf.take_if_over(PART_BYTES) {
            if upload.is_none() {
                *upload = Some(store.put_multipart(key).await?);
            }
            if let Some(up) = upload.as_mut() {
                up.write(Bytes::from(part)).await?;
            }
        }
    }
    if next != last + 1 {
        return Err(BackupError::CompactionInput {
            key: key.to_string(),
            reason: format!(
                "the inputs end at LSN {}, the merge needs LSNs {first}..={last}",
                next - 1
            ),
        });
    }
    Ok(())
}

/// Copy the records `*next..=last` of one input into `writer` (synchronous: no borrow of
/// the input is held across an await).
fn copy_input(
    input: &str,
    bytes: &[u8],
    writer: &mut SegmentWriter<SharedBuf>,
    next: &mut u64,
    last: u64,
) -> Result<(), BackupError> {
    let mut reader = SegmentReader::new(bytes, input.to_string())?;
    for rec in reader.by_ref() {
        let rec = rec?;
        if rec.lsn < *next {
            continue; // an overlapping input repeats records already taken
        }
        if rec.lsn != *next {
            return Err(BackupError::CompactionInput {
                key: input.to_string(),
                reason: format!("expected LSN {next}, found LSN {}", rec.lsn),
            });
        }
        if rec.lsn > last {
            break;
        }
        writer.push(&rec)?;
        *next += 1;
    }
    // Every record counts only once its input was read to its verified end.
    match reader.summary() {
        Some(s) => s.check_name(input)?,
        None if *next > last => {} // stopped early inside a longer input
        None => {
            return Err(BackupError::CompactionInput {
                key: input.to_string(),
                reason: "the segment ended without its trailer".into(),
            });
        }
    }
    Ok(())
}

/// Download one input whole (inputs are at most the merged-segment cap).
async fn fetch(store: Arc<dyn Store>, key: String) -> Result<(String, Bytes), BackupError> {
    let bytes = store.get(&key).await?;
    Ok((key, bytes))
}

/// Read segment `key` back and check it whole (frames, trailer, name, and the checksum
/// written, if given).
async fn read_back(
    store: &dyn Store,
    key: &str,
    checksum: Option<&str>,
) -> Result<(), BackupError> {
    let back = store.get(key).await?;
    let checked = SegmentReader::new(&back[..], key.to_string())?.verify()?;
    if checksum.is_some_and(|c| c != checked.checksum) {
        return Err(BackupError::CompactionInput {
            key: key.to_string(),
            reason: "the merged segment read back differs from what was written".into(),
        });
    }
    checked.check_name(key)?;
    Ok(())
}
