//! What an import found and did, and the warnings for what the old format cannot
//! guarantee.

use serde::Serialize;

use crate::layout::Kind;

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A full backup that did not finish (newer than `LATEST_STATE_FULL`, or a chunk
    /// missing from its numbering): skipped.
    InterruptedFull,
    /// The full backup used is older than `LATEST_STATE_FULL`: the old format cannot show
    /// it completed.
    UnverifiedFull,
    /// Two runs in one second wrote chunks with the same names: the earlier run's
    /// overwritten chunks are lost.
    Collision,
    /// A chunk number is missing from a run.
    MissingChunk,
    /// Partial chunks at or before the full backup used: not applied.
    StalePartials,
    /// A shipping run newer than its marker: it did not finish.
    UnfinishedRun,
    /// A marker is missing while its series has chunks.
    MissingMarker,
    /// Archived events: whether each was processed is unknown.
    EventsUnknown,
    /// The original sorted chunk names as text, which is not their number order.
    NameOrder,
    /// Objects that are not chunk names.
    Ignored,
    /// Runs in the second of `--to` are included whole.
    SameSecond,
    /// Entries the original's restore skipped (puts without data, unknown ops).
    SkippedEntries,
}

/// One warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// One line for people.
    pub message: String,
}

impl Warning {
    /// A warning of `kind`.
    pub fn new(kind: WarningKind, message: impl Into<String>) -> Warning {
        Warning {
            kind,
            message: message.into(),
        }
    }
}

/// One full backup found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FullSummary {
    /// Its second.
    pub secs: i64,
    /// Its chunks.
    pub chunks: usize,
    /// Compressed bytes.
    pub bytes: u64,
    /// What the old format tells of it.
    pub status: FullStatus,
}

/// What the old format tells of a full backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "why", rename_all = "snake_case")]
pub enum FullStatus {
    /// `LATEST_STATE_FULL` names it.
    Complete,
    /// Older than `LATEST_STATE_FULL`: probably complete, not provably.
    Unverified,
    /// It did not finish (why).
    Interrupted(String),
}

/// Chunks of one series found under the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeriesSummary {
    /// Chunks.
    pub chunks: usize,
    /// Runs (directories).
    pub runs: usize,
    /// Compressed bytes.
    pub bytes: u64,
    /// First and last run second.
    pub span: Option<(i64, i64)>,
}

/// What an import found, chose and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// The store read.
    pub store: String,
    /// Every full backup found.
    pub full_backups: Vec<FullSummary>,
    /// Partial chunks found.
    pub partials: SeriesSummary,
    /// Event chunks found.
    pub events: SeriesSummary,
    /// The second asked for (`None`: the newest state).
    pub target_secs: Option<i64>,
    /// The full backup used.
    pub full_used: i64,
    /// Partial chunks applied after it.
    pub partial_chunks_used: usize,
    /// The newest run applied: the state is as of that run's start.
    pub state_as_of_secs: i64,
    /// Event chunks read (enqueued or skipped).
    pub event_chunks_used: usize,
    /// Entries read from state chunks.
    pub state_entries: u64,
    /// Puts applied.
    pub puts: u64,
    /// Deletes applied.
    pub deletes: u64,
    /// Entries skipped as the original's restore skipped them.
    pub skipped_entries: u64,
    /// Event entries read.
    pub event_entries: u64,
    /// Events enqueued into Tito's queue.
    pub events_enqueued: u64,
    /// Event times read as seconds (below 10^11) and turned into milliseconds.
    pub event_times_in_seconds: u64,
    /// Compressed bytes downloaded (every chunk used is read twice: checked, then applied).
    pub bytes_downloaded: u64,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// True for a check only: nothing was written.
    pub dry_run: bool,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl ImportReport {
    /// Has a warning of `kind`.
    pub fn has(&self, kind: WarningKind) -> bool {
        self.warnings.iter().any(|w| w.kind == kind)
    }

    /// Has a collision warning about run `secs` of `kind`.
    pub(crate) fn has_collision(&self, kind: Kind, secs: i64) -> bool {
        let prefix = format!("{} run {secs}:", series(kind));
        self.warnings
            .iter()
            .any(|w| w.kind == WarningKind::Collision && w.message.starts_with(&prefix))
    }

    /// What was found, for people.
    pub fn found_lines(&self) -> Vec<String> {
        let mut out = vec![format!("found in {}:", self.store)];
        let fulls: Vec<String> = self
            .full_backups
            .iter()
            .map(|f| {
                let status = match &f.status {
                    FullStatus::Complete => "complete".to_string(),
                    FullStatus::Unverified => "unverified".to_string(),
                    FullStatus::Interrupted(_) => "interrupted".to_string(),
                };
                format!("{} ({} chunks, {status})", f.secs, f.chunks)
            })
            .collect();
        out.push(format!(
            "  full backups: {}{}",
            self.full_backups.len(),
            if fulls.is_empty() {
                String::new()
            } else {
                format!(": {}", fulls.join(", "))
            }
        ));
        let ends = self
            .full_backups
            .iter()
            .map(|f| (f.secs, f.secs))
            .chain(self.partials.span)
            .chain(self.events.span);
        if let Some((a, b)) = ends.reduce(|(a, b), (c, d)| (a.min(c), b.max(d))) {
            out.push(format!(
                "  time span: seconds {a}..{b} (unix time; runs are named by the second)"
            ));
        }
        for (name, s) in [("partial", &self.partials), ("event", &self.events)] {
            out.push(format!(
                "  {name} chunks: {} in {} runs{}",
                s.chunks,
                s.runs,
                s.span
                    .map(|(a, b)| format!(", seconds {a}..{b}"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

/// The name of a series, for messages.
pub fn series(kind: Kind) -> &'static str {
    match kind {
        Kind::Full => "full backup",
        Kind::Partial => "partial",
        Kind::Events => "events",
    }
}
