//! The catalog: what a repository holds, built from a listing and its documents.
//!
//! Per timeline: complete snapshots, log segments, contiguous coverage and gaps. Across the
//! repository: incomplete snapshots (chunks but no manifest), damaged ones (a manifest whose
//! chunks are missing or of the wrong size), restore points, and a problem list.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tito_format::layout::{self, ObjectName, Writer};
use tito_format::{ChunkEntry, Manifest, RestorePoint, TimelineHistory};

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last modification (ms since the epoch).
    pub last_modified_ms: u64,
}

/// A log segment as the listing names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    /// Object key.
    pub key: String,
    /// Timeline.
    pub timeline: u64,
    /// First LSN held.
    pub first: u64,
    /// Last LSN held.
    pub last: u64,
    /// Commit time of the first record (ms).
    pub t0: u64,
    /// Commit time of the last record (ms).
    pub t1: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A complete snapshot: its manifest is present and every chunk is listed with its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Timeline it was taken on.
    pub timeline: u64,
    /// The LSN it reflects.
    pub lsn: u64,
    /// Commit time of record `lsn` (ms; 0 for LSN 0).
    pub lsn_time_ms: u64,
    /// Snapshot id.
    pub id: String,
    /// Folder of its objects (ends with `/`).
    pub dir: String,
    /// Manifest key.
    pub manifest_key: String,
    /// When it finished (ms).
    pub finished_ms: u64,
    /// Pairs held.
    pub total_count: u64,
    /// Uncompressed bytes.
    pub total_raw_bytes: u64,
    /// Stored bytes it references (its chunks and manifest; chunks it shares with other
    /// snapshots count in each of them).
    pub size: u64,
    /// Its chunks.
    pub chunks: Vec<ChunkEntry>,
}

impl SnapshotInfo {
    /// The object key of each chunk, in chunk order (shared chunks under `chunks/`).
    pub fn chunk_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.chunks.iter().map(|c| c.object_key(&self.dir))
    }

    /// The keys of the shared, content-named chunks it references.
    pub fn shared_chunk_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.chunks
            .iter()
            .filter(|c| c.is_shared())
            .map(|c| c.object_key(&self.dir))
    }
}

/// Objects of a snapshot folder with no manifest: a snapshot being written, or an
/// interrupted one. It does not exist for restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncompleteSnapshot {
    /// Timeline.
    pub timeline: u64,
    /// LSN in its name.
    pub lsn: u64,
    /// Folder.
    pub dir: String,
    /// Its objects.
    pub keys: Vec<String>,
    /// Their total size.
    pub size: u64,
    /// Newest modification among them (ms).
    pub newest_ms: u64,
}

impl IncompleteSnapshot {
    /// How long ago its newest object was written, at `now_ms`.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.newest_ms)
    }
}

/// A snapshot whose manifest is present but whose chunks are not all listed with the
/// manifest's sizes. It does not exist for restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamagedSnapshot {
    /// Timeline.
    pub timeline: u64,
    /// LSN of the manifest.
    pub lsn: u64,
    /// Snapshot id.
    pub id: String,
    /// Folder.
    pub dir: String,
    /// Manifest key.
    pub manifest_key: String,
    /// Chunk keys the manifest names that the listing lacks.
    pub missing: Vec<String>,
    /// Chunks listed with another size: (key, listed size, manifest size).
    pub wrong_size: Vec<(String, u64, u64)>,
    /// Objects of its folder that are present (manifest included).
    pub keys: Vec<String>,
    /// Shared chunks (`chunks/`) its manifest references, present or not: retention keeps
    /// them while the manifest is kept.
    pub shared: Vec<String>,
    /// Newest modification among them (ms).
    pub newest_ms: u64,
}

/// Two segments of one timeline whose LSN ranges overlap (a crash between writing a
/// segment and recording it can ship the same records twice). Harmless when their names
/// agree; planning takes the one reaching furthest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// The earlier segment (by first LSN) reaching furthest so far.
    pub earlier: String,
    /// The segment overlapping it.
    pub later: String,
    /// First LSN held by both.
    pub first: u64,
    /// Last LSN held by both.
    pub last: u64,
    /// False if their names disagree on commit times for the shared records.
    pub consistent: bool,
}

/// A range of points a timeline can be restored to: every LSN `from_lsn..=to_lsn` has a
/// plan. Times are commit times of those records, when the listing names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RestorableRange {
    /// Earliest restorable LSN (0: the empty database).
    pub from_lsn: u64,
    /// Commit time of record `from_lsn` (0 for the empty database), if known.
    pub from_time_ms: Option<u64>,
    /// Latest restorable LSN.
    pub to_lsn: u64,
    /// Commit time of record `to_lsn`, if known.
    pub to_time_ms: Option<u64>,
}

/// Something wrong found while building the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object or folder concerned.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// A contiguous run of log coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    /// First LSN covered.
    pub first: u64,
    /// Last LSN covered.
    pub last: u64,
    /// Commit time of the first record.
    pub t0: u64,
    /// Commit time of the last record.
    pub t1: u64,
}

/// Everything about one timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineInfo {
    /// Its number.
    pub timeline: u64,
    /// The timeline it branched from, if any.
    pub parent: Option<u64>,
    /// The last parent LSN in its starting state (0 for a root timeline).
    pub branch_lsn: u64,
    /// True if the timeline has a history document (restored databases do).
    pub has_history: bool,
    /// Commit time of record `branch_lsn` (0 if unknown).
    pub branch_time_ms: u64,
    /// When the timeline was created (ms; 0 for a root timeline without history).
    pub created_ms: u64,
    /// The newest writer claim: its epoch and who it names (none before repository
    /// format 2 or before the first shipper of format 2).
    pub writer: Option<(u64, WriterInfo)>,
    /// Every writer claim's key, oldest first (prune keeps only the newest).
    pub claim_keys: Vec<String>,
    /// Complete snapshots, by LSN.
    pub snapshots: Vec<SnapshotInfo>,
    /// Segments, by first LSN (overlaps possible after a crash).
    pub segments: Vec<SegmentInfo>,
    /// Contiguous coverage runs.
    pub coverage: Vec<Run>,
    /// Missing LSN ranges between runs (first, last).
    pub gaps: Vec<(u64, u64)>,
    /// Overlapping segments.
    pub overlaps: Vec<Overlap>,
    /// Total stored bytes of its segments.
    pub segment_bytes: u64,
    /// What it can be restored to (points at or after its branch LSN), oldest first. The
    /// first range is the restorable window from the earliest usable snapshot; more than
    /// one means a log gap that only a later snapshot bridges.
    pub restorable: Vec<RestorableRange>,
}

/// Who a timeline's newest writer claim names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriterInfo {
    /// A shipper, by its token.
    Shipper(String),
    /// Nobody: a restore continued this timeline's database on another timeline.
    RetiredBy(u64),
}

impl TimelineInfo {
    /// The latest restorable range (what `Target::Latest` reaches), if any.
    pub fn latest_range(&self) -> Option<&RestorableRange> {
        self.restorable.last()
    }

    /// The timeline that retired this one, if a restore continued its database elsewhere.
    pub fn retired_by(&self) -> Option<u64> {
        match &self.writer {
            Some((_, WriterInfo::RetiredBy(child))) => Some(*child),
            _ => None,
        }
    }

    /// True unless retired: a database may still be shipping to it, so retention keeps
    /// what its next backup needs and restore targets without a timeline consider it.
    pub fn is_live(&self) -> bool {
        self.retired_by().is_none()
    }
}

/// The catalog of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// Timelines by number.
    pub timelines: BTreeMap<u64, TimelineInfo>,
    /// Snapshot folders without a manifest.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Snapshots whose manifest is present but whose objects are not all there.
    pub damaged: Vec<DamagedSnapshot>,
    /// Restore points.
    pub restore_points: Vec<RestorePoint>,
    /// Every problem found (damaged snapshots, unreadable names...).
    pub problems: Vec<Problem>,
    /// Shared, content-named chunks (`chunks/<hash>.chunk`) in the listing, referenced or
    /// not (a snapshot uploads them before its manifest; prune deletes those no kept
    /// manifest references once older than the grace period).
    #[serde(skip)]
    pub shared_chunks: Vec<ObjectInfo>,
    /// The listing the catalog was built from.
    #[serde(skip)]
    pub objects: Vec<ObjectInfo>,
    /// The documents it was built from, kept so [`Catalog::after_deleting`] can rebuild it.
    #[serde(skip)]
    sources: (Vec<Manifest>, Vec<TimelineHistory>),
}

impl Catalog {
    /// Build the catalog from a listing and the decoded documents it names.
    pub fn build(
        objects: Vec<ObjectInfo>,
        manifests: Vec<Manifest>,
        histories: Vec<TimelineHistory>,
        restore_points: Vec<RestorePoint>,
    ) -> Catalog {
        let mut cat = Catalog {
            restore_points,
            sources: (manifests.clone(), histories.clone()),
            ..Catalog::default()
        };
        let sizes: BTreeMap<&str, &ObjectInfo> =
            objects.iter().map(|o| (o.key.as_str(), o)).collect();
        let mut folders: BTreeMap<String, (u64, u64, Vec<&ObjectInfo>)> = BTreeMap::new();
        let mut with_manifest: BTreeSet<String> = BTreeSet::new();

        for h in &histories {
            let tl = cat.timeline(h.timeline);
            tl.parent = h.parent;
            tl.branch_lsn = h.branch_lsn;
            tl.branch_time_ms = h.branch_time_ms;
            tl.created_ms = h.created_ms;
            tl.has_history = true;
        }
        for obj in &objects {
            match layout::parse(&obj.key) {
                ObjectName::Segment {
                    timeline,
                    first,
                    last,
                    t0,
                    t1,
                } => {
                    let seg = SegmentInfo {
                        key: obj.key.clone(),
                        timeline,
                        first,
                        last,
                        t0,
                        t1,
                        size: obj.size,
                    };
                    cat.timeline(timeline).segments.push(seg);
                }
                ObjectName::SnapshotChunk {
                    timeline, lsn, id, ..
                } => {
                    let dir = layout::snapshot_dir(timeline, lsn, &id);
                    folders
                        .entry(dir)
                        .or_insert((timeline, lsn, Vec::new()))
                        .2
                        .push(obj);
                }
                ObjectName::SnapshotManifest { timeline, lsn, id } => {
                    let dir = layout::snapshot_dir(timeline, lsn, &id);
                    folders
                        .entry(dir.clone())
                        .or_insert((timeline, lsn, Vec::new()))
                        .2
                        .push(obj);
                    with_manifest.insert(dir);
                }
                ObjectName::TimelineHistory { timeline } => {
                    cat.timeline(timeline);
                }
                ObjectName::SharedChunk { .. } => cat.shared_chunks.push(obj.clone()),
                ObjectName::WriterClaim {
                    timeline,
                    epoch,
                    writer,
                } => {
                    let tl = cat.timeline(timeline);
                    tl.claim_keys.push(obj.key.clone());
                    if tl.writer.as_ref().is_none_or(|(e, _)| epoch > *e) {
                        let info = match writer {
                            Writer::Shipper(token) => WriterInfo::Shipper(token),
                            Writer::RetiredBy(child) => WriterInfo::RetiredBy(child),
                        };
                        tl.writer = Some((epoch, info));
                    }
                }
                _ => {}
            }
        }
        for m in manifests {
            let dir = layout::snapshot_dir(m.timeline, m.lsn, &m.id);
            let manifest_key = layout::snapshot_manifest(&dir);
            let mut size = sizes.get(manifest_key.as_str()).map_or(0, |o| o.size);
            let mut missing = Vec::new();
            let mut wrong_size = Vec::new();
            for c in &m.chunks {
                let key = c.object_key(&dir);
                match sizes.get(key.as_str()) {
                    Some(o) if o.size == c.size => size += o.size,
                    Some(o) => wrong_size.push((key, o.size, c.size)),
                    None => missing.push(key),
                }
            }
            if !missing.is_empty() || !wrong_size.is_empty() {
                let present = folders.get(&dir).map(|f| f.2.as_slice()).unwrap_or(&[]);
                let what: Vec<String> = missing
                    .iter()
                    .map(|k| format!("{k} is missing"))
                    .chain(wrong_size.iter().map(|(k, got, want)| {
                        format!("{k} is {got} bytes, the manifest says {want}")
                    }))
                    .collect();
                cat.problems.push(Problem {
                    key: manifest_key.clone(),
                    problem: format!("damaged snapshot: {}", what.join("; ")),
                });
                let shared = m
                    .chunks
                    .iter()
                    .filter(|c| c.is_shared())
                    .map(|c| c.object_key(&dir))
                    .collect();
                cat.damaged.push(DamagedSnapshot {
                    timeline: m.timeline,
                    lsn: m.lsn,
                    id: m.id.clone(),
                    dir,
                    manifest_key,
                    missing,
                    wrong_size,
                    keys: present.iter().map(|o| o.key.clone()).collect(),
                    shared,
                    newest_ms: present
                        .iter()
                        .map(|o| o.last_modified_ms)
                        .max()
                        .unwrap_or(0),
                });
                continue;
            }
            let info = SnapshotInfo {
                timeline: m.timeline,
                lsn: m.lsn,
                lsn_time_ms: m.lsn_time_ms,
                id: m.id.clone(),
                dir,
                manifest_key,
                finished_ms: m.finished_ms,
                total_count: m.total_count,
                total_raw_bytes: m.total_raw_bytes,
                size,
                chunks: m.chunks,
            };
            cat.timeline(info.timeline).snapshots.push(info);
        }
        for (dir, (timeline, lsn, objs)) in folders {
            if with_manifest.contains(&dir) {
                continue;
            }
            cat.incomplete.push(IncompleteSnapshot {
                timeline,
                lsn,
                dir,
                keys: objs.iter().map(|o| o.key.clone()).collect(),
                size: objs.iter().map(|o| o.size).sum(),
                newest_ms: objs.iter().map(|o| o.last_modified_ms).max().unwrap_or(0),
            });
        }
        for tl in cat.timelines.values_mut() {
            tl.snapshots.sort_by_key(|s| (s.lsn, s.finished_ms));
            tl.segments.sort_by_key(|s| (s.first, s.last));
            tl.claim_keys.sort(); // epochs are zero-padded: key order is claim order
            tl.segment_bytes = tl.segments.iter().map(|s| s.size).sum();
            tl.overlaps = overlaps(&tl.segments);
            tl.coverage = coverage(&tl.segments);
            tl.gaps = tl
                .coverage
                .windows(2)
                .map(|w| (w[0].last + 1, w[1].first - 1))
                .collect();
        }
        for tl in cat.timelines.values() {
            for &(from, to) in &tl.gaps {
                cat.problems.push(Problem {
                    key: layout::log_prefix(tl.timeline),
                    problem: format!(
                        "log gap on timeline {}: LSNs {from}..={to} are missing",
                        tl.timeline
                    ),
                });
            }
            for o in tl.overlaps.iter().filter(|o| !o.consistent) {
                cat.problems.push(Problem {
                    key: o.later.clone(),
                    problem: format!(
                        "overlaps {} on LSNs {}..={} with different commit times",
                        o.earlier, o.first, o.last
                    ),
                });
            }
        }
        let restorable: Vec<(u64, Vec<RestorableRange>)> = cat
            .timelines
            .keys()
            .map(|&tl| (tl, cat.restorable_ranges(tl)))
            .collect();
        for (tl, ranges) in restorable {
            cat.timeline(tl).restorable = ranges;
        }
        cat.objects = objects;
        cat
    }

    fn timeline(&mut self, n: u64) -> &mut TimelineInfo {
        self.timelines.entry(n).or_insert_with(|| TimelineInfo {
            timeline: n,
            parent: None,
            branch_lsn: 0,
            has_history: false,
            branch_time_ms: 0,
            created_ms: 0,
            writer: None,
            claim_keys: Vec::new(),
            snapshots: Vec::new(),
            segments: Vec::new(),
            coverage: Vec::new(),
            gaps: Vec::new(),
            overlaps: Vec::new(),
            segment_bytes: 0,
            restorable: Vec::new(),
        })
    }

    /// The catalog as it will be once `deleted` keys are gone from the store (what a
    /// prune leaves), rebuilt by the same rules as [`Catalog::build`].
    pub fn after_deleting(&self, deleted: &[String]) -> Catalog {
        let gone: BTreeSet<&str> = deleted.iter().map(String::as_str).collect();
        let objects = self
            .objects
            .iter()
            .filter(|o| !gone.contains(o.key.as_str()))
            .cloned()
            .collect();
        let (manifests, histories) = &self.sources;
        let manifests = manifests
            .iter()
            .filter(|m| {
                let dir = layout::snapshot_dir(m.timeline, m.lsn, &m.id);
                !gone.contains(layout::snapshot_manifest(&dir).as_str())
            })
            .cloned()
            .collect();
        Catalog::build(
            objects,
            manifests,
            histories.clone(),
            self.restore_points.clone(),
        )
    }

    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The newest timeline, if any.
    pub fn newest_timeline(&self) -> Option<u64> {
        self.timelines.keys().next_back().copied()
    }

    /// Timelines that are not retired, oldest first: the ones a database may still ship
    /// to, and the candidates of a restore target given without a timeline.
    pub fn live_timelines(&self) -> Vec<u64> {
        self.timelines
            .values()
            .filter(|t| t.is_live())
            .map(|t| t.timeline)
            .collect()
    }

    /// The timeline that was current at `time_ms` on the line of database histories that
    /// ends at `timeline`: walking back through the timelines it retired while they were
    /// created after that time (the database still wrote to the parent then).
    pub fn timeline_at(&self, timeline: u64, time_ms: u64) -> u64 {
        let mut current = timeline;
        let mut seen = BTreeSet::new();
        while seen.insert(current) {
            let Some(info) = self.timelines.get(&current) else {
                break;
            };
            let Some(parent) = info.parent else { break };
            let retired_here = self
                .timelines
                .get(&parent)
                .is_some_and(|p| p.retired_by() == Some(current));
            if retired_here && info.created_ms > time_ms {
                current = parent;
            } else {
                break;
            }
        }
        current
    }

    /// The lineage of `timeline`: `(timeline, from, to)` portions, oldest first, where the
    /// timeline's history takes LSNs `from..=to` from that timeline (`to = u64::MAX` for the
    /// last). Stops at a parent the repository does not hold.
    pub fn lineage(&self, timeline: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        let mut to = u64::MAX;
        let mut current = Some(timeline);
        let mut seen = BTreeSet::new();
        while let Some(tl) = current {
            if !seen.insert(tl) {
                break; // a cycle in histories: treat as a root
            }
            let info = self.timelines.get(&tl);
            let branch = info.map_or(0, |i| i.branch_lsn);
            out.push((tl, branch + 1, to));
            to = branch;
            current = info
                .and_then(|i| i.parent)
                .filter(|p| self.timelines.contains_key(p));
        }
        out.reverse();
        out
    }

    /// Total stored bytes.
    pub fn total_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// Pairs of overlapping segments (sorted by first LSN): each segment against the earlier
/// one reaching furthest, so a chain of duplicates reports each once.
fn overlaps(segments: &[SegmentInfo]) -> Vec<Overlap> {
    let mut out = Vec::new();
    let mut furthest: Option<&SegmentInfo> = None;
    for s in segments {
        if let Some(e) = furthest {
            if s.first <= e.last {
                out.push(Overlap {
                    earlier: e.key.clone(),
                    later: s.key.clone(),
                    first: s.first,
                    last: s.last.min(e.last),
                    consistent: consistent(e, s),
                });
            }
        }
        if furthest.is_none_or(|e| s.last > e.last) {
            furthest = Some(s);
        }
    }
    out
}

/// Whether two overlapping segments' names can describe the same records: equal ends
/// have equal times, and times grow with LSNs.
fn consistent(a: &SegmentInfo, b: &SegmentInfo) -> bool {
    let same = |la: u64, ta: u64, lb: u64, tb: u64| match la.cmp(&lb) {
        std::cmp::Ordering::Equal => ta == tb,
        std::cmp::Ordering::Less => ta <= tb,
        std::cmp::Ordering::Greater => ta >= tb,
    };
    same(a.first, a.t0, b.first, b.t0) && same(a.last, a.t1, b.last, b.t1)
}

/// Merge segments (sorted by first LSN) into contiguous runs.
fn coverage(segments: &[SegmentInfo]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for s in segments {
        match runs.last_mut() {
            Some(r) if s.first <= r.last + 1 => {
                if s.last > r.last {
                    r.last = s.last;
                    r.t1 = s.t1;
                }
            }
            _ => runs.push(Run {
                first: s.first,
                last: s.last,
                t0: s.t0,
                t1: s.t1,
            }),
        }
    }
    runs
}
