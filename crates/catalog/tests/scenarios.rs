//! Hand-built repositories: each error a plan can return and what its message names, time
//! plans that stop inside a segment, the objects a plan needs, overlapping and damaged
//! objects, restorable ranges, calendar retention, grace periods and JSON output.

use tito_catalog::{
    Catalog, ObjectInfo, PlanError, RestorePlan, RetentionPolicy, Target, plan_retention,
};
use tito_format::layout;
use tito_format::{ChunkEntry, Manifest, RestorePoint, TimelineHistory};

const DAY: u64 = 86_400_000;

/// A repository under construction: records have commit time `base + 10 * lsn` (plus the
/// timeline number, so timelines differ).
#[derive(Default)]
struct Repo {
    objects: Vec<ObjectInfo>,
    manifests: Vec<Manifest>,
    histories: Vec<TimelineHistory>,
    points: Vec<RestorePoint>,
}

fn t(tl: u64, lsn: u64) -> u64 {
    1_000_000 + lsn * 10 + tl
}

impl Repo {
    fn object(&mut self, key: String, size: u64, modified: u64) {
        self.objects.push(ObjectInfo {
            key,
            size,
            last_modified_ms: modified,
        });
    }

    fn seg(&mut self, tl: u64, first: u64, last: u64) -> String {
        let key = layout::segment(tl, first, last, t(tl, first), t(tl, last));
        self.object(key.clone(), 40 + last - first, t(tl, last));
        key
    }

    fn manifest(tl: u64, lsn: u64, id: &str, chunks: u32, finished: u64) -> Manifest {
        Manifest {
            format_version: 1,
            id: id.into(),
            timeline: tl,
            lsn,
            lsn_time_ms: if lsn == 0 { 0 } else { t(tl, lsn) },
            started_ms: finished,
            finished_ms: finished,
            engine: "memory".into(),
            database_id: "db".into(),
            total_count: u64::from(chunks),
            total_raw_bytes: 1,
            keyspace_digest: "0".repeat(64),
            chunks: (0..chunks)
                .map(|n| ChunkEntry {
                    n,
                    size: 100 + u64::from(n),
                    first_key: vec![n as u8],
                    last_key: vec![n as u8],
                    count: 1,
                    checksum: "0".repeat(64),
                    hash: None,
                    raw_bytes: None,
                    content: None,
                })
                .collect(),
        }
    }

    /// A complete snapshot finished at `finished`; returns its manifest key.
    fn snap_at(&mut self, tl: u64, lsn: u64, id: &str, finished: u64) -> String {
        let m = Self::manifest(tl, lsn, id, 2, finished);
        let dir = layout::snapshot_dir(tl, lsn, id);
        for c in &m.chunks {
            self.object(layout::snapshot_chunk(&dir, c.n), c.size, finished);
        }
        let key = layout::snapshot_manifest(&dir);
        self.object(key.clone(), 20, finished);
        self.manifests.push(m);
        key
    }

    fn snap(&mut self, tl: u64, lsn: u64, id: &str) -> String {
        self.snap_at(tl, lsn, id, t(tl, lsn))
    }

    /// Timeline `tl` continues `parent`'s database after `branch_lsn` and retires it (a
    /// restore in place, or a copy told to continue the lineage).
    fn branch(&mut self, tl: u64, parent: u64, branch_lsn: u64) {
        self.fork(tl, parent, branch_lsn);
        let claim = layout::writer_claim(parent, 1, &layout::Writer::RetiredBy(tl));
        self.object(claim, 10, t(tl, branch_lsn));
    }

    /// Timeline `tl` branches from `parent` after `branch_lsn`, leaving it live.
    fn fork(&mut self, tl: u64, parent: u64, branch_lsn: u64) {
        self.histories.push(TimelineHistory {
            timeline: tl,
            parent: Some(parent),
            branch_lsn,
            branch_time_ms: t(parent, branch_lsn),
            branch_id: String::new(),
            created_ms: t(tl, branch_lsn),
        });
        self.object(layout::timeline_history(tl), 10, t(tl, branch_lsn));
    }

    fn point(&mut self, name: &str, tl: u64, lsn: u64, created: u64) {
        self.points.push(RestorePoint {
            name: name.into(),
            timeline: tl,
            lsn,
            created_ms: created,
        });
        self.object(layout::restore_point(name), 10, created);
    }

    /// The repository once the objects `deleted` are gone (what a prune leaves).
    fn without(self, deleted: &[String]) -> Repo {
        let objects = self
            .objects
            .into_iter()
            .filter(|o| !deleted.contains(&o.key))
            .collect();
        Repo { objects, ..self }
    }

    fn catalog(&self) -> Catalog {
        let present = |m: &&Manifest| {
            let key = layout::snapshot_manifest(&layout::snapshot_dir(m.timeline, m.lsn, &m.id));
            self.objects.iter().any(|o| o.key == key)
        };
        Catalog::build(
            self.objects.clone(),
            self.manifests.iter().filter(present).cloned().collect(),
            self.histories.clone(),
            self.points.clone(),
        )
    }
}

/// The keys of the segments a plan replays, in order.
fn segment_keys(plan: &RestorePlan) -> Vec<&str> {
    plan.segments
        .iter()
        .map(|s| s.segment.key.as_str())
        .collect()
}

/// Snapshot at 10, log 11..=40 in three segments, a gap 41..=45, log 46..=60.
fn gapped() -> (Repo, Vec<String>) {
    let mut r = Repo::default();
    r.snap(1, 10, "a");
    let segs = vec![
        r.seg(1, 11, 20),
        r.seg(1, 21, 30),
        r.seg(1, 31, 40),
        r.seg(1, 46, 60),
    ];
    (r, segs)
}

#[test]
fn lsn_plan_lists_every_object_with_its_size() {
    let (r, segs) = gapped();
    let cat = r.catalog();
    let plan = cat.plan(&Target::Lsn(25), None).expect("plannable");
    assert_eq!(plan.snapshot.lsn, 10);
    assert_eq!(plan.stop_lsn, 25);
    let keys = segment_keys(&plan);
    assert_eq!(keys, [segs[0].as_str(), segs[1].as_str()]);
    let dir = layout::snapshot_dir(1, 10, "a");
    assert_eq!(
        plan.objects(),
        vec![
            (layout::snapshot_chunk(&dir, 0), 100),
            (layout::snapshot_chunk(&dir, 1), 101),
            (segs[0].clone(), 49),
            (segs[1].clone(), 49),
        ]
    );
    assert_eq!(plan.bytes(), 100 + 101 + 49 + 49);
}

#[test]
fn gap_error_names_the_missing_range_and_its_neighbours() {
    let (r, segs) = gapped();
    let cat = r.catalog();
    let err = cat.plan(&Target::Lsn(50), None).unwrap_err();
    assert_eq!(
        err,
        PlanError::Gap {
            timeline: 1,
            from: 41,
            to: 45,
            before: segs[2].clone(),
            after: segs[3].clone(),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("41..=45") && msg.contains(&segs[2]) && msg.contains(&segs[3]),
        "{msg}"
    );
    // Latest never silently stops before the hole.
    assert!(matches!(
        cat.plan(&Target::Latest, None),
        Err(PlanError::Gap { from: 41, .. })
    ));
    // The catalog reports the gap too.
    assert_eq!(cat.timelines[&1].gaps, vec![(41, 45)]);
    assert!(cat.problems().iter().any(|p| p.problem.contains("41..=45")));
}

#[test]
fn a_snapshot_after_the_gap_bridges_it() {
    let (mut r, segs) = gapped();
    r.snap(1, 50, "b");
    let cat = r.catalog();
    let plan = cat.plan(&Target::Latest, None).expect("bridged");
    assert_eq!((plan.snapshot.lsn, plan.stop_lsn), (50, 60));
    assert_eq!(plan.segments.len(), 1);
    assert_eq!(plan.segments[0].segment.key, segs[3]);
    // Two restorable ranges: 10..=40 and 50..=60, with their times.
    let ranges = &cat.timelines[&1].restorable;
    let spans: Vec<(u64, u64)> = ranges.iter().map(|r| (r.from_lsn, r.to_lsn)).collect();
    assert_eq!(spans, [(10, 40), (50, 60)]);
    assert_eq!(ranges[0].from_time_ms, Some(t(1, 10)));
    assert_eq!(ranges[0].to_time_ms, Some(t(1, 40)));
    assert_eq!(cat.timelines[&1].latest_range().map(|r| r.to_lsn), Some(60));
    // Points in the hole are still not restorable.
    assert!(matches!(
        cat.plan(&Target::Lsn(47), None),
        Err(PlanError::Gap { .. })
    ));
}

#[test]
fn no_snapshot_error_says_where_restore_can_start() {
    let (r, _) = gapped();
    let err = r.catalog().plan(&Target::Lsn(5), None).unwrap_err();
    assert!(matches!(err, PlanError::NoSnapshot { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("LSN 5") && msg.contains("earliest restorable point is LSN 10"),
        "{msg}"
    );
}

#[test]
fn beyond_end_error_says_where_coverage_ends() {
    let mut r = Repo::default();
    r.snap(1, 10, "a");
    r.seg(1, 11, 20);
    let err = r.catalog().plan(&Target::Lsn(25), None).unwrap_err();
    assert_eq!(
        err,
        PlanError::BeyondEnd {
            requested: 25,
            timeline: 1,
            end: 20
        }
    );
    assert!(err.to_string().contains("ends at LSN 20"));
}

#[test]
fn too_early_unknown_label_unknown_timeline_and_empty() {
    let (mut r, _) = gapped();
    r.point("release", 1, 15, t(1, 15));
    let cat = r.catalog();
    let err = cat.plan(&Target::Time(t(1, 5)), None).unwrap_err();
    assert!(matches!(err, PlanError::TooEarly { .. }));
    assert!(err.to_string().contains("LSN 10"), "{err}");

    let err = cat.plan(&Target::Label("nope".into()), None).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownLabel {
            name: "nope".into(),
            known: vec!["release".into()]
        }
    );
    let plan = cat
        .plan(&Target::Label("release".into()), None)
        .expect("label");
    assert_eq!(plan.stop_lsn, 15);

    let err = cat.plan(&Target::Latest, Some(7)).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownTimeline {
            timeline: 7,
            known: vec![1]
        }
    );
    assert!(err.to_string().contains("timeline 7"));

    let empty = Repo::default().catalog();
    assert_eq!(empty.plan(&Target::Latest, None), Err(PlanError::Empty));
}

#[test]
fn time_inside_a_segment_replays_it_up_to_that_time() {
    let (r, segs) = gapped();
    let cat = r.catalog();
    // Between the commit times of LSNs 24 and 25: stop inside segment 21..=30.
    let target = t(1, 24) + 3;
    let plan = cat.plan(&Target::Time(target), None).expect("plannable");
    assert_eq!(plan.snapshot.lsn, 10);
    assert_eq!(plan.stop_time_ms, Some(target));
    let keys = segment_keys(&plan);
    assert_eq!(keys, [segs[0].as_str(), segs[1].as_str()]);
    // Exactly at the end of a segment: nothing from the next one.
    let plan = cat.plan(&Target::Time(t(1, 20)), None).expect("plannable");
    assert_eq!(plan.segments.len(), 1);
    assert_eq!(plan.stop_lsn, 20);
    // A time in the hole could need missing records: refused, naming the gap.
    let err = cat.plan(&Target::Time(t(1, 43)), None).unwrap_err();
    assert!(
        matches!(
            err,
            PlanError::Gap {
                from: 41,
                to: 45,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn branch_plans_take_parent_records_up_to_the_branch_only() {
    let mut r = Repo::default();
    r.snap(1, 0, "empty");
    let parent = r.seg(1, 1, 30);
    r.branch(2, 1, 12);
    let child = r.seg(2, 13, 20);
    let cat = r.catalog();
    let plan = cat.plan(&Target::Latest, None).expect("plannable");
    assert_eq!(plan.timeline, 2, "the newest timeline is the default");
    assert_eq!(plan.stop_lsn, 20);
    let got: Vec<(&str, u64)> = plan
        .segments
        .iter()
        .map(|s| (s.segment.key.as_str(), s.through))
        .collect();
    assert_eq!(got, [(parent.as_str(), 12), (child.as_str(), 20)]);
    // The parent itself still reaches 30.
    assert_eq!(
        cat.plan(&Target::Latest, Some(1)).expect("parent").stop_lsn,
        30
    );
    // The child's restorable window starts at its branch point.
    let ranges = &cat.timelines[&2].restorable;
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].from_lsn, ranges[0].to_lsn), (12, 20));
    assert_eq!(ranges[0].to_time_ms, Some(t(2, 20)));
}

#[test]
fn targets_that_two_live_timelines_answer_differently_are_ambiguous() {
    let mut r = Repo::default();
    r.snap(1, 0, "empty");
    r.seg(1, 1, 30);
    r.fork(2, 1, 12); // a copy that did not retire its source
    r.seg(2, 13, 20);
    let cat = r.catalog();
    assert_eq!(cat.live_timelines(), [1, 2]);
    match cat.plan(&Target::Latest, None) {
        Err(PlanError::Ambiguous { candidates, .. }) => {
            let tls: Vec<u64> = candidates.iter().map(|(tl, _)| *tl).collect();
            assert_eq!(tls, [1, 2]);
        }
        other => panic!("latest has two answers: {other:?}"),
    }
    assert!(matches!(
        cat.plan(&Target::Lsn(15), None),
        Err(PlanError::Ambiguous { .. })
    ));
    // Points both lineages share have one answer.
    assert_eq!(
        cat.plan(&Target::Lsn(12), None).expect("shared").stop_lsn,
        12
    );
    let early = cat
        .plan(&Target::Time(t(1, 5)), None)
        .expect("before the fork");
    assert!(early.stop_lsn <= 12);
    // Naming the timeline always works.
    assert_eq!(
        cat.plan(&Target::Latest, Some(2)).expect("child").stop_lsn,
        20
    );
    assert_eq!(
        cat.plan(&Target::Latest, Some(1)).expect("parent").stop_lsn,
        30
    );
}

#[test]
fn a_time_before_an_undo_restores_the_timeline_current_then() {
    let mut r = Repo::default();
    r.snap(1, 0, "empty");
    r.seg(1, 1, 30);
    r.branch(2, 1, 12); // undo in place to LSN 12, made after record 30 of timeline 1
    r.seg(2, 13, 20);
    let cat = r.catalog();
    assert_eq!(cat.live_timelines(), [2]);
    // Latest and LSN targets follow the live timeline.
    assert_eq!(cat.plan(&Target::Latest, None).expect("latest").timeline, 2);
    // A time when the database was still on timeline 1 restores timeline 1's state then.
    let created = cat.timelines[&2].created_ms;
    let before_undo = cat.plan(&Target::Time(created - 1), None).expect("time");
    assert_eq!(before_undo.timeline, 1);
    let after_undo = cat.plan(&Target::Time(t(2, 20)), None).expect("time");
    assert_eq!(after_undo.timeline, 2);
}

#[test]
fn overlapping_segments_prefer_the_one_reaching_furthest() {
    let mut r = Repo::default();
    r.snap(1, 0, "e");
    let short = r.seg(1, 1, 10);
    let long = r.seg(1, 1, 20);
    let tail = r.seg(1, 15, 30);
    let cat = r.catalog();
    let overlaps = &cat.timelines[&1].overlaps;
    assert_eq!(overlaps.len(), 2, "{overlaps:?}");
    assert!(overlaps.iter().all(|o| o.consistent));
    assert!(cat.problems().is_empty(), "{:?}", cat.problems());
    let plan = cat.plan(&Target::Latest, None).expect("plannable");
    let keys = segment_keys(&plan);
    assert_eq!(keys, [long.as_str(), tail.as_str()]);
    assert!(!keys.contains(&short.as_str()));
    assert_eq!(cat.timelines[&1].coverage.len(), 1);
}

#[test]
fn inconsistent_overlap_is_a_problem() {
    let mut r = Repo::default();
    r.seg(1, 1, 10);
    let odd = layout::segment(1, 1, 12, t(1, 1) + 5, t(1, 12));
    r.object(odd.clone(), 10, 0);
    let cat = r.catalog();
    assert!(
        cat.problems()
            .iter()
            .any(|p| p.key == odd && p.problem.contains("different commit times"))
    );
}

#[test]
fn damaged_snapshot_is_reported_and_never_planned_from() {
    let mut r = Repo::default();
    r.snap(1, 0, "e");
    r.seg(1, 1, 20);
    let m = r.snap(1, 10, "d");
    let dir = layout::snapshot_dir(1, 10, "d");
    let lost = layout::snapshot_chunk(&dir, 0);
    r.objects.retain(|o| o.key != lost);
    let resized = layout::snapshot_chunk(&dir, 1);
    r.objects
        .iter_mut()
        .filter(|o| o.key == resized)
        .for_each(|o| o.size = 7);
    let cat = r.catalog();
    assert_eq!(cat.damaged.len(), 1);
    let d = &cat.damaged[0];
    assert_eq!(d.manifest_key, m);
    assert_eq!(d.missing, vec![lost.clone()]);
    assert_eq!(d.wrong_size, vec![(resized.clone(), 7, 101)]);
    let problem = cat
        .problems()
        .iter()
        .find(|p| p.key == m)
        .expect("reported");
    assert!(problem.problem.contains(&lost) && problem.problem.contains("7 bytes"));
    let plan = cat
        .plan(&Target::Lsn(15), None)
        .expect("from the empty state");
    assert_eq!(plan.snapshot.lsn, 0);
}

#[test]
fn incomplete_snapshot_has_an_age_and_is_not_restorable() {
    let mut r = Repo::default();
    r.seg(1, 11, 20);
    let dir = layout::snapshot_dir(1, 10, "x");
    r.object(layout::snapshot_chunk(&dir, 0), 100, 5_000);
    let cat = r.catalog();
    assert_eq!(cat.incomplete.len(), 1);
    assert_eq!(cat.incomplete[0].age_ms(8_000), 3_000);
    assert!(matches!(
        cat.plan(&Target::Latest, None),
        Err(PlanError::NoSnapshot { .. })
    ));
    assert!(cat.timelines[&1].restorable.is_empty());
}

#[test]
fn catalog_and_plan_serialize_to_json() {
    let (r, _) = gapped();
    let cat = r.catalog();
    let json = serde_json::to_value(&cat).expect("catalog json");
    assert_eq!(
        json["timelines"]["1"]["gaps"][0],
        serde_json::json!([41, 45])
    );
    assert_eq!(json["timelines"]["1"]["restorable"][0]["to_lsn"], 40);
    let plan = cat.plan(&Target::Lsn(25), None).expect("plan");
    let json = serde_json::to_value(&plan).expect("plan json");
    assert_eq!(json["stop_lsn"], 25);
    // Segments are read whole; replay stops at `stop_lsn`.
    assert_eq!(json["segments"][1]["through"], 30);
    let rp = plan_retention(&cat, &RetentionPolicy::default(), 0, 0);
    serde_json::to_value(&rp).expect("retention json");
}

/// One snapshot per day for 60 days (one every 12 h), log throughout.
fn daily() -> (Repo, Vec<String>, u64) {
    let mut r = Repo::default();
    let mut manifests = Vec::new();
    let start = 20_000 * DAY; // 2024-10-04
    for i in 0..120u64 {
        let lsn = i * 10;
        r.seg(1, lsn + 1, lsn + 10);
        manifests.push(r.snap_at(1, lsn, &format!("s{i:03}"), start + i * DAY / 2));
    }
    (r, manifests, start + 60 * DAY)
}

#[test]
fn calendar_retention_keeps_the_newest_of_each_period() {
    let (r, manifests, now) = daily();
    let cat = r.catalog();
    let policy = RetentionPolicy {
        keep_daily: Some(3),
        keep_weekly: Some(2),
        keep_monthly: Some(2),
        ..RetentionPolicy::default()
    };
    let plan = plan_retention(&cat, &policy, now, 0);
    let kept: Vec<&str> = plan.kept.iter().map(|k| k.manifest_key.as_str()).collect();
    // Daily: the last three days' newest (two per day: the odd ones).
    for i in [119, 117, 115] {
        assert!(kept.contains(&manifests[i].as_str()), "daily {i}");
    }
    assert!(
        !kept.contains(&manifests[118].as_str()),
        "older of the same day"
    );
    // Monthly: the newest of November 2024 is kept alongside December's.
    let nov_last = (0..120)
        .filter(|i| {
            let day = 20_000 + i / 2;
            (20_028..20_058).contains(&day) // 2024-11-01 ..= 2024-11-30
        })
        .max()
        .expect("november");
    assert!(
        kept.contains(&manifests[nov_last].as_str()),
        "monthly November"
    );
    assert!(plan.kept.len() <= 3 + 2 + 2);
    // Everything from the oldest kept snapshot on still plans; older snapshots go.
    let oldest = plan.oldest_kept_lsn().expect("kept");
    assert!(plan.delete.contains(&manifests[0]));
    let after = r.without(&plan.delete).catalog();
    for lsn in oldest..=1200 {
        assert_eq!(
            after.plan(&Target::Lsn(lsn), None).map(|p| p.stop_lsn),
            Ok(lsn)
        );
    }
    assert!(after.plan(&Target::Lsn(oldest - 1), None).is_err());
}

#[test]
fn grace_protects_young_incomplete_and_damaged_snapshots() {
    let mut r = Repo::default();
    r.snap(1, 0, "e");
    r.seg(1, 1, 20);
    r.snap(1, 20, "new");
    for (id, modified) in [("young", 9_500), ("old", 1_000)] {
        let dir = layout::snapshot_dir(1, 5, id);
        r.object(layout::snapshot_chunk(&dir, 0), 100, modified);
        let ddir = layout::snapshot_dir(1, 6, &format!("dmg{id}"));
        let m = Repo::manifest(1, 6, &format!("dmg{id}"), 2, modified);
        r.object(layout::snapshot_chunk(&ddir, 1), 101, modified);
        r.object(layout::snapshot_manifest(&ddir), 20, modified);
        r.manifests.push(m);
    }
    let cat = r.catalog();
    assert_eq!((cat.incomplete.len(), cat.damaged.len()), (2, 2));
    let plan = plan_retention(
        &cat,
        &RetentionPolicy {
            keep_last: Some(1),
            ..RetentionPolicy::default()
        },
        10_000,
        1_000,
    );
    let young = layout::snapshot_dir(1, 5, "young");
    let old = layout::snapshot_dir(1, 5, "old");
    let dyoung = layout::snapshot_dir(1, 6, "dmgyoung");
    let dold = layout::snapshot_dir(1, 6, "dmgold");
    assert!(
        !plan
            .delete
            .iter()
            .any(|k| k.starts_with(&young) || k.starts_with(&dyoung))
    );
    assert!(plan.delete.contains(&layout::snapshot_chunk(&old, 0)));
    let dold_keys: Vec<&String> = plan
        .delete
        .iter()
        .filter(|k| k.starts_with(&dold))
        .collect();
    assert_eq!(
        dold_keys,
        [
            &layout::snapshot_manifest(&dold),
            &layout::snapshot_chunk(&dold, 1)
        ]
    );
    assert!(
        plan.reasons
            .iter()
            .any(|l| l.contains("dmgyoung") && l.contains("kept for now"))
    );
    // Only the newest snapshot is kept; the log before it goes with the older one.
    assert_eq!(plan.kept.len(), 1);
    assert!(
        plan.delete
            .contains(&layout::segment(1, 1, 20, t(1, 1), t(1, 20)))
    );
}

#[test]
fn pitr_window_keeps_its_base_and_restore_points_inside_it() {
    let mut r = Repo::default();
    r.snap(1, 0, "e");
    for i in 0..10 {
        r.seg(1, i * 10 + 1, i * 10 + 10);
    }
    r.snap(1, 30, "a");
    r.snap(1, 60, "b");
    r.snap(1, 90, "c");
    // Labelled late (inside the window) for an old LSN.
    r.point("old-label", 1, 12, t(1, 95));
    let cat = r.catalog();
    let now = t(1, 100);
    let window = now - t(1, 70); // start of the window: time of LSN 70
    let policy = RetentionPolicy {
        keep_within_ms: Some(window),
        ..RetentionPolicy::default()
    };
    let plan = plan_retention(&cat, &policy, now, 0);
    let kept: Vec<u64> = plan.kept.iter().map(|k| k.lsn).collect();
    assert!(kept.contains(&60) && kept.contains(&90), "{kept:?}");
    assert!(kept.contains(&0), "the restore point's base: {kept:?}");
    let after = r.without(&plan.delete).catalog();
    for lsn in 70..=100 {
        assert!(after.plan(&Target::Lsn(lsn), None).is_ok(), "LSN {lsn}");
    }
    let p = after
        .plan(&Target::Label("old-label".into()), None)
        .expect("label kept");
    assert_eq!(p.stop_lsn, 12);
    // Without the label, the old log would have gone.
    let mut bare = cat.clone();
    bare.restore_points.clear();
    let plan = plan_retention(&bare, &policy, now, 0);
    assert!(
        plan.delete
            .iter()
            .any(|k| k.contains("00000000000000000001-"))
    );
}

/// Incremental snapshots (manifest v2): a snapshot whose chunks `hashes` are shared objects
/// `chunks/<hash>.chunk`, written at `written` unless already listed.
fn shared_snap(r: &mut Repo, lsn: u64, id: &str, hashes: &[&str], written: u64) -> String {
    let mut m = Repo::manifest(1, lsn, id, hashes.len() as u32, t(1, lsn));
    m.format_version = 2;
    for (c, h) in m.chunks.iter_mut().zip(hashes) {
        c.hash = Some(h.repeat(64));
        let key = layout::shared_chunk(&h.repeat(64));
        if !r.objects.iter().any(|o| o.key == key) {
            r.object(key, c.size, written);
        }
    }
    let key = layout::snapshot_manifest(&layout::snapshot_dir(1, lsn, id));
    r.object(key.clone(), 20, t(1, lsn));
    r.manifests.push(m);
    key
}

#[test]
fn retention_deletes_a_shared_chunk_only_when_no_kept_manifest_references_it() {
    let mut r = Repo::default();
    let old = shared_snap(&mut r, 10, "a", &["a", "b", "c"], 0);
    r.seg(1, 11, 20);
    let new = shared_snap(&mut r, 20, "b", &["a", "d", "c"], 0);
    // A snapshot being written: its new chunk is listed, its manifest not yet.
    r.object(layout::shared_chunk(&"e".repeat(64)), 50, 10 * DAY);
    let cat = r.catalog();
    assert_eq!(cat.shared_chunks.len(), 5);
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let chunk = |h: &str| layout::shared_chunk(&h.repeat(64));
    let plan = plan_retention(&cat, &policy, 10 * DAY + 1000, 3_600_000);
    assert!(plan.delete.contains(&old) && !plan.delete.contains(&new));
    // b was only the old snapshot's: it goes, after the manifest; a, c, d stay; e is young.
    assert!(plan.delete.contains(&chunk("b")));
    for kept in ["a", "c", "d", "e"] {
        assert!(
            !plan.delete.contains(&chunk(kept)),
            "{kept}: {:?}",
            plan.delete
        );
    }
    let pos = |k: &str| plan.delete.iter().position(|d| d == k).unwrap();
    assert!(pos(&old) < pos(&chunk("b")), "manifests before chunks");
    assert!(
        plan.reasons
            .iter()
            .any(|l| l.contains("1 unreferenced shared chunk(s) kept"))
    );
    // Past the grace period the orphan goes too; the kept snapshot restores either way.
    let later = plan_retention(&cat, &policy, 11 * DAY, 3_600_000);
    assert!(later.delete.contains(&chunk("e")));
    let after = r.without(&later.delete).catalog();
    assert!(after.damaged.is_empty(), "{:?}", after.damaged);
    let p = after.plan(&Target::Lsn(20), None).expect("restorable");
    assert_eq!(p.snapshot.lsn, 20);
    assert!(p.objects().iter().any(|(k, _)| *k == chunk("d")));
}

#[test]
fn a_damaged_incremental_snapshot_keeps_its_shared_chunks_until_it_goes() {
    let mut r = Repo::default();
    shared_snap(&mut r, 10, "a", &["a", "b"], 0);
    let damaged = shared_snap(&mut r, 20, "b", &["a", "c"], 0);
    // c is gone: the second snapshot is damaged; a stays shared with the first.
    r.objects
        .retain(|o| o.key != layout::shared_chunk(&"c".repeat(64)));
    let cat = r.catalog();
    assert_eq!(cat.damaged.len(), 1);
    assert_eq!(cat.damaged[0].manifest_key, damaged);
    assert_eq!(
        cat.damaged[0].shared,
        vec![
            layout::shared_chunk(&"a".repeat(64)),
            layout::shared_chunk(&"c".repeat(64))
        ]
    );
    let policy = RetentionPolicy::default();
    let within = plan_retention(&cat, &policy, t(1, 20) + 1, 3_600_000);
    assert!(within.delete.is_empty(), "{:?}", within.delete);
    let past = plan_retention(&cat, &policy, t(1, 20) + 2 * 3_600_000, 3_600_000);
    assert!(past.delete.contains(&damaged));
    assert!(!past.delete.contains(&layout::shared_chunk(&"a".repeat(64))));
}
