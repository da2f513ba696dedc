//! Restore planning: for a target (latest, a time, an LSN, a label) pick one snapshot and
//! the contiguous chain of segments after it, along the target timeline's lineage.

use serde::Serialize;
use thiserror::Error;
use tito_format::ChunkEntry;

use crate::catalog::{Catalog, RestorableRange, SegmentInfo, SnapshotInfo};

/// Where to restore to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    /// The end of the contiguous log.
    Latest,
    /// The state after every record committed at or before this time (ms since the epoch).
    Time(u64),
    /// The state right after the record with this LSN.
    Lsn(u64),
    /// A named restore point.
    Label(String),
}

/// The snapshot a plan starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedSnapshot {
    /// Timeline it was taken on.
    pub timeline: u64,
    /// The LSN it reflects.
    pub lsn: u64,
    /// Commit time of that LSN.
    pub lsn_time_ms: u64,
    /// Folder of its objects (empty for the implicit empty base).
    pub dir: String,
    /// Manifest key (empty for the implicit empty base).
    pub manifest_key: String,
    /// Its chunks.
    pub chunks: Vec<ChunkEntry>,
    /// Pairs held.
    pub total_count: u64,
    /// True for the empty state before LSN 1 of a root timeline (no objects).
    pub implicit_empty: bool,
}

impl PlannedSnapshot {
    fn from_info(s: &SnapshotInfo) -> Self {
        PlannedSnapshot {
            timeline: s.timeline,
            lsn: s.lsn,
            lsn_time_ms: s.lsn_time_ms,
            dir: s.dir.clone(),
            manifest_key: s.manifest_key.clone(),
            chunks: s.chunks.clone(),
            total_count: s.total_count,
            implicit_empty: false,
        }
    }

    fn empty(timeline: u64) -> Self {
        PlannedSnapshot {
            timeline,
            lsn: 0,
            lsn_time_ms: 0,
            dir: String::new(),
            manifest_key: String::new(),
            chunks: Vec::new(),
            total_count: 0,
            implicit_empty: true,
        }
    }
}

/// A segment of a plan, with the last LSN to take from it (a parent timeline's segment may
/// run past the branch point; records after `through` belong to the parent only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedSegment {
    /// The segment.
    #[serde(flatten)]
    pub segment: SegmentInfo,
    /// Apply records of this segment only up to this LSN.
    pub through: u64,
}

/// A restore plan: start from `snapshot`, replay `segments` in order, stop after `stop_lsn`
/// or before the first record later than `stop_time_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// The target asked for.
    pub target: Target,
    /// The timeline restored.
    pub timeline: u64,
    /// Starting snapshot.
    pub snapshot: PlannedSnapshot,
    /// Segments to replay, in LSN order, contiguous from `snapshot.lsn + 1`.
    pub segments: Vec<PlannedSegment>,
    /// Apply no record with a greater LSN.
    pub stop_lsn: u64,
    /// Apply no record committed later than this (time targets).
    pub stop_time_ms: Option<u64>,
}

impl RestorePlan {
    /// Every object the plan needs, with its expected size.
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .snapshot
            .chunks
            .iter()
            .map(|c| (c.object_key(&self.snapshot.dir), c.size))
            .collect();
        out.extend(
            self.segments
                .iter()
                .map(|s| (s.segment.key.clone(), s.segment.size)),
        );
        out
    }

    /// Stored bytes the plan reads.
    pub fn bytes(&self) -> u64 {
        self.objects().iter().map(|(_, s)| s).sum()
    }
}

/// Why no plan reaches a target.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The repository holds no timeline at all.
    #[error("the backup repository is empty: nothing has been backed up yet (run `tito backup`)")]
    Empty,
    /// The timeline asked for does not exist.
    #[error("timeline {timeline} does not exist; known timelines: {known:?}")]
    UnknownTimeline {
        /// Asked for.
        timeline: u64,
        /// What exists.
        known: Vec<u64>,
    },
    /// No restore point has this label.
    #[error("no restore point is labelled {name:?}; known labels: {known:?}")]
    UnknownLabel {
        /// Asked for.
        name: String,
        /// What exists.
        known: Vec<String>,
    },
    /// No complete snapshot at or before the target.
    #[error("no complete snapshot at or before {target} on timeline {timeline}; {earliest}")]
    NoSnapshot {
        /// The target, described.
        target: String,
        /// Timeline.
        timeline: u64,
        /// The earliest restorable point, described.
        earliest: String,
    },
    /// A time before the earliest restorable point.
    #[error(
        "time {requested_ms} ms is before the earliest restorable point on timeline {timeline} ({earliest})"
    )]
    TooEarly {
        /// Asked for.
        requested_ms: u64,
        /// Timeline.
        timeline: u64,
        /// The earliest restorable point, described.
        earliest: String,
    },
    /// The log has a hole between the snapshot and the target.
    #[error(
        "log gap on timeline {timeline}: LSNs {from}..={to} are missing (after {before}, before {after}); \
         restore to a point before LSN {from} or after a snapshot taken later"
    )]
    Gap {
        /// Timeline of the hole.
        timeline: u64,
        /// First missing LSN.
        from: u64,
        /// Last missing LSN (or the target if nothing follows).
        to: u64,
        /// The segment before the hole.
        before: String,
        /// The segment after it.
        after: String,
    },
    /// The target could mean more than one timeline, and they give different states.
    #[error(
        "restore target {target} is ambiguous: {} timelines could be meant, with different states: {}; \
         choose one with --timeline N",
        candidates.len(),
        candidates.iter().map(|(tl, what)| format!("timeline {tl} ({what})")).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The target, described.
        target: String,
        /// Each candidate timeline and what its plan reaches.
        candidates: Vec<(u64, String)>,
    },
    /// The target lies after the end of the shipped log.
    #[error(
        "LSN {requested} is beyond the end of the backed-up log on timeline {timeline}, which ends at LSN {end}"
    )]
    BeyondEnd {
        /// Asked for.
        requested: u64,
        /// Timeline.
        timeline: u64,
        /// The last LSN covered.
        end: u64,
    },
}

/// A starting point: a complete snapshot or the implicit empty state of a root timeline.
pub(crate) struct Base<'a> {
    pub(crate) lsn: u64,
    pub(crate) time: u64,
    pub(crate) timeline: u64,
    pub(crate) snapshot: Option<&'a SnapshotInfo>,
}

impl Base<'_> {
    fn planned(&self) -> PlannedSnapshot {
        match self.snapshot {
            Some(s) => PlannedSnapshot::from_info(s),
            None => PlannedSnapshot::empty(self.timeline),
        }
    }
}

/// A walk of the log along a lineage.
struct Chain {
    segments: Vec<PlannedSegment>,
    reached: u64,
    gap: Option<PlanError>,
}

impl Catalog {
    /// Plan a restore to `target` on `timeline`. A label names its own timeline. Without
    /// a timeline, every live timeline (for a time, the timeline its database was on at
    /// that time) is a candidate: the plan is the one they agree on, and if they reach
    /// different states the target is [`PlanError::Ambiguous`].
    pub fn plan(&self, target: &Target, timeline: Option<u64>) -> Result<RestorePlan, PlanError> {
        if timeline.is_some() || matches!(target, Target::Label(_)) {
            return self.plan_on(target, timeline);
        }
        let live = self.live_timelines();
        if live.is_empty() {
            // Every timeline retired cannot happen through Tito; plan on the newest.
            return self.plan_on(target, None);
        }
        let mut candidates: Vec<u64> = live
            .iter()
            .map(|&tl| match target {
                Target::Time(t) => self.timeline_at(tl, *t),
                _ => tl,
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut plans: Vec<RestorePlan> = Vec::new();
        let mut first_error = None;
        for tl in candidates.into_iter().rev() {
            match self.plan_on(target, Some(tl)) {
                Ok(p) => {
                    if !plans.iter().any(|q| self.same_state(q, &p)) {
                        plans.push(p);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match plans.len() {
            0 => Err(first_error.unwrap_or(PlanError::Empty)),
            1 => Ok(plans.remove(0)),
            _ => Err(PlanError::Ambiguous {
                target: describe_target(target),
                candidates: plans
                    .iter()
                    .rev()
                    .map(|p| (p.timeline, self.describe_candidate(p)))
                    .collect(),
            }),
        }
    }

    /// The log segments along `timeline`'s lineage that carry every record after `after`
    /// up to `until` (inclusive), as a plan would choose them from this catalog.
    ///
    /// A restore whose planned segments were merged away by compaction (or otherwise
    /// replaced) since it planned asks a freshly loaded catalog for the rest of its log.
    /// A hole, or a log that ends before `until`, is an error as in [`Catalog::plan`].
    pub fn log_after(
        &self,
        timeline: u64,
        after: u64,
        until: u64,
    ) -> Result<Vec<PlannedSegment>, PlanError> {
        if !self.timelines.contains_key(&timeline) {
            return Err(PlanError::UnknownTimeline {
                timeline,
                known: self.timelines.keys().copied().collect(),
            });
        }
        let lineage = self.lineage(timeline);
        let chain = self.chain(&lineage, after, until);
        if chain.reached < until {
            return Err(chain.gap.unwrap_or(PlanError::BeyondEnd {
                requested: until,
                timeline,
                end: chain.reached,
            }));
        }
        Ok(chain.segments)
    }

    /// True if two plans for the same target give the same state: they apply the same
    /// records, because they stop within the log their lineages share.
    fn same_state(&self, a: &RestorePlan, b: &RestorePlan) -> bool {
        let (fork, fork_time) = self.fork(a.timeline, b.timeline);
        match (a.stop_time_ms, b.stop_time_ms) {
            (Some(t), Some(_)) => {
                (a.stop_lsn <= fork && b.stop_lsn <= fork) || (fork_time > 0 && t < fork_time)
            }
            _ => a.stop_lsn == b.stop_lsn && a.stop_lsn <= fork,
        }
    }

    /// The last LSN up to which the lineages of two timelines take every record from the
    /// same timelines, and the commit time of that record where the branch recorded it
    /// (0 if unknown). Records after it may differ; their times are at least that time.
    fn fork(&self, a: u64, b: u64) -> (u64, u64) {
        let (la, lb) = (self.lineage(a), self.lineage(b));
        let mut fork = u64::MAX;
        for (pa, pb) in la.iter().zip(lb.iter()) {
            if pa.0 != pb.0 {
                fork = pa.1.saturating_sub(1);
                break;
            }
            if pa.2 != pb.2 {
                fork = pa.2.min(pb.2);
                break;
            }
        }
        if fork == u64::MAX {
            return (fork, 0);
        }
        // Timelines of either lineage that branched at the fork recorded its time.
        let times: Vec<u64> = la
            .iter()
            .chain(lb.iter())
            .filter_map(|(tl, _, _)| self.timelines.get(tl))
            .filter(|t| t.parent.is_some() && t.branch_lsn == fork)
            .map(|t| t.branch_time_ms)
            .collect();
        let time = if times.is_empty() || times.contains(&0) {
            0
        } else {
            times.into_iter().min().unwrap_or(0)
        };
        (fork, time)
    }

    fn describe_candidate(&self, p: &RestorePlan) -> String {
        let info = self.timelines.get(&p.timeline);
        let origin = match info.and_then(|i| i.parent) {
            Some(parent) => format!(
                "restored from timeline {parent} at LSN {}",
                info.map_or(0, |i| i.branch_lsn)
            ),
            None => "a root timeline".to_string(),
        };
        let reach = match p.stop_time_ms {
            Some(_) => format!("replays through at most LSN {}", p.stop_lsn),
            None => format!("reaches LSN {}", p.stop_lsn),
        };
        format!("{origin}, {reach}")
    }

    /// Plan on one timeline (default: the newest).
    fn plan_on(&self, target: &Target, timeline: Option<u64>) -> Result<RestorePlan, PlanError> {
        let (timeline, target_lsn) = match target {
            Target::Label(name) => {
                let point = self
                    .restore_points
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| PlanError::UnknownLabel {
                        name: name.clone(),
                        known: self.restore_points.iter().map(|p| p.name.clone()).collect(),
                    })?;
                (point.timeline, Some(point.lsn))
            }
            Target::Lsn(n) => (self.pick_timeline(timeline)?, Some(*n)),
            Target::Latest | Target::Time(_) => (self.pick_timeline(timeline)?, None),
        };
        if !self.timelines.contains_key(&timeline) {
            return Err(PlanError::UnknownTimeline {
                timeline,
                known: self.timelines.keys().copied().collect(),
            });
        }
        let lineage = self.lineage(timeline);
        let bases = self.bases(&lineage);
        let earliest = || describe_earliest(&bases);

        match (target, target_lsn) {
            (_, Some(lsn)) => {
                let base = bases.iter().rev().find(|b| b.lsn <= lsn).ok_or_else(|| {
                    PlanError::NoSnapshot {
                        target: format!("LSN {lsn}"),
                        timeline,
                        earliest: earliest(),
                    }
                })?;
                let chain = self.chain(&lineage, base.lsn, lsn);
                if chain.reached < lsn {
                    return Err(chain.gap.unwrap_or(PlanError::BeyondEnd {
                        requested: lsn,
                        timeline,
                        end: chain.reached,
                    }));
                }
                Ok(RestorePlan {
                    target: target.clone(),
                    timeline,
                    snapshot: base.planned(),
                    segments: chain.segments,
                    stop_lsn: lsn,
                    stop_time_ms: None,
                })
            }
            (Target::Time(t), None) => {
                let base = bases.iter().rev().find(|b| b.time <= *t).ok_or_else(|| {
                    PlanError::TooEarly {
                        requested_ms: *t,
                        timeline,
                        earliest: earliest(),
                    }
                })?;
                let chain = self.chain(&lineage, base.lsn, u64::MAX);
                let mut segments = Vec::new();
                let mut stop_lsn = base.lsn;
                let mut ended_before_t = true;
                for seg in chain.segments {
                    if seg.segment.t0 > *t {
                        ended_before_t = false;
                        break;
                    }
                    stop_lsn = seg.through;
                    // A segment cut at a branch point ends (for this lineage) at a record whose
                    // time its name does not give: keep going, replay stops at the time anyway.
                    let inside = seg.segment.t1 > *t && seg.through == seg.segment.last;
                    segments.push(seg);
                    if inside {
                        ended_before_t = false;
                        break;
                    }
                }
                // Records in a hole could be at or before `t`: never silently stop there.
                if ended_before_t {
                    if let Some(gap) = chain.gap {
                        return Err(gap);
                    }
                }
                Ok(RestorePlan {
                    target: target.clone(),
                    timeline,
                    snapshot: base.planned(),
                    segments,
                    stop_lsn,
                    stop_time_ms: Some(*t),
                })
            }
            _ => {
                let base = bases.last().ok_or_else(|| {
                    if self.timelines.is_empty() {
                        PlanError::Empty
                    } else {
                        PlanError::NoSnapshot {
                            target: "latest".into(),
                            timeline,
                            earliest: earliest(),
                        }
                    }
                })?;
                let chain = self.chain(&lineage, base.lsn, u64::MAX);
                // Latest never silently stops at a hole with more log after it.
                if let Some(gap) = chain.gap {
                    return Err(gap);
                }
                Ok(RestorePlan {
                    target: target.clone(),
                    timeline,
                    snapshot: base.planned(),
                    stop_lsn: chain.reached,
                    segments: chain.segments,
                    stop_time_ms: None,
                })
            }
        }
    }

    /// The points `timeline` can be restored to, at or after its branch LSN, as merged
    /// ranges: each base reaches as far as the log after it is contiguous.
    pub(crate) fn restorable_ranges(&self, timeline: u64) -> Vec<RestorableRange> {
        let lineage = self.lineage(timeline);
        let bases = self.bases(&lineage);
        let low = self.timelines.get(&timeline).map_or(0, |t| t.branch_lsn);
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for b in &bases {
            let reached = self.chain(&lineage, b.lsn, u64::MAX).reached;
            if reached < low {
                continue; // serves only points before this timeline existed
            }
            let from = b.lsn.max(low);
            match spans.last_mut() {
                // Bases are sorted by LSN: merge overlapping or adjacent spans.
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(reached),
                _ => spans.push((from, reached)),
            }
        }
        spans
            .into_iter()
            .map(|(from, to)| RestorableRange {
                from_lsn: from,
                from_time_ms: self.time_of(&lineage, &bases, from),
                to_lsn: to,
                to_time_ms: self.time_of(&lineage, &bases, to),
            })
            .collect()
    }

    /// Commit time of record `lsn` along `lineage`, if a snapshot or segment name gives it.
    fn time_of(&self, lineage: &[(u64, u64, u64)], bases: &[Base<'_>], lsn: u64) -> Option<u64> {
        if let Some(b) = bases.iter().find(|b| b.lsn == lsn) {
            return Some(b.time);
        }
        let &(tl, _, _) = lineage
            .iter()
            .find(|(_, from, to)| *from <= lsn && lsn <= *to)?;
        self.timelines.get(&tl)?.segments.iter().find_map(|s| {
            if s.first == lsn {
                Some(s.t0)
            } else if s.last == lsn {
                Some(s.t1)
            } else {
                None
            }
        })
    }

    fn pick_timeline(&self, timeline: Option<u64>) -> Result<u64, PlanError> {
        match timeline {
            Some(t) => Ok(t),
            None => self.newest_timeline().ok_or(PlanError::Empty),
        }
    }

    /// Usable starting points for a lineage, by LSN: complete snapshots of each portion,
    /// plus the empty state at LSN 0 if the lineage starts at a root timeline whose log
    /// from LSN 1 is here.
    pub(crate) fn bases<'a>(&'a self, lineage: &[(u64, u64, u64)]) -> Vec<Base<'a>> {
        let mut bases = Vec::new();
        // The empty state before LSN 1 is a base if the lineage starts at a root timeline
        // and the log's first record (LSN 1, from whichever timeline holds it) is here.
        let first_record_kept = lineage
            .iter()
            .find(|(_, from, to)| *from <= 1 && 1 <= *to)
            .and_then(|(tl, _, _)| self.timelines.get(tl))
            .is_some_and(|info| info.segments.iter().any(|s| s.first == 1));
        let root = lineage
            .first()
            .and_then(|&(root, from, _)| Some((root, from, self.timelines.get(&root)?)));
        if let Some((root, from, info)) = root {
            // A timeline branched at LSN 0 started empty too, even if its parent is gone.
            if from == 1 && (!info.has_history || info.branch_lsn == 0) && first_record_kept {
                bases.push(Base {
                    lsn: 0,
                    time: 0,
                    timeline: root,
                    snapshot: None,
                });
            }
        }
        for &(tl, from, to) in lineage {
            if let Some(info) = self.timelines.get(&tl) {
                for s in &info.snapshots {
                    if s.lsn + 1 >= from && s.lsn <= to {
                        bases.push(Base {
                            lsn: s.lsn,
                            time: s.lsn_time_ms,
                            timeline: tl,
                            snapshot: Some(s),
                        });
                    }
                }
            }
        }
        bases.sort_by_key(|b| (b.lsn, b.snapshot.map_or(0, |s| s.finished_ms)));
        bases
    }

    /// Walk segments along `lineage` from `after + 1` up to `until` (inclusive) or as far
    /// as the log is contiguous.
    fn chain(&self, lineage: &[(u64, u64, u64)], after: u64, until: u64) -> Chain {
        let mut chain = Chain {
            segments: Vec::new(),
            reached: after,
            gap: None,
        };
        while chain.reached < until {
            let next = chain.reached + 1;
            let Some(&(tl, _, to)) = lineage
                .iter()
                .find(|(_, from, to)| *from <= next && next <= *to)
            else {
                break;
            };
            let segments = self
                .timelines
                .get(&tl)
                .map(|i| i.segments.as_slice())
                .unwrap_or(&[]);
            let best = segments
                .iter()
                .filter(|s| s.first <= next && next <= s.last)
                .max_by_key(|s| s.last);
            match best {
                Some(s) => {
                    let through = s.last.min(to);
                    chain.segments.push(planned_segment(s, through));
                    chain.reached = through;
                }
                None => {
                    // The log resumes at the first segment after the hole anywhere further
                    // along the lineage (possibly on a child timeline past a branch point).
                    let following = lineage
                        .iter()
                        .filter(|(_, _, to)| *to > next)
                        .flat_map(|&(x, from, to)| {
                            let segs = self
                                .timelines
                                .get(&x)
                                .map(|i| i.segments.as_slice())
                                .unwrap_or(&[]);
                            segs.iter()
                                .filter(move |s| s.last >= from.max(next + 1) && s.first <= to)
                                .map(move |s| (s.first.max(from), s))
                        })
                        .min_by_key(|(start, _)| *start);
                    let before = chain
                        .segments
                        .last()
                        .map_or("the snapshot".to_string(), |s| s.segment.key.clone());
                    if let Some((start, s)) = following {
                        chain.gap = Some(PlanError::Gap {
                            timeline: tl,
                            from: next,
                            to: start - 1,
                            before,
                            after: s.key.clone(),
                        });
                    }
                    break;
                }
            }
        }
        chain
    }
}

fn planned_segment(s: &SegmentInfo, through: u64) -> PlannedSegment {
    PlannedSegment {
        segment: s.clone(),
        through,
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Latest => "latest".into(),
        Target::Time(t) => format!("time {t} ms"),
        Target::Lsn(n) => format!("lsn:{n}"),
        Target::Label(name) => format!("label:{name}"),
    }
}

fn describe_earliest(bases: &[Base<'_>]) -> String {
    match bases.first() {
        Some(b) if b.snapshot.is_none() => {
            "the earliest restorable point is the empty database before LSN 1".into()
        }
        Some(b) => format!(
            "the earliest restorable point is LSN {} (time {} ms)",
            b.lsn, b.time
        ),
        None => "no complete snapshot exists on this timeline yet (run `tito snapshot`)".into(),
    }
}
