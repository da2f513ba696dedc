//! The catalog of a backup repository and the planning built on it: timelines, coverage
//! and gaps ([`catalog`]), restore plans ([`restore_plan`]), retention plans
//! ([`retention_plan`]), log compaction plans ([`compaction_plan`]). Pure logic: the caller lists the store and decodes documents.
#![warn(missing_docs)]

pub mod catalog;
pub mod compaction_plan;
pub mod restore_plan;
pub mod retention_plan;

pub use catalog::{
    Catalog, DamagedSnapshot, IncompleteSnapshot, ObjectInfo, Overlap, Problem, RestorableRange,
    Run, SegmentInfo, SnapshotInfo, TimelineInfo,
};
pub use compaction_plan::{CompactionPolicy, Merge, plan_compaction};
pub use restore_plan::{PlanError, PlannedSegment, PlannedSnapshot, RestorePlan, Target};
pub use retention_plan::{
    Kept, LostRestorePoint, RetentionPlan, RetentionPolicy, plan_retention,
    referenced_shared_chunks,
};
