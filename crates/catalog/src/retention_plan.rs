//! Retention planning: which objects a policy no longer needs.
//!
//! Safety rules, whatever the policy: a kept snapshot keeps every segment after it along
//! each lineage it serves; the PITR window keeps the newest starting point at or before its
//! start and the whole log after it, and every restore point created within it keeps the
//! newest starting point at or before its LSN and the log after it; snapshots without a
//! manifest younger than the grace period (still being written) are untouched, older ones
//! are garbage; damaged snapshots are reported and only deleted once older than the grace
//! period; a shared chunk (`chunks/`, incremental snapshots) is deleted only when no manifest
//! that stays references it and it is older than the grace period; the repository config, timeline histories and restore point documents are never
//! deleted; and the newest snapshot is always kept. Rules rank snapshots per timeline, and
//! every live timeline (one not retired by a restore that continued its database
//! elsewhere, so a database may still ship to it) keeps the newest starting point of its
//! lineage and the whole log after it, whatever the flags: its next backup never meets a
//! gap. Of each timeline's writer claims only the newest is kept. A restore point outside the window (or
//! under a policy without one) may become unrestorable: the plan names each such point
//! ([`RetentionPlan::lost_restore_points`]) so the caller can warn before deleting.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, ObjectInfo, SnapshotInfo};
use crate::restore_plan::Target;

const DAY_MS: u64 = 86_400_000;

/// What to keep. Policies add up: a snapshot kept by any of them is kept. An empty policy
/// keeps every snapshot (prune then only removes abandoned incomplete snapshots).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the newest N snapshots.
    pub keep_last: Option<usize>,
    /// Keep what restores any point within this many milliseconds before now.
    pub keep_within_ms: Option<u64>,
    /// Keep the newest snapshot of each of the last N days that have one.
    pub keep_daily: Option<usize>,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    pub keep_weekly: Option<usize>,
    /// Keep the newest snapshot of each of the last N months that have one.
    pub keep_monthly: Option<usize>,
}

impl RetentionPolicy {
    /// True if no rule is set.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within_ms.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
    }
}

/// A kept snapshot and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// Timeline.
    pub timeline: u64,
    /// LSN.
    pub lsn: u64,
    /// Manifest key.
    pub manifest_key: String,
    /// The rules keeping it.
    pub reasons: Vec<String>,
}

/// The outcome of planning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    /// Keys to delete, manifests before their chunks (an interrupted prune leaves at worst
    /// an incomplete snapshot, never a damaged one that looks complete).
    pub delete: Vec<String>,
    /// Total bytes of `delete`.
    pub delete_bytes: u64,
    /// Snapshots kept.
    pub kept: Vec<Kept>,
    /// Human-readable reasons: one line per kept snapshot, then one per damaged snapshot
    /// (deleted or kept for now).
    pub reasons: Vec<String>,
    /// Restore points restorable before this plan runs and not after it. Labels are kept
    /// restorable only by the PITR window (`keep_within_ms`); other rules keep snapshots,
    /// and a label older than every kept one is let go: the caller should say so.
    pub lost_restore_points: Vec<LostRestorePoint>,
}

/// A restore point a plan makes unrestorable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostRestorePoint {
    /// Its label.
    pub name: String,
    /// Timeline of the labelled position.
    pub timeline: u64,
    /// The labelled LSN.
    pub lsn: u64,
    /// Why a restore to it would fail afterwards (the restore planner's error).
    pub why: String,
}

impl RetentionPlan {
    /// Bytes freed.
    pub fn bytes_freed(&self) -> u64 {
        self.delete_bytes
    }

    /// Number of kept snapshots.
    pub fn kept_snapshots(&self) -> usize {
        self.kept.len()
    }

    /// LSN of the oldest kept snapshot.
    pub fn oldest_kept_lsn(&self) -> Option<u64> {
        self.kept.iter().map(|k| k.lsn).min()
    }
}

/// Plan what `policy` lets go at `now_ms`.
pub fn plan_retention(
    catalog: &Catalog,
    policy: &RetentionPolicy,
    now_ms: u64,
    grace_ms: u64,
) -> RetentionPlan {
    let mut snapshots: Vec<&SnapshotInfo> = catalog
        .timelines
        .values()
        .flat_map(|t| t.snapshots.iter())
        .collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse((s.finished_ms, s.lsn)));
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    fn keep(reasons: &mut BTreeMap<String, Vec<String>>, s: &SnapshotInfo, why: String) {
        reasons.entry(s.manifest_key.clone()).or_default().push(why);
    }

    if policy.is_empty() {
        for s in &snapshots {
            keep(&mut reasons, s, "no retention rule set".into());
        }
    }
    // Rules rank the snapshots of each timeline on their own: a restored copy's
    // snapshots never push its source's out.
    let mut by_timeline: BTreeMap<u64, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in &snapshots {
        by_timeline.entry(s.timeline).or_default().push(s);
    }
    if let Some(n) = policy.keep_last {
        for group in by_timeline.values() {
            for s in group.iter().take(n) {
                keep(
                    &mut reasons,
                    s,
                    format!("one of the last {n} of timeline {}", s.timeline),
                );
            }
        }
    }
    for (n, period, name) in [
        (policy.keep_daily, Period::Day, "daily"),
        (policy.keep_weekly, Period::Week, "weekly"),
        (policy.keep_monthly, Period::Month, "monthly"),
    ] {
        let Some(n) = n else { continue };
        for group in by_timeline.values() {
            let mut seen = BTreeSet::new();
            for s in group {
                let bucket = period.bucket(s.finished_ms);
                if seen.len() < n && seen.insert(bucket) {
                    keep(
                        &mut reasons,
                        s,
                        format!("{name} ({})", period.describe(bucket)),
                    );
                }
            }
        }
    }
    // Starting points each timeline's kept log must be reachable from.
    let mut floors: Vec<(u64, u64)> = Vec::new(); // (timeline, base LSN)
    // A live timeline's next backup continues its log: keep its newest starting point
    // and everything after it, whatever the policy.
    for tl in catalog.live_timelines() {
        let lineage = catalog.lineage(tl);
        if let Some(b) = catalog.bases(&lineage).last() {
            floors.push((tl, b.lsn));
            if let Some(s) = b.snapshot {
                keep(
                    &mut reasons,
                    s,
                    format!("newest snapshot of live timeline {tl}"),
                );
            }
        }
    }
    if let Some(window) = policy.keep_within_ms {
        let start = now_ms.saturating_sub(window);
        for &tl in catalog.timelines.keys() {
            let lineage = catalog.lineage(tl);
            let bases = catalog.bases(&lineage);
            let base = bases
                .iter()
                .rev()
                .find(|b| b.time <= start)
                .or(bases.first());
            if let Some(b) = base {
                floors.push((tl, b.lsn));
                if let Some(s) = b.snapshot {
                    keep(
                        &mut reasons,
                        s,
                        format!("start of the {} s PITR window", window / 1000),
                    );
                }
            }
        }
        for s in snapshots.iter().filter(|s| s.finished_ms >= start) {
            keep(&mut reasons, s, "inside the PITR window".into());
        }
        // A restore point labelled within the window must stay restorable, whatever its LSN.
        for p in catalog
            .restore_points
            .iter()
            .filter(|p| p.created_ms >= start)
        {
            let lineage = catalog.lineage(p.timeline);
            let bases = catalog.bases(&lineage);
            if let Some(b) = bases.iter().rev().find(|b| b.lsn <= p.lsn) {
                floors.push((p.timeline, b.lsn));
                if let Some(s) = b.snapshot {
                    keep(
                        &mut reasons,
                        s,
                        format!("base of restore point {:?}", p.name),
                    );
                }
            }
        }
    }
    if let Some(newest) = snapshots.first() {
        if reasons.is_empty() {
            keep(
                &mut reasons,
                newest,
                "the newest snapshot is always kept".into(),
            );
        }
    }

    let kept: Vec<Kept> = snapshots
        .iter()
        .filter_map(|s| {
            reasons.get(&s.manifest_key).map(|r| Kept {
                timeline: s.timeline,
                lsn: s.lsn,
                manifest_key: s.manifest_key.clone(),
                reasons: r.clone(),
            })
        })
        .collect();

    // Segments: every kept snapshot keeps the log after it along each lineage it serves.
    for &tl in catalog.timelines.keys() {
        let lineage = catalog.lineage(tl);
        for b in catalog.bases(&lineage) {
            if b.snapshot
                .is_some_and(|s| reasons.contains_key(&s.manifest_key))
            {
                floors.push((tl, b.lsn));
            }
        }
    }
    // Without any snapshot the log itself is the only way back (from the empty state of a
    // root timeline): keep all of it.
    if snapshots.is_empty() {
        floors.extend(catalog.timelines.keys().map(|&tl| (tl, 0)));
    }
    let mut keep_segments: BTreeSet<&str> = BTreeSet::new();
    for &(tl, base) in &floors {
        for (x, from, to) in catalog.lineage(tl) {
            if let Some(info) = catalog.timelines.get(&x) {
                for s in &info.segments {
                    if s.last >= from.max(base + 1) && s.first <= to {
                        keep_segments.insert(&s.key);
                    }
                }
            }
        }
    }
    // A timeline's kept log stays one run: deleting segments between two kept ones would
    // leave a gap that every later listing reports as damage (for example between the start
    // of a retired timeline that a child timeline's lineage needs and the log its own kept
    // snapshots need).
    for info in catalog.timelines.values() {
        let kept = info
            .segments
            .iter()
            .filter(|s| keep_segments.contains(s.key.as_str()));
        let lo = kept.clone().map(|s| s.first).min();
        let hi = kept.map(|s| s.last).max();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            for s in info
                .segments
                .iter()
                .filter(|s| s.first >= lo && s.last <= hi)
            {
                keep_segments.insert(&s.key);
            }
        }
    }

    let mut plan = RetentionPlan {
        reasons: kept
            .iter()
            .map(|k| {
                format!(
                    "keep {} (LSN {}): {}",
                    k.manifest_key,
                    k.lsn,
                    k.reasons.join(", ")
                )
            })
            .collect(),
        kept,
        ..RetentionPlan::default()
    };
    let sizes: BTreeMap<&str, u64> = catalog
        .objects
        .iter()
        .map(|o| (o.key.as_str(), o.size))
        .collect();
    let delete = |key: String, plan: &mut RetentionPlan| {
        plan.delete_bytes += sizes.get(key.as_str()).copied().unwrap_or(0);
        plan.delete.push(key);
    };
    for s in snapshots
        .iter()
        .filter(|s| !reasons.contains_key(&s.manifest_key))
    {
        delete(s.manifest_key.clone(), &mut plan);
        // Its own chunks go with it; shared ones only once no kept manifest references
        // them (below).
        for c in s.chunks.iter().filter(|c| !c.is_shared()) {
            delete(c.object_key(&s.dir), &mut plan);
        }
    }
    for info in catalog.timelines.values() {
        for s in info
            .segments
            .iter()
            .filter(|s| !keep_segments.contains(s.key.as_str()))
        {
            delete(s.key.clone(), &mut plan);
        }
    }
    // Writer claims: only the newest of each timeline decides anything.
    for info in catalog.timelines.values() {
        if let Some((_, older)) = info.claim_keys.split_last() {
            for k in older {
                delete(k.clone(), &mut plan);
            }
        }
    }
    for inc in &catalog.incomplete {
        if inc.newest_ms.saturating_add(grace_ms) <= now_ms {
            for k in &inc.keys {
                delete(k.clone(), &mut plan);
            }
        }
    }
    for d in &catalog.damaged {
        if d.newest_ms.saturating_add(grace_ms) <= now_ms {
            plan.reasons.push(format!(
                "delete damaged snapshot {} (older than the grace period)",
                d.manifest_key
            ));
            // The manifest first: an interrupted prune leaves an incomplete snapshot.
            let (manifest, rest): (Vec<&String>, Vec<&String>) =
                d.keys.iter().partition(|k| **k == d.manifest_key);
            for k in manifest.into_iter().chain(rest) {
                delete(k.clone(), &mut plan);
            }
        } else {
            plan.reasons.push(format!(
                "damaged snapshot {} kept for now (younger than the grace period)",
                d.manifest_key
            ));
        }
    }
    // Shared chunks, last (after every manifest that references them): one goes once no
    // manifest that stays references it and it is older than the grace period, since a
    // snapshot being written uploads its new chunks before its manifest.
    let deleted: BTreeSet<&str> = plan.delete.iter().map(String::as_str).collect();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for s in snapshots
        .iter()
        .filter(|s| !deleted.contains(s.manifest_key.as_str()))
    {
        referenced.extend(s.shared_chunk_keys());
    }
    for d in catalog
        .damaged
        .iter()
        .filter(|d| !deleted.contains(d.manifest_key.as_str()))
    {
        referenced.extend(d.shared.iter().cloned());
    }
    let (old, young): (Vec<&ObjectInfo>, Vec<&ObjectInfo>) = catalog
        .shared_chunks
        .iter()
        .filter(|o| !referenced.contains(&o.key))
        .partition(|o| o.last_modified_ms.saturating_add(grace_ms) <= now_ms);
    if !young.is_empty() {
        plan.reasons.push(format!(
            "{} unreferenced shared chunk(s) kept for now (younger than the grace period: a \
             snapshot being written may be about to reference them)",
            young.len()
        ));
    }
    for o in old {
        delete(o.key.clone(), &mut plan);
    }
    plan.lost_restore_points = lost_restore_points(catalog, &plan.delete);
    plan
}

/// The shared chunks (`chunks/`) that some manifest of `catalog` references: a prune that
/// planned from an older listing must not delete these (a snapshot finished since).
pub fn referenced_shared_chunks(catalog: &Catalog) -> BTreeSet<String> {
    let mut referenced = BTreeSet::new();
    for info in catalog.timelines.values() {
        for s in &info.snapshots {
            referenced.extend(s.shared_chunk_keys());
        }
    }
    for d in &catalog.damaged {
        referenced.extend(d.shared.iter().cloned());
    }
    referenced
}

/// Restore points the restore planner can reach now but not once `delete` is gone.
fn lost_restore_points(catalog: &Catalog, delete: &[String]) -> Vec<LostRestorePoint> {
    if delete.is_empty() || catalog.restore_points.is_empty() {
        return Vec::new();
    }
    let after = catalog.after_deleting(delete);
    catalog
        .restore_points
        .iter()
        .filter_map(|p| {
            let target = Target::Label(p.name.clone());
            catalog.plan(&target, None).ok()?;
            let why = after.plan(&target, None).err()?;
            Some(LostRestorePoint {
                name: p.name.clone(),
                timeline: p.timeline,
                lsn: p.lsn,
                why: why.to_string(),
            })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    fn bucket(self, ms: u64) -> u64 {
        let day = ms / DAY_MS;
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: shift so weeks start on Monday.
            Period::Week => (day + 3) / 7,
            Period::Month => {
                let (y, m) = civil_month(day as i64);
                (y as u64) * 12 + (m as u64 - 1)
            }
        }
    }

    fn describe(self, bucket: u64) -> String {
        match self {
            Period::Day => format!("day {bucket} since the epoch"),
            Period::Week => format!("week {bucket} since the epoch"),
            Period::Month => format!("{}-{:02}", bucket / 12, bucket % 12 + 1),
        }
    }
}

/// Year and month of a day number since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::civil_month;

    #[test]
    fn months() {
        assert_eq!(civil_month(0), (1970, 1));
        assert_eq!(civil_month(31), (1970, 2));
        assert_eq!(civil_month(20_420), (2025, 11)); // 2025-11-28
        assert_eq!(civil_month(11_016), (2000, 2)); // 2000-02-29
    }
}
