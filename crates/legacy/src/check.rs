//! The check pass: every chunk the plan uses is downloaded and decoded before the target
//! is touched, so a malformed chunk changes nothing. Entry counts also reveal collisions
//! that modification times cannot (a store with second-resolution times).

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tito_restore::Progress;
use tito_store::Store;

use crate::chunk::{self, StateOp};
use crate::error::LegacyError;
use crate::layout::{ChunkObject, Kind};
use crate::plan::Plan;
use crate::report::{Warning, WarningKind};

/// Download `chunks` in order, `concurrency` at a time.
pub fn fetch(
    store: Arc<dyn Store>,
    chunks: Vec<ChunkObject>,
    concurrency: usize,
) -> impl Stream<Item = Result<(ChunkObject, Bytes), LegacyError>> {
    futures::stream::iter(chunks)
        .map(move |c| {
            let store = store.clone();
            async move {
                let bytes = store.get(&c.key).await?;
                Ok::<_, LegacyError>((c, bytes))
            }
        })
        .buffered(concurrency.max(1))
}

/// What one chunk holds.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    entries: u64,
    skipped: u64,
}

/// Check every chunk of `plan`, adding what the counts show to its report (entries, bytes,
/// collisions, skipped entries).
pub async fn check(
    store: Arc<dyn Store>,
    plan: &mut Plan,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<(), LegacyError> {
    let chunks: Vec<ChunkObject> = plan
        .state_chunks()
        .chain(plan.events.iter())
        .cloned()
        .collect();
    progress.phase("check chunks", chunks.len() as u64);
    let counted: Vec<(ChunkObject, Counted)> = fetch(store, chunks, concurrency)
        .and_then(|(c, bytes)| async move {
            let key = c.key.clone();
            let kind = c.kind;
            let counted = tokio::task::spawn_blocking(move || count(kind, &bytes, &key))
                .await
                .map_err(|e| LegacyError::Task(e.to_string()))??;
            progress.advance(1);
            Ok((c, counted))
        })
        .try_collect()
        .await?;
    let report = &mut plan.report;
    for (c, n) in &counted {
        report.bytes_downloaded += c.size;
        match c.kind {
            Kind::Events => report.event_entries += n.entries,
            _ => {
                report.state_entries += n.entries;
                report.skipped_entries += n.skipped;
            }
        }
    }
    if report.skipped_entries > 0 {
        report.warnings.push(Warning::new(
            WarningKind::SkippedEntries,
            format!(
                "{} entries are puts without data or unknown ops; skipped, as the original's restore skipped them",
                report.skipped_entries
            ),
        ));
    }
    // In one run, every chunk but the last of a scan is full: an events run (one scan)
    // never grows, a partial run (two scans: state_changelog:, then changelog:) grows at
    // most once. More means a later run of the same second rewrote the first chunks.
    let mut i = 0;
    while i < counted.len() {
        let (kind, secs) = (counted[i].0.kind, counted[i].0.secs);
        let mut j = i;
        while j < counted.len() && counted[j].0.kind == kind && counted[j].0.secs == secs {
            j += 1;
        }
        let run = &counted[i..j];
        let allowed = match kind {
            Kind::Events => 0,
            Kind::Partial => 1,
            Kind::Full => usize::MAX, // the original dropped entries: any count can be short
        };
        let growths: Vec<(u64, u64)> = run
            .windows(2)
            .filter(|w| w[1].1.entries > w[0].1.entries)
            .map(|w| (w[0].0.seq, w[1].0.seq))
            .collect();
        if growths.len() > allowed && !report.has_collision(kind, secs) {
            let (a, b) = growths[allowed];
            report.warnings.push(Warning::new(
                WarningKind::Collision,
                format!(
                    "{} run {secs}: chunk {a} holds fewer entries than chunk {b}, which one run never \
                     writes: two runs in second {secs} wrote chunks under the same names, and the \
                     earlier run's overwritten entries are lost",
                    crate::report::series(kind)
                ),
            ));
        }
        i = j;
    }
    Ok(())
}

fn count(kind: Kind, bytes: &[u8], key: &str) -> Result<Counted, LegacyError> {
    let mut n = Counted::default();
    let done = match kind {
        Kind::Events => chunk::read_events(bytes, key, |_| Ok(()))?,
        _ => chunk::read_state(bytes, key, |op| {
            if matches!(op, StateOp::PutWithoutData | StateOp::Unknown) {
                n.skipped += 1;
            }
            Ok(())
        })?,
    };
    n.entries = done.map_err(|_| LegacyError::Task("the check stopped".into()))?;
    Ok(n)
}
