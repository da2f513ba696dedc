//! Catalog, restore planning and retention on generated histories: several timelines,
//! gaps, overlapping segments, incomplete and damaged snapshots. Plans are checked against
//! a brute-force oracle of which LSNs a target needs and where each must come from;
//! retention is checked by planning again after its deletions.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tito_catalog::{
    Catalog, ObjectInfo, PlanError, RestorePlan, RetentionPolicy, Target, plan_retention,
};
use tito_format::layout;
use tito_format::{ChunkEntry, Manifest, RestorePoint, TimelineHistory};

/// A tiny deterministic generator, so one seed describes one history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Commit time of `lsn` on timeline `tl`: increases along every lineage.
fn time(tl: u64, lsn: u64) -> u64 {
    1_000_000 + lsn * 10 + tl
}

struct History {
    /// timeline -> (parent, branch, last LSN)
    timelines: BTreeMap<u64, (Option<u64>, u64, u64)>,
    objects: Vec<ObjectInfo>,
    manifests: Vec<Manifest>,
    histories: Vec<TimelineHistory>,
    points: Vec<RestorePoint>,
    now: u64,
}

fn chunk(n: u32) -> ChunkEntry {
    ChunkEntry {
        n,
        size: 100 + n as u64,
        first_key: vec![n as u8],
        last_key: vec![n as u8],
        count: 1,
        checksum: "0".repeat(64),
        hash: None,
        raw_bytes: None,
        content: None,
    }
}

fn generate(seed: u64) -> History {
    let mut rng = Rng(seed | 1);
    let mut h = History {
        timelines: BTreeMap::new(),
        objects: Vec::new(),
        manifests: Vec::new(),
        histories: Vec::new(),
        points: Vec::new(),
        now: 0,
    };
    let count = 1 + rng.below(3);
    for tl in 1..=count {
        let (parent, branch) = if tl == 1 {
            (None, 0)
        } else {
            let p = 1 + rng.below(tl - 1);
            let plast = h.timelines[&p].2;
            (
                Some(p),
                h.timelines[&p].1 + rng.below(plast - h.timelines[&p].1 + 1),
            )
        };
        let last = branch + 1 + rng.below(40);
        h.timelines.insert(tl, (parent, branch, last));
        if let Some(p) = parent {
            h.histories.push(TimelineHistory {
                timeline: tl,
                parent: Some(p),
                branch_lsn: branch,
                branch_time_ms: 0,
                branch_id: String::new(),
                created_ms: time(tl, branch),
            });
            h.objects.push(ObjectInfo {
                key: layout::timeline_history(tl),
                size: 10,
                last_modified_ms: time(tl, branch),
            });
        }
        // Segments: a partition of branch+1..=last, some dropped, some duplicated wider.
        let mut lsn = branch + 1;
        let mut segs = Vec::new();
        while lsn <= last {
            let end = (lsn + rng.below(6)).min(last);
            segs.push((lsn, end));
            lsn = end + 1;
        }
        let mut kept: Vec<(u64, u64)> = segs.iter().copied().filter(|_| !rng.chance(8)).collect();
        if segs.len() > 2 && rng.chance(30) {
            let i = rng.below(segs.len() as u64 - 1) as usize;
            kept.push((segs[i].0, segs[i + 1].1)); // a crash left an overlapping segment
        }
        for (a, b) in kept {
            h.objects.push(ObjectInfo {
                key: layout::segment(tl, a, b, time(tl, a), time(tl, b)),
                size: 50,
                last_modified_ms: time(tl, b),
            });
        }
        // Restore points, sometimes labelled well after the record they name.
        for i in 0..rng.below(3) {
            let lsn = branch + rng.below(last - branch + 1);
            h.points.push(RestorePoint {
                name: format!("p{tl}x{i}"),
                timeline: tl,
                lsn,
                created_ms: time(tl, lsn) + rng.below(300),
            });
        }
        // Snapshots: complete, incomplete (no manifest), damaged (a chunk missing).
        for i in 0..rng.below(4) {
            let s = branch + rng.below(last - branch + 1);
            let id = format!("s{tl}x{i}");
            let dir = layout::snapshot_dir(tl, s, &id);
            let chunks: Vec<ChunkEntry> = (0..1 + rng.below(3) as u32).map(chunk).collect();
            let kind = rng.below(10);
            for c in &chunks {
                if kind == 9 && c.n == 0 {
                    continue; // damaged: chunk 0 lost
                }
                h.objects.push(ObjectInfo {
                    key: layout::snapshot_chunk(&dir, c.n),
                    size: c.size,
                    last_modified_ms: time(tl, s),
                });
            }
            if kind == 8 {
                continue; // incomplete: no manifest
            }
            h.objects.push(ObjectInfo {
                key: layout::snapshot_manifest(&dir),
                size: 20,
                last_modified_ms: time(tl, s),
            });
            h.manifests.push(Manifest {
                format_version: 1,
                id,
                timeline: tl,
                lsn: s,
                lsn_time_ms: if s == branch && tl > 1 {
                    time(parent_of(&h, tl), s)
                } else if s == 0 {
                    0
                } else {
                    time(tl, s)
                },
                started_ms: time(tl, s),
                finished_ms: time(tl, s),
                engine: "memory".into(),
                database_id: "db".into(),
                total_count: chunks.len() as u64,
                total_raw_bytes: 1,
                keyspace_digest: "0".repeat(64),
                chunks,
            });
        }
    }
    h.objects.sort_by(|a, b| a.key.cmp(&b.key));
    h.now = h
        .objects
        .iter()
        .map(|o| o.last_modified_ms)
        .max()
        .unwrap_or(0)
        + 1;
    h
}

fn parent_of(h: &History, tl: u64) -> u64 {
    h.timelines[&tl].0.unwrap_or(tl)
}

fn catalog(h: &History, objects: &[ObjectInfo]) -> Catalog {
    let present: Vec<Manifest> = h
        .manifests
        .iter()
        .filter(|m| {
            let key = layout::snapshot_manifest(&layout::snapshot_dir(m.timeline, m.lsn, &m.id));
            objects.iter().any(|o| o.key == key)
        })
        .cloned()
        .collect();
    Catalog::build(
        objects.to_vec(),
        present,
        h.histories.clone(),
        h.points.clone(),
    )
}

/// The oracle's view of one timeline's history: which timeline each LSN comes from.
fn lineage(h: &History, tl: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut to = u64::MAX;
    let mut cur = Some(tl);
    while let Some(t) = cur {
        let (parent, branch, _) = h.timelines[&t];
        out.push((t, branch + 1, to));
        to = branch;
        cur = parent;
    }
    out.reverse();
    out
}

fn source_of(lin: &[(u64, u64, u64)], lsn: u64) -> Option<u64> {
    lin.iter()
        .find(|(_, a, b)| *a <= lsn && lsn <= *b)
        .map(|(t, _, _)| *t)
}

/// Brute force: is `lsn` in a listed segment of the timeline it must come from?
fn covered(cat: &Catalog, lin: &[(u64, u64, u64)], lsn: u64) -> bool {
    let Some(src) = source_of(lin, lsn) else {
        return false;
    };
    cat.timelines
        .get(&src)
        .is_some_and(|t| t.segments.iter().any(|s| s.first <= lsn && lsn <= s.last))
}

/// Brute force: usable starting points of a lineage, as (lsn, time).
fn bases(cat: &Catalog, h: &History, lin: &[(u64, u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let root = lin[0].0;
    let first_kept = source_of(lin, 1)
        .and_then(|t| cat.timelines.get(&t))
        .is_some_and(|i| i.segments.iter().any(|s| s.first == 1));
    if h.timelines[&root].0.is_none() && first_kept {
        out.push((0, 0));
    }
    for &(t, a, b) in lin {
        if let Some(info) = cat.timelines.get(&t) {
            for s in &info.snapshots {
                if s.lsn + 1 >= a && s.lsn <= b {
                    out.push((s.lsn, s.lsn_time_ms));
                }
            }
        }
    }
    out.sort();
    out
}

/// Check a plan's structure: it replays exactly `snapshot+1..=upto` from the right sources.
fn check_chain(plan: &RestorePlan, lin: &[(u64, u64, u64)], upto: u64) {
    let mut next = plan.snapshot.lsn + 1;
    for seg in &plan.segments {
        assert!(
            seg.segment.first <= next && next <= seg.through && seg.through <= seg.segment.last,
            "segment {seg:?} does not continue at {next}"
        );
        for lsn in next..=seg.through {
            assert_eq!(
                source_of(lin, lsn),
                Some(seg.segment.timeline),
                "LSN {lsn} taken from the wrong timeline by {}",
                seg.segment.key
            );
        }
        next = seg.through + 1;
    }
    assert!(next > upto, "the chain ends at {} before {upto}", next - 1);
}

/// Brute force: every segment overlapping an earlier one (by first LSN) is reported.
fn check_overlaps(cat: &Catalog) {
    for info in cat.timelines.values() {
        for (i, s) in info.segments.iter().enumerate() {
            let overlapped = info.segments[..i].iter().any(|e| e.last >= s.first);
            let reported = info.overlaps.iter().any(|o| o.later == s.key);
            assert_eq!(
                overlapped, reported,
                "overlap of {} reported: {reported}",
                s.key
            );
        }
        // Generated duplicates agree on times: harmless, no problem raised.
        assert!(info.overlaps.iter().all(|o| o.consistent));
    }
}

/// A label plans exactly like its LSN on its timeline.
fn check_labels(h: &History, cat: &Catalog) {
    for p in &h.points {
        let by_label = cat.plan(&Target::Label(p.name.clone()), None);
        let by_lsn = cat.plan(&Target::Lsn(p.lsn), Some(p.timeline));
        match (&by_label, &by_lsn) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (&a.snapshot, &a.segments, a.stop_lsn),
                    (&b.snapshot, &b.segments, b.stop_lsn)
                );
                assert_eq!(a.timeline, p.timeline);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("label {} planned {by_label:?}, its LSN {by_lsn:?}", p.name),
        }
    }
}

fn check_plans(h: &History, cat: &Catalog) -> BTreeMap<(u64, u64), bool> {
    check_overlaps(cat);
    check_labels(h, cat);
    let mut ok = BTreeMap::new();
    for (&tl, &(_, _, last)) in &h.timelines {
        if !cat.timelines.contains_key(&tl) {
            continue;
        }
        let lin = lineage(h, tl);
        let bases = bases(cat, h, &lin);
        for lsn in 0..=last + 1 {
            let base = bases.iter().rev().find(|(b, _)| *b <= lsn).copied();
            let expected = base.filter(|(b, _)| (b + 1..=lsn).all(|l| covered(cat, &lin, l)));
            let got = cat.plan(&Target::Lsn(lsn), Some(tl));
            match (expected, &got) {
                (Some((b, _)), Ok(plan)) => {
                    assert_eq!(
                        plan.snapshot.lsn, b,
                        "timeline {tl} LSN {lsn}: newest usable base"
                    );
                    assert_eq!(plan.stop_lsn, lsn);
                    check_chain(plan, &lin, lsn);
                }
                (None, Err(_)) => {}
                _ => panic!("timeline {tl} LSN {lsn}: oracle {expected:?}, planner {got:?}"),
            }
            ok.insert((tl, lsn), expected.is_some());
            // The catalog's restorable ranges say the same, for points of this timeline.
            let branch = h.timelines[&tl].1;
            if lsn >= branch {
                let in_range = cat.timelines[&tl]
                    .restorable
                    .iter()
                    .any(|r| r.from_lsn <= lsn && lsn <= r.to_lsn);
                assert_eq!(
                    in_range,
                    expected.is_some(),
                    "timeline {tl} LSN {lsn}: restorable ranges {:?}",
                    cat.timelines[&tl].restorable
                );
            }
        }
        let ranges = &cat.timelines[&tl].restorable;
        assert!(
            ranges.windows(2).all(|w| w[0].to_lsn + 1 < w[1].from_lsn),
            "ranges are merged and ordered: {ranges:?}"
        );
        // Time targets: the state after every record at or before t.
        for lsn in 1..=last {
            let t = time(source_of(&lin, lsn).unwrap(), lsn);
            let got = cat.plan(&Target::Time(t), Some(tl));
            let base = bases.iter().rev().find(|(_, bt)| *bt <= t).copied();
            match (base, &got) {
                (None, Err(PlanError::TooEarly { .. })) => {}
                (Some((b, _)), Ok(plan)) => {
                    assert_eq!(plan.snapshot.lsn, b);
                    let effective = plan.stop_lsn.min(lsn);
                    if effective < lsn {
                        // Stopped early: only allowed where the log ends with nothing after it.
                        assert!(!covered(cat, &lin, effective + 1));
                        assert!(
                            ((effective + 1)..=last + 50).all(|l| !covered(cat, &lin, l)),
                            "stopped at a gap at {effective}"
                        );
                    }
                    check_chain(plan, &lin, effective);
                }
                (Some(_), Err(PlanError::Gap { from, .. })) => {
                    assert!(!covered(cat, &lin, *from) && *from <= lsn.max(*from));
                }
                _ => panic!("timeline {tl} time of LSN {lsn}: base {base:?}, planner {got:?}"),
            }
        }
    }
    ok
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn plans_match_the_oracle(seed in any::<u64>()) {
        let h = generate(seed);
        let cat = catalog(&h, &h.objects);
        check_plans(&h, &cat);
        // Damaged and incomplete snapshots are reported, never planned from.
        for d in &cat.damaged {
            prop_assert!(!d.missing.is_empty());
            prop_assert!(cat.problems.iter().any(|p| p.key == d.manifest_key && p.problem.contains(&d.missing[0])));
        }
    }

    #[test]
    fn retention_keeps_every_point_it_must_serve(seed in any::<u64>(), keep_last in 1usize..3, window in 0u64..300, use_window in any::<bool>()) {
        let h = generate(seed);
        let before = catalog(&h, &h.objects);
        let ok_before = check_plans(&h, &before);
        let policy = RetentionPolicy {
            keep_last: Some(keep_last),
            keep_within_ms: use_window.then_some(window),
            ..RetentionPolicy::default()
        };
        let grace = 5;
        let plan = plan_retention(&before, &policy, h.now, grace);
        let remaining: Vec<ObjectInfo> = h.objects.iter().filter(|o| !plan.delete.contains(&o.key)).cloned().collect();
        let after = catalog(&h, &remaining);
        let ok_after = check_plans(&h, &after);
        // A prune never opens a gap in a timeline's log (every later listing would report
        // it as damage): each gap after it was there before.
        for (tl, info) in &after.timelines {
            let had: Vec<(u64, u64)> = before.timelines.get(tl).map(|i| i.gaps.clone()).unwrap_or_default();
            for gap in &info.gaps {
                prop_assert!(had.contains(gap), "prune opened gap {:?} on timeline {} (before: {:?})", gap, tl, had);
            }
        }
        // Never deleted: histories, young damaged or incomplete snapshots; old damaged ones
        // go entirely, manifest first.
        for key in &plan.delete {
            prop_assert!(!key.ends_with("TIMELINE"));
        }
        for d in &before.damaged {
            let deleted: Vec<&String> = plan.delete.iter().filter(|k| k.starts_with(&d.dir)).collect();
            if d.newest_ms + grace > h.now {
                prop_assert!(deleted.is_empty(), "young damaged snapshot {} touched", d.dir);
            } else {
                prop_assert_eq!(deleted.len(), d.keys.len());
                prop_assert_eq!(deleted[0], &d.manifest_key);
            }
        }
        for inc in &before.incomplete {
            if inc.newest_ms + grace > h.now {
                for k in &inc.keys {
                    prop_assert!(!plan.delete.contains(k), "young incomplete snapshot object {k} deleted");
                }
            }
        }
        // Every point from the oldest kept snapshot on stays restorable.
        let floor = plan.oldest_kept_lsn();
        for ((tl, lsn), was_ok) in &ok_before {
            let in_lineage_of_kept = plan.kept.iter().any(|k| lineage(&h, *tl).iter().any(|(t, a, b)| *t == k.timeline && k.lsn + 1 >= *a && k.lsn <= *b && k.lsn <= *lsn));
            if *was_ok && in_lineage_of_kept && floor.is_some_and(|f| *lsn >= f) {
                let newest_kept_below = plan.kept.iter().filter(|k| k.lsn <= *lsn && lineage(&h, *tl).iter().any(|(t, a, b)| *t == k.timeline && k.lsn + 1 >= *a && k.lsn <= *b)).map(|k| k.lsn).max();
                // The kept snapshot must itself have been able to reach the point before.
                let reachable_before = newest_kept_below.is_some_and(|b| (b + 1..=*lsn).all(|l| covered(&before, &lineage(&h, *tl), l)));
                if reachable_before {
                    prop_assert!(ok_after[&(*tl, *lsn)], "timeline {tl} LSN {lsn} was restorable from a kept snapshot and no longer is");
                }
            }
        }
        // The PITR window: every LSN whose time is inside it stays restorable, every time
        // inside it plans to the same point, and restore points labelled inside it too.
        if let Some(w) = policy.keep_within_ms {
            let start = h.now.saturating_sub(w);
            for &tl in before.timelines.keys() {
                for t in start..=h.now {
                    if let Ok(p) = before.plan(&Target::Time(t), Some(tl)) {
                        let again = after.plan(&Target::Time(t), Some(tl));
                        prop_assert!(again.as_ref().is_ok_and(|a| a.stop_lsn == p.stop_lsn),
                            "timeline {tl} time {t}: before {p:?}, after {again:?}");
                    }
                }
            }
            for p in h.points.iter().filter(|p| p.created_ms >= start) {
                if let Ok(a) = before.plan(&Target::Label(p.name.clone()), None) {
                    let b = after.plan(&Target::Label(p.name.clone()), None);
                    prop_assert!(b.as_ref().is_ok_and(|b| b.stop_lsn == a.stop_lsn), "restore point {} lost: {b:?}", p.name);
                }
            }
            for ((tl, lsn), was_ok) in &ok_before {
                let lin = lineage(&h, *tl);
                if *lsn > 0 && *was_ok && source_of(&lin, *lsn).is_some_and(|src| time(src, *lsn) >= start) {
                    // Restorable before from a base at or before the window start?
                    let b = bases(&before, &h, &lin).into_iter().rev().find(|(_, t)| *t <= start);
                    if b.is_some_and(|(b, _)| (b + 1..=*lsn).all(|l| covered(&before, &lin, l))) {
                        prop_assert!(ok_after[&(*tl, *lsn)], "timeline {tl} LSN {lsn} inside the window lost");
                    }
                }
            }
        }
    }
}
