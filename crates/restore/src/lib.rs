//! Restore and verify: plan from the catalog, verify every object before touching data
//! (each object downloaded once), load the snapshot in bulk, replay the log up to the target (whole transactions
//! only), re-partition queue events if asked, and hand the database a new timeline.
#![warn(missing_docs)]

pub mod error;
mod overlay;
pub mod progress;
pub mod queue;
pub mod restore;
mod spool;
pub mod target;
pub mod verify;

pub use error::RestoreError;
pub use progress::{NoProgress, Progress};
pub use restore::{Lineage, RestoreOptions, RestoreResult, restore, restore_with_catalog};
pub use target::parse_target;
pub use verify::{Problem, VerifyReport, verify_repository};
