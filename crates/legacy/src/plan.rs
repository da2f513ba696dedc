//! Planning an import from a listing: the full backup to start from, the partial chunks to
//! apply after it and their order, the event chunks, and the warnings the listing alone
//! can give. Pure: no I/O.
//!
//! The original's `restore(timestamp)` took the newest `state/full/<secs>` at or before
//! the time, whatever it held; then every partial chunk of a run after that second and at
//! or before the time, sorted as text; then every event chunk at or before the time. This
//! plan means the same with its flaws fixed: a full backup that did not finish is skipped
//! (an earlier complete one is used, with the partial chunks after it, which a full
//! backup that never finished did not delete), and chunks go in number order.

use std::collections::BTreeMap;

use crate::error::LegacyError;
use crate::layout::{ChunkObject, Inventory, Kind, MARKER_EVENTS, MARKER_FULL, MARKER_PARTIAL};
use crate::report::{FullStatus, FullSummary, ImportReport, SeriesSummary, Warning, WarningKind};

/// What to read, in order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Chunks of the full backup used.
    pub full: Vec<ChunkObject>,
    /// Partial chunks to apply after it, in (run, number) order.
    pub partials: Vec<ChunkObject>,
    /// Event chunks at or before the time.
    pub events: Vec<ChunkObject>,
    /// What was found and chosen, with the listing's warnings.
    pub report: ImportReport,
}

impl Plan {
    /// The state chunks, full backup first.
    pub fn state_chunks(&self) -> impl Iterator<Item = &ChunkObject> {
        self.full.iter().chain(self.partials.iter())
    }
}

/// The runs of a series: second -> its chunks in number order.
fn runs(chunks: &[ChunkObject]) -> BTreeMap<i64, Vec<&ChunkObject>> {
    let mut out: BTreeMap<i64, Vec<&ChunkObject>> = BTreeMap::new();
    for c in chunks {
        out.entry(c.secs).or_default().push(c);
    }
    out
}

fn summary(chunks: &[ChunkObject]) -> SeriesSummary {
    let r = runs(chunks);
    SeriesSummary {
        chunks: chunks.len(),
        runs: r.len(),
        bytes: chunks.iter().map(|c| c.size).sum(),
        span: r
            .keys()
            .next()
            .zip(r.keys().next_back())
            .map(|(a, b)| (*a, *b)),
    }
}

/// The first chunk number missing from a run (numbers must be 0, 1, 2, ...).
fn missing_number(run: &[&ChunkObject]) -> Option<u64> {
    let mut expect = 0;
    for c in run {
        if c.seq > expect {
            return Some(expect);
        }
        expect = c.seq + 1;
    }
    None
}

/// Chunk `k` of a run written after chunk `k + 1`: a later run of the same second rewrote
/// the first chunks of an earlier one (one run uploads its chunks in number order).
fn written_out_of_order(run: &[&ChunkObject]) -> Option<(u64, u64)> {
    run.windows(2)
        .find(|w| w[0].modified_ms > w[1].modified_ms)
        .map(|w| (w[0].seq, w[1].seq))
}

/// Plan an import of `inv` as of second `target_secs` (`None`: the newest state).
pub fn plan(inv: &Inventory, target_secs: Option<i64>) -> Result<Plan, LegacyError> {
    if inv.is_empty() {
        return Err(LegacyError::NotFound(format!(
            "no backup of the original module in {}: expected {}<secs>/chunk-NNNN.json.gz and \
             {MARKER_FULL} at its top (point --from at the original's backup_root)",
            inv.store,
            Kind::Full.prefix()
        )));
    }
    let at_or_before = |secs: i64| target_secs.is_none_or(|t| secs <= t);
    let mut warnings = Vec::new();
    let marker = inv.markers.full_secs;

    // Full backups: what the markers and the numbering say of each. A full backup of an
    // empty table space wrote no chunk, only its marker: the marker stands for it.
    let mut full_runs = runs(&inv.full);
    if let Some(m) = marker {
        full_runs.entry(m).or_default();
    }
    let mut fulls = Vec::new();
    for (secs, run) in full_runs {
        let status = if let Some(n) = missing_number(&run) {
            FullStatus::Interrupted(format!(
                "chunk {n} is missing (deleted part-way, or never written)"
            ))
        } else {
            match marker {
                None => FullStatus::Interrupted(format!("{MARKER_FULL} is missing")),
                Some(m) if secs > m => FullStatus::Interrupted(format!(
                    "it is newer than {MARKER_FULL} ({m}): it never finished"
                )),
                Some(m) if secs == m => FullStatus::Complete,
                Some(_) => FullStatus::Unverified,
            }
        };
        if let FullStatus::Interrupted(why) = &status {
            warnings.push(Warning::new(
                WarningKind::InterruptedFull,
                format!(
                    "full backup {secs} did not finish ({why}); skipped (the original's restore would have used it)"
                ),
            ));
        }
        if let Some((a, b)) = written_out_of_order(&run) {
            warnings.push(collision(Kind::Full, secs, a, b));
        }
        fulls.push((secs, run, status));
    }
    if fulls.is_empty() {
        return Err(LegacyError::NotFound(format!(
            "no full backup in {} (nothing under {}); the original's restore needs one",
            inv.store,
            Kind::Full.prefix()
        )));
    }
    if marker.is_none() {
        return Err(LegacyError::BadMarker {
            key: MARKER_FULL.into(),
            reason: format!(
                "missing: no full backup under {} is known to have completed",
                Kind::Full.prefix()
            ),
        });
    }
    let chosen = fulls.iter().rfind(|(secs, _, status)| {
        at_or_before(*secs) && !matches!(status, FullStatus::Interrupted(_))
    });
    let Some((full_secs, full_run, full_status)) = chosen else {
        let when = target_secs.map_or("at all".to_string(), |t| format!("at or before {t}"));
        let oldest = fulls.first().map(|(s, _, _)| *s).unwrap_or_default();
        return Err(LegacyError::NotFound(format!(
            "no complete full backup {when} in {} (the oldest is {oldest}; {} found, {} interrupted)",
            inv.store,
            fulls.len(),
            fulls
                .iter()
                .filter(|f| matches!(f.2, FullStatus::Interrupted(_)))
                .count()
        )));
    };
    let full_secs = *full_secs;
    // A damaged full backup at or before the marker finished, so its clean-up deleted the
    // partial chunks between the one used and it: those changes are gone.
    if let Some(m) = marker.filter(|m| at_or_before(*m) && *m > full_secs) {
        if fulls
            .iter()
            .any(|(s, _, st)| *s > full_secs && *s <= m && matches!(st, FullStatus::Interrupted(_)))
        {
            warnings.push(Warning::new(
                WarningKind::InterruptedFull,
                format!(
                    "the state is older than it looks: full backup {full_secs} is used, and the changes \
                     after it up to the newer full backup {m} were in partial chunks that backup's \
                     clean-up deleted"
                ),
            ));
        }
    }
    if full_run.is_empty() {
        warnings.push(Warning::new(
            WarningKind::MissingChunk,
            format!(
                "full backup {full_secs} (named by {MARKER_FULL}) has no chunk: taken for a backup of an \
                 empty table space, as the original wrote none for one"
            ),
        ));
    }
    if *full_status == FullStatus::Unverified {
        warnings.push(Warning::new(
            WarningKind::UnverifiedFull,
            format!(
                "full backup {full_secs} is older than {MARKER_FULL} ({}), which names only the newest \
                 complete one: the old format cannot show it finished",
                marker.unwrap_or_default()
            ),
        ));
    }

    // Partial chunks.
    let full_written_ms = full_run.iter().map(|c| c.modified_ms).max().unwrap_or(0);
    let partial_marker_secs = inv.markers.partial_ms.map(|ms| ms.div_euclid(1000));
    let mut partials = Vec::new();
    let mut stale = (0usize, None::<(i64, i64)>);
    for (secs, run) in runs(&inv.partial) {
        if let Some(n) = missing_number(&run) {
            warnings.push(Warning::new(
                WarningKind::MissingChunk,
                format!("partial run {secs}: chunk {n} is missing; the changes it held are lost"),
            ));
        }
        if let Some((a, b)) = written_out_of_order(&run) {
            warnings.push(collision(Kind::Partial, secs, a, b));
        }
        if partial_marker_secs.is_some_and(|m| secs > m) {
            warnings.push(Warning::new(
                WarningKind::UnfinishedRun,
                format!(
                    "partial run {secs} is newer than {MARKER_PARTIAL}: it did not finish; its chunks \
                     are applied, and a later run may repeat some of its entries (harmless)"
                ),
            ));
        }
        if secs == full_secs && run.iter().all(|c| c.modified_ms > full_written_ms) {
            // Written after the full backup of the same second (whose clean-up deleted
            // whatever was there before it): changes after it, which the original's
            // restore dropped.
            warnings.push(Warning::new(
                WarningKind::SameSecond,
                format!(
                    "partial run {secs} shares its second with the full backup and was written after \
                     it: applied (the original's restore dropped it)"
                ),
            ));
            if at_or_before(secs) {
                partials.extend(run.into_iter().cloned());
            }
        } else if secs <= full_secs {
            stale.0 += run.len();
            stale.1 = Some((stale.1.map_or(secs, |(a, _)| a), secs));
        } else if at_or_before(secs) {
            partials.extend(run.into_iter().cloned());
        }
    }
    if let (n, Some((a, b))) = stale {
        warnings.push(Warning::new(
            WarningKind::StalePartials,
            format!(
                "{n} partial chunks of runs {a}..{b} are at or before the full backup used ({full_secs}) \
                 and are not applied, as the original's restore did not apply them: a full backup that \
                 finished deletes them, so its clean-up did not run or two backups overlapped"
            ),
        ));
    }
    if inv.markers.partial_ms.is_none() && !inv.partial.is_empty() {
        warnings.push(Warning::new(
            WarningKind::MissingMarker,
            format!("{MARKER_PARTIAL} is missing: no shipping run of the partial chunks finished"),
        ));
    }

    // Event chunks: every run at or before the time, as the original re-enqueued them.
    let events_marker_secs = inv.markers.events_ms.map(|ms| ms.div_euclid(1000));
    let mut events = Vec::new();
    for (secs, run) in runs(&inv.events) {
        if let Some(n) = missing_number(&run) {
            warnings.push(Warning::new(
                WarningKind::MissingChunk,
                format!("events run {secs}: chunk {n} is missing; the events it held are lost"),
            ));
        }
        if let Some((a, b)) = written_out_of_order(&run) {
            warnings.push(collision(Kind::Events, secs, a, b));
        }
        if events_marker_secs.is_some_and(|m| secs > m) {
            warnings.push(Warning::new(
                WarningKind::UnfinishedRun,
                format!("events run {secs} is newer than {MARKER_EVENTS}: it did not finish"),
            ));
        }
        if at_or_before(secs) {
            events.extend(run.into_iter().cloned());
        }
    }
    if inv.markers.events_ms.is_none() && !inv.events.is_empty() {
        warnings.push(Warning::new(
            WarningKind::MissingMarker,
            format!("{MARKER_EVENTS} is missing: no shipping run of events finished"),
        ));
    }

    // The original sorted names as text: chunk-10000 before chunk-9999.
    for kind in [Kind::Full, Kind::Partial, Kind::Events] {
        let chunks = inv.chunks(kind);
        if chunks.windows(2).any(|w| w[0].key > w[1].key) {
            warnings.push(Warning::new(
                WarningKind::NameOrder,
                format!(
                    "{} chunk names do not sort as text in number order (a run past chunk 9999): the \
                     original's restore applied them out of order; they are applied in number order",
                    crate::report::series(kind)
                ),
            ));
        }
    }
    if !inv.ignored.is_empty() {
        warnings.push(Warning::new(
            WarningKind::Ignored,
            format!(
                "{} objects are not chunk names and are ignored (first: {})",
                inv.ignored.len(),
                inv.ignored[0]
            ),
        ));
    }
    let state_as_of_secs = partials.last().map_or(full_secs, |c| c.secs);
    if let Some(t) = target_secs {
        let same = partials.iter().chain(&events).any(|c| c.secs == t) || full_secs == t;
        if same {
            warnings.push(Warning::new(
                WarningKind::SameSecond,
                format!(
                    "runs of second {t} are included whole: the old format names runs by the second \
                     and keeps no time per entry"
                ),
            ));
        }
    }

    let report = ImportReport {
        store: inv.store.clone(),
        full_backups: fulls
            .iter()
            .map(|(secs, run, status)| FullSummary {
                secs: *secs,
                chunks: run.len(),
                bytes: run.iter().map(|c| c.size).sum(),
                status: status.clone(),
            })
            .collect(),
        partials: summary(&inv.partial),
        events: summary(&inv.events),
        target_secs,
        full_used: full_secs,
        partial_chunks_used: partials.len(),
        state_as_of_secs,
        event_chunks_used: events.len(),
        warnings,
        ..ImportReport::default()
    };
    Ok(Plan {
        full: full_run.iter().map(|c| (*c).clone()).collect(),
        partials,
        events,
        report,
    })
}

/// The warning for a collision seen in a run.
pub fn collision(kind: Kind, secs: i64, a: u64, b: u64) -> Warning {
    Warning::new(
        WarningKind::Collision,
        format!(
            "{} run {secs}: chunk {a} was written after chunk {b}: two runs in second {secs} wrote \
             chunks under the same names, and the earlier run's overwritten entries are lost",
            crate::report::series(kind)
        ),
    )
}
