//! Compaction planning: which runs of small log segments to merge into one larger segment.
//!
//! Levels are time windows (level 1 a minute, level 2 an hour, level 3 a day by default),
//! aligned to the Unix epoch, each a multiple of the one below. A segment belongs to the
//! level-k window holding its first record's commit time. A window is *closed* once its
//! timeline holds a segment starting at or after the window's end: the shipper ships in LSN
//! order and commit times never decrease, so no record of a closed window is still to come.
//! Merging at level k takes, per closed level-k window, the chain of segments restore would
//! use (from the first LSN, at each step the segment reaching furthest), cut at gaps and
//! wherever the stored bytes would pass `max_segment_bytes`, and merges every piece of two or
//! more segments into one. Levels run bottom-up, so a level-(k+1) window usually merges its
//! level-k outputs, and each record is rewritten once per level.
//!
//! Deletes are safe by construction: a merge deletes only segments of its window whose LSN
//! range lies inside the merged one's, after the merged one is durable; a window whose chain
//! is already one segment only gets its covered leftovers deleted (the second half of a merge
//! a crash interrupted). Windows holding overlapping segments whose names disagree (two
//! copies of a database shipped there) are left alone: which one is right is for a person to
//! decide. Object names are unchanged, so the result is an ordinary repository that any
//! build reads.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, SegmentInfo, TimelineInfo};

/// How to compact: the level windows and the largest merged segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionPolicy {
    /// Window of each level in milliseconds, level 1 first; each a multiple of the previous.
    pub windows_ms: Vec<u64>,
    /// Stored bytes a merge's inputs add up to at most (a window holding more becomes several
    /// merged segments). Keeps a merged segment within what restore downloads and decodes at
    /// once: 4 MiB by default, about the 16 MiB of records a shipped segment holds at most.
    pub max_segment_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            windows_ms: vec![60_000, 3_600_000, 86_400_000],
            max_segment_bytes: 4 << 20,
        }
    }
}

impl CompactionPolicy {
    /// Check the windows: at least one, none zero, each a multiple of the previous.
    pub fn validate(&self) -> Result<(), String> {
        if self.windows_ms.is_empty() {
            return Err("compaction needs at least one level window".into());
        }
        let mut prev = 1;
        for (i, &w) in self.windows_ms.iter().enumerate() {
            if w == 0 || w % prev != 0 || (i > 0 && w == prev) {
                return Err(format!(
                    "compaction level {} window of {w} ms must be a larger multiple of the level below ({prev} ms)",
                    i + 1
                ));
            }
            prev = w;
        }
        if self.max_segment_bytes == 0 {
            return Err("the largest merged segment must be more than 0 bytes".into());
        }
        Ok(())
    }

    /// The size class of a segment for reports: 0 if its records span under a second, `k` if
    /// they span under the level-k window, one more than the top level otherwise. (Levels are
    /// not in object names; this is what status counts.)
    pub fn level_of(&self, s: &SegmentInfo) -> usize {
        let span = s.t1.saturating_sub(s.t0);
        if span < 1000 {
            return 0;
        }
        self.windows_ms
            .iter()
            .position(|&w| span < w)
            .map_or(self.windows_ms.len() + 1, |i| i + 1)
    }

    /// Segment counts by [`CompactionPolicy::level_of`], index = level.
    pub fn level_counts(&self, segments: &[SegmentInfo]) -> Vec<u64> {
        let mut counts = vec![0u64; self.windows_ms.len() + 2];
        for s in segments {
            counts[self.level_of(s)] += 1;
        }
        counts
    }
}

/// One merge: read `inputs` in order, write one segment of LSNs `first..=last`, and once it
/// is durable delete `delete`. With one input nothing is written: the input already is the
/// merged segment and only covered leftovers are deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Merge {
    /// Timeline.
    pub timeline: u64,
    /// Level (1-based) whose window this merge fills.
    pub level: usize,
    /// Start of the window (ms since the epoch).
    pub window_start_ms: u64,
    /// The segments to read, in LSN order, each starting at or before the LSN after the
    /// previous one's last (records an input repeats are skipped).
    pub inputs: Vec<SegmentInfo>,
    /// First LSN of the merged segment.
    pub first: u64,
    /// Last LSN of the merged segment.
    pub last: u64,
    /// Commit time of record `first`.
    pub t0: u64,
    /// Commit time of record `last`.
    pub t1: u64,
    /// Keys to delete once the merged segment is durable: the inputs and every other segment
    /// of the window inside `first..=last`, never the merged segment's own key.
    pub delete: Vec<String>,
}

impl Merge {
    /// True if this merge writes a segment (two or more inputs).
    pub fn writes(&self) -> bool {
        self.inputs.len() > 1
    }

    /// The merged segment's key.
    pub fn output_key(&self) -> String {
        tito_format::layout::segment(self.timeline, self.first, self.last, self.t0, self.t1)
    }

    /// Stored bytes of the inputs.
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|s| s.size).sum()
    }
}

/// The merges of level `level` (1-based) over every timeline of `catalog`, oldest first.
pub fn plan_compaction(catalog: &Catalog, policy: &CompactionPolicy, level: usize) -> Vec<Merge> {
    catalog
        .timelines
        .values()
        .flat_map(|tl| plan_timeline(tl, policy, level))
        .collect()
}

/// The merges of level `level` on one timeline.
pub fn plan_timeline(tl: &TimelineInfo, policy: &CompactionPolicy, level: usize) -> Vec<Merge> {
    let Some(&window) = level.checked_sub(1).and_then(|i| policy.windows_ms.get(i)) else {
        return Vec::new();
    };
    let Some(newest_start) = tl.segments.iter().map(|s| s.t0).max() else {
        return Vec::new();
    };
    // Windows by start, each with its segments (sorted by first LSN as the catalog keeps them).
    let mut windows: Vec<(u64, Vec<&SegmentInfo>)> = Vec::new();
    for s in &tl.segments {
        let start = s.t0 - s.t0 % window;
        if start.saturating_add(window) > newest_start {
            continue; // not closed: the shipper may still add to it
        }
        // Times grow with LSNs, so a segment's window is nearly always the last one seen.
        match windows.iter_mut().rev().find(|(w, _)| *w == start) {
            Some((_, segs)) => segs.push(s),
            None => windows.push((start, vec![s])),
        }
    }
    windows.sort_by_key(|(w, _)| *w);
    let mut out = Vec::new();
    for (start, segs) in windows {
        if has_disagreeing_overlap(tl, &segs) {
            continue;
        }
        for piece in chain_pieces(&segs, policy.max_segment_bytes) {
            let first = piece[0];
            let last = *piece.last().expect("pieces are never empty");
            let (lo, hi) = (first.first, last.last);
            let t0 = first.t0;
            let t1 = last.t1;
            let output = tito_format::layout::segment(tl.timeline, lo, hi, t0, t1);
            let delete: Vec<String> = segs
                .iter()
                .filter(|s| s.first >= lo && s.last <= hi && s.key != output)
                .map(|s| s.key.clone())
                .collect();
            if piece.len() < 2 && delete.is_empty() {
                continue;
            }
            out.push(Merge {
                timeline: tl.timeline,
                level,
                window_start_ms: start,
                inputs: piece.into_iter().cloned().collect(),
                first: lo,
                last: hi,
                t0,
                t1,
                delete,
            });
        }
    }
    out
}

/// True if a segment of `segs` overlaps another segment of the timeline with names that
/// disagree on commit times.
fn has_disagreeing_overlap(tl: &TimelineInfo, segs: &[&SegmentInfo]) -> bool {
    tl.overlaps
        .iter()
        .filter(|o| !o.consistent)
        .any(|o| segs.iter().any(|s| s.key == o.earlier || s.key == o.later))
}

/// The restore chain through `segs` (sorted by first LSN), cut at gaps and before a segment
/// that would take a piece past `max_bytes`.
fn chain_pieces<'a>(segs: &[&'a SegmentInfo], max_bytes: u64) -> Vec<Vec<&'a SegmentInfo>> {
    let mut pieces: Vec<Vec<&SegmentInfo>> = Vec::new();
    let mut bytes = 0u64;
    let mut reached: Option<u64> = None;
    let mut i = 0;
    while i < segs.len() {
        let next = reached.map_or(segs[i].first, |r| r + 1);
        // Of the segments holding `next`, the one reaching furthest (as restore picks).
        let best = segs
            .iter()
            .filter(|s| s.first <= next && next <= s.last)
            .max_by_key(|s| s.last);
        let s = match best {
            Some(s) => *s,
            None => {
                // A gap, or the end: start over at the next segment beginning after `next`.
                match segs.iter().find(|s| s.first > next) {
                    Some(s) => {
                        pieces.push(Vec::new());
                        bytes = 0;
                        *s
                    }
                    None => break,
                }
            }
        };
        let piece_is_open = pieces.last().is_some_and(|p| !p.is_empty());
        if !piece_is_open || bytes.saturating_add(s.size) > max_bytes {
            if pieces.last().is_none_or(|p| !p.is_empty()) {
                pieces.push(Vec::new());
            }
            bytes = 0;
        }
        pieces.last_mut().expect("a piece is open").push(s);
        bytes += s.size;
        reached = Some(s.last);
        i = segs
            .iter()
            .position(|x| x.last > s.last)
            .unwrap_or(segs.len());
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ObjectInfo;

    fn seg(first: u64, last: u64, t0: u64, t1: u64, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: tito_format::layout::segment(1, first, last, t0, t1),
            size,
            last_modified_ms: 0,
        }
    }

    fn policy() -> CompactionPolicy {
        CompactionPolicy {
            windows_ms: vec![10, 100],
            max_segment_bytes: 1000,
        }
    }

    fn catalog(objects: Vec<ObjectInfo>) -> Catalog {
        Catalog::build(objects, vec![], vec![], vec![])
    }

    #[test]
    fn closed_windows_merge_open_ones_wait() {
        // Window 0..10 holds LSNs 1..=3, window 10..20 holds 4..=5 (open: nothing starts at 20+).
        let cat = catalog(vec![
            seg(1, 1, 0, 0, 10),
            seg(2, 2, 3, 3, 10),
            seg(3, 3, 9, 9, 10),
            seg(4, 4, 10, 10, 10),
            seg(5, 5, 15, 15, 10),
        ]);
        let merges = plan_compaction(&cat, &policy(), 1);
        assert_eq!(merges.len(), 1);
        let m = &merges[0];
        assert_eq!((m.first, m.last, m.t0, m.t1), (1, 3, 0, 9));
        assert_eq!(m.inputs.len(), 3);
        assert_eq!(m.delete.len(), 3);
        assert!(m.writes());
        // The top level's window 0..100 is open.
        assert!(plan_compaction(&cat, &policy(), 2).is_empty());
        assert!(plan_compaction(&cat, &policy(), 3).is_empty());
    }

    #[test]
    fn leftovers_of_an_interrupted_merge_are_deleted_only() {
        let cat = catalog(vec![
            seg(1, 3, 0, 9, 20),
            seg(1, 1, 0, 0, 10),
            seg(2, 2, 3, 3, 10),
            seg(3, 3, 9, 9, 10),
            seg(4, 4, 30, 30, 10),
        ]);
        let merges = plan_compaction(&cat, &policy(), 1);
        assert_eq!(merges.len(), 1);
        let m = &merges[0];
        assert!(!m.writes());
        assert_eq!(m.inputs[0].key, tito_format::layout::segment(1, 1, 3, 0, 9));
        assert_eq!(m.delete.len(), 3);
        assert!(!m.delete.contains(&m.output_key()));
    }

    #[test]
    fn gaps_and_the_size_cap_cut_pieces() {
        let cat = catalog(vec![
            seg(1, 1, 0, 0, 600),
            seg(2, 2, 1, 1, 600),
            seg(3, 3, 2, 2, 100),
            seg(5, 5, 3, 3, 10),
            seg(6, 6, 4, 4, 10),
            seg(7, 7, 50, 50, 10),
        ]);
        let merges = plan_compaction(&cat, &policy(), 1);
        let ranges: Vec<(u64, u64, bool)> = merges
            .iter()
            .map(|m| (m.first, m.last, m.writes()))
            .collect();
        // 1 alone (600 + 600 > 1000), 2..=3, then 5..=6 after the gap at 4.
        assert_eq!(ranges, vec![(2, 3, true), (5, 6, true)]);
    }

    #[test]
    fn disagreeing_overlaps_are_left_alone() {
        let cat = catalog(vec![
            seg(1, 2, 0, 5, 10),
            seg(2, 2, 6, 6, 10), // LSN 2 at 5 ms and at 6 ms: two different histories
            seg(3, 4, 8, 8, 10),
            seg(5, 5, 40, 40, 10),
        ]);
        assert!(plan_compaction(&cat, &policy(), 1).is_empty());
    }

    #[test]
    fn windows_must_nest() {
        assert!(CompactionPolicy::default().validate().is_ok());
        let bad = CompactionPolicy {
            windows_ms: vec![60, 90],
            ..CompactionPolicy::default()
        };
        assert!(bad.validate().is_err());
        assert!(
            CompactionPolicy {
                windows_ms: vec![],
                ..CompactionPolicy::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn levels_by_span() {
        let p = CompactionPolicy::default();
        let info = |t0, t1| SegmentInfo {
            key: String::new(),
            timeline: 1,
            first: 1,
            last: 2,
            t0,
            t1,
            size: 1,
        };
        assert_eq!(p.level_of(&info(0, 999)), 0);
        assert_eq!(p.level_of(&info(0, 59_000)), 1);
        assert_eq!(p.level_of(&info(0, 3_000_000)), 2);
        assert_eq!(p.level_of(&info(0, 80_000_000)), 3);
        assert_eq!(p.level_of(&info(0, 90_000_000)), 4);
    }
}
