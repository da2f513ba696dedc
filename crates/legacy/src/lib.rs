//! Importing backups written by the original backup module
//! (`shared/reference/original-backup.rs`) into a Tito database.
//!
//! An old backup root holds `state/full/<secs>/chunk-NNNN.json.gz` (full backups),
//! `state/partial/<secs>/chunk-NNNN.json.gz` (shipped change log), `events/<secs>/...`
//! (archived queue events), each a gzip'd JSON array, and the markers `LATEST_STATE_FULL`,
//! `LATEST_STATE_PARTIAL`, `LATEST_EVENTS`. [`import`] rebuilds the state the original's
//! `restore(timestamp, partition_count)` meant to produce at a time (the newest full
//! backup at or before it that is not known to be interrupted, then the partial chunks
//! after it in run and chunk-number order, deletes applied, values as the compact JSON the
//! original wrote) and reports what the old format cannot guarantee instead of
//! reproducing its flaws.
//!
//! Modules, one step each: [`layout`] (object names, listing the root), [`chunk`]
//! (streaming decode of one chunk), [`plan`] (which full backup, which partials in which
//! order, which event chunks, warnings), [`check`] (read every chosen chunk before the
//! target is touched), [`apply`] (the target: checked empty, marked partial, written in
//! captured batches), [`report`] (what was found and done). [`original`] re-implements the
//! original writer, quirks included, for tests and benchmarks.
#![warn(missing_docs)]

pub mod apply;
pub mod check;
pub mod chunk;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
pub mod original;
pub mod plan;
pub mod report;

pub use apply::{EventsMode, ImportOptions, Prepared, apply, import, prepare};
pub use error::LegacyError;
pub use plan::{Plan, plan};
pub use report::{ImportReport, Warning, WarningKind};
