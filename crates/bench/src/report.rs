//! The report: every figure of a run, the targets checked against them, and renderings as
//! a terminal table and as a BENCHMARKS.md section (JSON through `Serialize`).

use std::time::Duration;

use serde::Serialize;

use crate::baseline::BaselineBackup;
use crate::capture::CaptureOverhead;
use crate::dataset::ValueKind;
use crate::encryption::EncryptionFigures;
use crate::etcd::EtcdFigures;
use crate::limits::Limits;
use crate::load::LoadFigures;
use crate::machine::Machine;
use crate::memory::PeakMemory;
use crate::options::BenchOptions;
use crate::restore_s3::RestoreS3Figures;
use crate::rpo::Rpo;
use crate::tito::{Replay, Shipping, SnapshotRestore};

const MIB: f64 = 1024.0 * 1024.0;

/// An amount of work and the wall time it took. In JSON it also carries its rates
/// (`mib_per_s`, `pairs_per_s`), so readers need not recompute them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    /// Key-value pairs (or records) handled.
    pub pairs: u64,
    /// Key + value bytes handled (the dataset's raw size for whole-dataset work).
    pub bytes: u64,
    /// Wall time in seconds.
    pub secs: f64,
}

impl Timed {
    /// `pairs` and `bytes` handled in `elapsed`.
    pub fn new(pairs: u64, bytes: u64, elapsed: Duration) -> Self {
        Timed {
            pairs,
            bytes,
            secs: elapsed.as_secs_f64(),
        }
    }

    /// MiB of raw bytes per second.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.secs.max(1e-9)
    }

    /// Pairs per second.
    pub fn pairs_per_s(&self) -> f64 {
        self.pairs as f64 / self.secs.max(1e-9)
    }

    /// `"123.4 MiB/s (56.7k pairs/s, 1.23 s)"`.
    fn show(&self) -> String {
        format!(
            "{:.1} MiB/s ({:.1}k pairs/s, {:.2} s)",
            self.mib_per_s(),
            self.pairs_per_s() / 1000.0,
            self.secs
        )
    }
}

impl Serialize for Timed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Timed", 5)?;
        st.serialize_field("pairs", &self.pairs)?;
        st.serialize_field("bytes", &self.bytes)?;
        st.serialize_field("secs", &self.secs)?;
        st.serialize_field("mib_per_s", &self.mib_per_s())?;
        st.serialize_field("pairs_per_s", &self.pairs_per_s())?;
        st.end()
    }
}

/// The dataset a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetInfo {
    /// Keys.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Key + value bytes.
    pub raw_bytes: u64,
    /// What the values contain.
    pub values: ValueKind,
    /// Engine kind (`redb`, `memory`).
    pub engine: String,
    /// Where repositories were written.
    pub store: String,
}

/// The original design's figures.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineFigures {
    /// Full backup.
    pub backup: BaselineBackup,
    /// Restore of that backup into a fresh engine.
    pub restore: Timed,
}

/// Outcome of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Met.
    Pass,
    /// Not met.
    Fail,
}

/// One target checked against a measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub name: String,
    /// The measured value (in the target's unit).
    pub measured: f64,
    /// The target bound.
    pub bound: f64,
    /// `true` when the measured value must be at least the bound, `false` at most.
    pub at_least: bool,
    /// The unit of both (`×`, `ms`, `MiB`, `records/s`).
    pub unit: String,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Conditions that qualify the figure (sizes, rates actually reached).
    pub note: Option<String>,
}

impl TargetCheck {
    fn new(name: &str, measured: f64, at_least: bool, bound: f64, unit: &str) -> Self {
        let ok = if at_least {
            measured >= bound
        } else {
            measured <= bound
        };
        TargetCheck {
            name: name.to_string(),
            measured,
            bound,
            at_least,
            unit: unit.to_string(),
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            note: None,
        }
    }

    fn with_note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }

    fn goal(&self) -> String {
        format!(
            "{} {}",
            if self.at_least { "≥" } else { "≤" },
            num(self.bound, &self.unit)
        )
    }

    /// How far from the bound, as a factor (>1 means that much short).
    pub fn shortfall(&self) -> f64 {
        if self.at_least {
            self.bound / self.measured.max(1e-12)
        } else {
            self.measured / self.bound.max(1e-12)
        }
    }
}

fn num(v: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{v:.2}×"),
        "records/s" => format!("{:.0}k records/s", v / 1000.0),
        _ => format!("{v:.0} {unit}"),
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The machine the run measured.
    pub machine: Machine,
    /// The command line as typed, when the caller records it (the `tito` CLI does).
    pub command: Option<String>,
    /// Version and build profile (`release` or `debug`: debug figures mean little).
    pub build: String,
    /// 1-minute load average when the run started and when it ended (other work on the
    /// machine disturbs timings; above the core count, expect noise).
    pub load_average: [Option<f64>; 2],
    /// The options of the run.
    pub options: BenchOptions,
    /// The dataset.
    pub dataset: DatasetInfo,
    /// Machine limits on the dataset's bytes.
    pub limits: Option<Limits>,
    /// The original design.
    pub baseline: Option<BaselineFigures>,
    /// Tito's snapshot and restore.
    pub snapshot: Option<SnapshotRestore>,
    /// Log replay.
    pub replay: Option<Replay>,
    /// Shipping cost vs database size.
    pub ship: Option<Shipping>,
    /// Shipping lag in continuous mode.
    pub rpo: Option<Rpo>,
    /// Change-capture overhead.
    pub capture: Option<CaptureOverhead>,
    /// `tito load` next to the engine's bulk load.
    pub load: Option<LoadFigures>,
    /// Tito on etcd next to etcd's own snapshot tools.
    pub etcd: Option<EtcdFigures>,
    /// Restore from S3 next to restore from a local directory.
    pub restore_s3: Option<RestoreS3Figures>,
    /// Restore after log compaction next to a restore from a fresh snapshot.
    pub compaction: Option<crate::compaction::CompactionFigures>,
    /// Snapshot and restore with encryption next to without.
    pub encryption: Option<EncryptionFigures>,
    /// Incremental snapshots next to a full one, and a week of them next to the original.
    pub incremental: Option<crate::incremental::IncrementalFigures>,
    /// RPO of a backup that watches an etcd cluster plain clients write to.
    pub etcd_watch_rpo: Option<crate::etcd_watch_rpo::WatchRpo>,
    /// Phases selected that could not run here, and why (their targets are not checked).
    pub skipped: Vec<Skipped>,
    /// Other databases' backup tools next to Tito on the same rows.
    pub peers: Option<crate::peers::PeersFigures>,
    /// Targets checked (those whose phases ran).
    pub targets: Vec<TargetCheck>,
    /// Wall time of the whole run (s).
    pub elapsed_secs: f64,
}

/// A selected phase that did not run, with the target it would have checked.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// The phase.
    pub phase: crate::Phase,
    /// Name of the target it checks.
    pub target: String,
    /// Why it did not run.
    pub reason: String,
}

/// Name of the etcd phase's snapshot target (issue #16), checked on a compacted cluster.
pub const ETCD_SNAPSHOT_TARGET: &str =
    "snapshot speed vs etcdctl snapshot save (etcd, compacted + defragmented)";

/// Name of the etcd-watch-rpo phase's target at `rate` puts/s.
pub fn watch_rpo_target(rate: u64) -> String {
    format!("RPO ≤ 1 s at {rate} w/s (etcd watch)")
}

/// Memory targets are stated for a 1 GiB dataset.
const GIB: u64 = 1 << 30;

impl BenchReport {
    /// Check every target whose figures are present (fills `targets`).
    pub fn check_targets(&mut self) {
        let mut t = Vec::new();
        if let (Some(s), Some(b)) = (&self.snapshot, &self.baseline) {
            t.push(TargetCheck::new(
                "snapshot speed vs original backup",
                s.snapshot.mib_per_s() / b.backup.timed.mib_per_s().max(1e-12),
                true,
                10.0,
                "×",
            ));
            t.push(TargetCheck::new(
                "backup bytes vs original",
                s.snapshot_bytes as f64 / b.backup.bytes.max(1) as f64,
                false,
                0.7,
                "×",
            ));
        }
        if let (Some(s), Some(l)) = (&self.snapshot, &self.limits) {
            let cli = l.zstd_cli.as_ref().map(|c| {
                format!(
                    "vs the zstd binary: {:.2}×",
                    s.snapshot.mib_per_s() / c.timed.mib_per_s().max(1e-12)
                )
            });
            t.push(
                TargetCheck::new(
                    "snapshot speed vs zstd -1 (in-process, 1 thread)",
                    s.snapshot.mib_per_s() / l.zstd_lib.timed.mib_per_s().max(1e-12),
                    true,
                    0.5,
                    "×",
                )
                .with_note(cli),
            );
            t.push(TargetCheck::new(
                "restore speed vs engine bulk load",
                s.restore.mib_per_s() / l.bulk_load.mib_per_s().max(1e-12),
                true,
                0.5,
                "×",
            ));
        }
        if let Some(s) = &self.snapshot {
            let size_note = (self.dataset.raw_bytes < GIB).then(|| {
                format!(
                    "dataset is {:.0} MiB; the target is for 1 GiB",
                    self.dataset.raw_bytes as f64 / MIB
                )
            });
            for (name, m) in [
                ("snapshot peak memory", s.snapshot_memory),
                ("restore peak memory", s.restore_memory),
            ] {
                if let Some(m) = m {
                    t.push(
                        TargetCheck::new(name, m.figure() as f64 / MIB, false, 256.0, "MiB")
                            .with_note(Some(memory_note(&m, size_note.as_deref()))),
                    );
                }
            }
        }
        if let Some(c) = &self.capture {
            t.push(TargetCheck::new(
                "commit throughput with capture vs raw",
                c.ratio,
                true,
                0.85,
                "×",
            ));
        }
        if let Some(l) = &self.load {
            t.push(TargetCheck::new(
                "tito load speed vs engine bulk load",
                l.ratio,
                true,
                0.5,
                "×",
            ));
        }
        if let Some(e) = &self.etcd {
            t.push(TargetCheck::new(
                "commit throughput with capture vs raw (etcd)",
                e.ratios.capture,
                true,
                0.85,
                "×",
            ));
            t.push(TargetCheck::new(
                "restore speed vs engine bulk load (etcd)",
                e.ratios.restore_vs_bulk_load,
                true,
                0.5,
                "×",
            ));
            // Only where etcdctl streamed a compacted, defragmented member db: elsewhere
            // the ratio follows the cluster's history (see `crate::etcd`).
            if e.member_db.compacted_to.is_some() {
                t.push(TargetCheck::new(
                    ETCD_SNAPSHOT_TARGET,
                    e.ratios.snapshot_vs_etcdctl_save,
                    true,
                    0.5,
                    "×",
                ));
            }
        }
        if let Some(r) = &self.rpo {
            let note = (r.achieved_rate < 0.95 * r.target_rate as f64).then(|| {
                format!(
                    "writers reached {:.0} of {} tx/s",
                    r.achieved_rate, r.target_rate
                )
            });
            t.push(
                TargetCheck::new(
                    &format!("RPO (max lag) at {} tx/s", r.target_rate),
                    r.max_ms as f64,
                    false,
                    1000.0,
                    "ms",
                )
                .with_note(note),
            );
        }
        if let Some(r) = &self.etcd_watch_rpo {
            let note = (r.achieved_rate < 0.95 * r.target_rate as f64).then(|| {
                format!(
                    "writers reached {:.0} of {} puts/s",
                    r.achieved_rate, r.target_rate
                )
            });
            t.push(
                TargetCheck::new(
                    &watch_rpo_target(r.target_rate),
                    r.max_ms as f64,
                    false,
                    1000.0,
                    "ms",
                )
                .with_note(note),
            );
        }
        if let Some(c) = &self.compaction {
            t.push(TargetCheck::new(
                "restore latest after compaction vs from a fresh snapshot (time)",
                c.ratio,
                false,
                2.0,
                "×",
            ));
            if let Some((_, _, r)) = &c.s3 {
                t.push(TargetCheck::new("the same from S3", *r, false, 2.0, "×"));
            }
        }
        if let Some(i) = &self.incremental {
            t.push(TargetCheck::new(
                "incremental snapshot after 1% churn (one range): bytes vs a full one",
                i.bytes_ratio,
                false,
                0.05,
                "×",
            ));
            t.push(TargetCheck::new(
                "incremental snapshot after 1% churn (one range): speed-up over full",
                i.speedup,
                true,
                3.0,
                "×",
            ));
            t.push(TargetCheck::new(
                "a week of daily snapshots and log vs the original design's (bytes)",
                i.week_ratio,
                false,
                0.2,
                "×",
            ));
        }
        if let Some(e) = &self.encryption {
            t.push(TargetCheck::new(
                "snapshot speed with encryption vs without",
                e.snapshot_ratio,
                true,
                0.9,
                "×",
            ));
            t.push(TargetCheck::new(
                "restore speed with encryption vs without",
                e.restore_ratio,
                true,
                0.9,
                "×",
            ));
        }
        if let Some(r) = &self.restore_s3 {
            t.push(TargetCheck::new(
                "restore speed from S3 vs from a local directory",
                r.ratio,
                true,
                0.9,
                "×",
            ));
        }
        if let Some(r) = &self.replay {
            t.push(TargetCheck::new(
                "log replay rate",
                r.records_per_s(),
                true,
                200_000.0,
                "records/s",
            ));
        }
        if let Some(s) = &self.ship {
            let note = (s.large_keys < 1_000_000 || s.changes != 10_000).then(|| {
                format!(
                    "{} changes at {} vs {} keys; the target is 10k changes at 10k vs 1M keys",
                    s.changes, s.small_keys, s.large_keys
                )
            });
            t.push(
                TargetCheck::new(
                    "ship time, large vs small database",
                    s.ratio(),
                    false,
                    1.5,
                    "×",
                )
                .with_note(note),
            );
        }
        self.targets = t;
    }

    /// The figures as (measurement, value, detail) rows.
    fn figure_rows(&self) -> Vec<[String; 3]> {
        let mut rows = Vec::new();
        let d = &self.dataset;
        rows.push([
            "dataset".to_string(),
            format!(
                "{} keys × {} B JSON values ({})",
                d.keys,
                d.value_size,
                kebab(&d.values)
            ),
            format!(
                "{:.1} MiB raw; engine {}; store {}",
                d.raw_bytes as f64 / MIB,
                d.engine,
                d.store
            ),
        ]);
        if let Some(l) = &self.limits {
            rows.push([
                "zstd -1, in-process (1 thread)".into(),
                format!("{:.1} MiB/s", l.zstd_lib.timed.mib_per_s()),
                format!(
                    "{:.1} MiB dump → {:.1} MiB",
                    l.dump_bytes as f64 / MIB,
                    l.zstd_lib.out_bytes as f64 / MIB
                ),
            ]);
            rows.push(match &l.zstd_cli {
                Some(c) => [
                    "zstd -1 binary (-T1)".into(),
                    format!("{:.1} MiB/s", c.timed.mib_per_s()),
                    format!("→ {:.1} MiB", c.out_bytes as f64 / MIB),
                ],
                None => [
                    "zstd -1 binary".into(),
                    "-".into(),
                    "zstd not found in PATH".into(),
                ],
            });
            rows.push([
                "disk sequential write + fsync".into(),
                format!("{:.1} MiB/s", l.disk_write.mib_per_s()),
                format!("{:.2} s", l.disk_write.secs),
            ]);
            rows.push([
                "disk sequential read".into(),
                format!("{:.1} MiB/s", l.disk_read.mib_per_s()),
                if l.read_uncached {
                    "page cache dropped first".into()
                } else {
                    "may be served from the page cache".into()
                },
            ]);
            rows.push([
                format!(
                    "engine bulk_load ({}k-pair batches)",
                    crate::limits::BULK_BATCH / 1000
                ),
                format!("{:.1} MiB/s", l.bulk_load.mib_per_s()),
                l.bulk_load.show(),
            ]);
        }
        if let Some(b) = &self.baseline {
            rows.push([
                "original full backup (JSON, gzip, serial)".into(),
                format!("{:.1} MiB/s", b.backup.timed.mib_per_s()),
                format!(
                    "{}; {} chunks, {:.2} MiB stored",
                    b.backup.timed.show(),
                    b.backup.chunks,
                    b.backup.bytes as f64 / MIB
                ),
            ]);
            rows.push([
                "original restore (txns of 100)".into(),
                format!("{:.1} MiB/s", b.restore.mib_per_s()),
                b.restore.show(),
            ]);
        }
        if let Some(s) = &self.snapshot {
            rows.push([
                "Tito snapshot".into(),
                format!("{:.1} MiB/s", s.snapshot.mib_per_s()),
                format!(
                    "{}; {} chunks (zstd {}), {:.2} MiB stored{}",
                    s.snapshot.show(),
                    s.chunks,
                    s.level,
                    s.snapshot_bytes as f64 / MIB,
                    peak(s.snapshot_memory)
                ) + &cpu(s.snapshot_cpu_secs),
            ]);
            rows.push([
                "Tito restore (verify + load)".into(),
                format!("{:.1} MiB/s", s.restore.mib_per_s()),
                format!(
                    "{}{}{}",
                    s.restore.show(),
                    peak(s.restore_memory),
                    cpu(s.restore_cpu_secs)
                ),
            ]);
        }
        if let Some(r) = &self.replay {
            rows.push([
                "Tito log replay".into(),
                format!("{:.0} records/s", r.records_per_s()),
                format!(
                    "{} records in {:.2} s (whole restore {:.2} s)",
                    r.records, r.replay_secs, r.restore_secs
                ),
            ]);
        }
        if let Some(s) = &self.ship {
            rows.push([
                format!("ship {} changes", s.changes),
                format!("{:.2}× large/small", s.ratio()),
                format!(
                    "{} keys: {:.1} ms; {} keys: {:.1} ms (median of {})",
                    s.small_keys,
                    s.small_secs * 1e3,
                    s.large_keys,
                    s.large_secs * 1e3,
                    s.rounds
                ),
            ]);
        }
        if let Some(r) = &self.rpo {
            rows.push([
                format!("RPO lag, continuous mode ({} ms interval)", r.interval_ms),
                format!("p50 {} / p99 {} / max {} ms", r.p50_ms, r.p99_ms, r.max_ms),
                format!(
                    "{:.0} tx/s achieved of {}; {} segments shipped in {} s; {} samples",
                    r.achieved_rate, r.target_rate, r.segments, r.duration_secs, r.samples
                ),
            ]);
        }
        if let Some(c) = &self.capture {
            rows.push([
                "commit throughput, capture vs raw".into(),
                format!("{:.3}×", c.ratio),
                format!(
                    "raw {:.0} commits/s, capture {:.0} commits/s (medians of {}×{} paired)",
                    c.raw_commits_per_s, c.capture_commits_per_s, c.rounds, c.per_round
                ),
            ]);
        }
        if let Some(l) = &self.load {
            rows.push([
                format!(
                    "engine bulk_load, same pairs ({}k-pair batches)",
                    crate::limits::BULK_BATCH / 1000
                ),
                format!("{:.1} MiB/s", l.bulk_load.mib_per_s()),
                l.bulk_load.show(),
            ]);
            rows.push([
                "tito load FILE (check + captured load)".into(),
                format!("{:.1} MiB/s", l.tito_load.mib_per_s()),
                format!(
                    "{}; {} transactions; check pass {:.2} s; dump {:.1} MiB; {:.2}× bulk load",
                    l.tito_load.show(),
                    l.batches,
                    l.check.secs,
                    l.dump_bytes as f64 / MIB,
                    l.ratio
                ),
            ]);
        }
        if let Some(r) = &self.restore_s3 {
            for (what, t) in [("local directory", &r.local), ("S3", &r.s3)] {
                rows.push([
                    format!(
                        "Tito restore from {what} (snapshot + {} segments)",
                        r.segments
                    ),
                    format!("{:.1} MiB/s", t.mib_per_s()),
                    format!(
                        "{}; {} objects read once, {:.1} MiB; best of {}",
                        t.show(),
                        r.planned_objects,
                        r.bytes_downloaded as f64 / MIB,
                        crate::restore_s3::ROUNDS
                    ),
                ]);
            }
            rows.push([
                "restore from S3 vs local directory".into(),
                format!("{:.2}×", r.ratio),
                r.s3_store.clone(),
            ]);
        }
        if let Some(c) = &self.compaction {
            rows.extend(compaction_rows(c));
        }
        if let Some(i) = &self.incremental {
            rows.extend(incremental_rows(i));
        }
        if let Some(e) = &self.encryption {
            for (what, t, bytes) in [
                ("snapshot, plain", &e.plain_snapshot, Some(e.plain_bytes)),
                (
                    "snapshot, encrypted",
                    &e.encrypted_snapshot,
                    Some(e.encrypted_bytes),
                ),
                ("restore, plain", &e.plain_restore, None),
                ("restore, encrypted", &e.encrypted_restore, None),
            ] {
                rows.push([
                    format!("Tito {what}"),
                    format!("{:.1} MiB/s", t.mib_per_s()),
                    format!(
                        "{}{}; best of {}",
                        t.show(),
                        bytes.map_or(String::new(), |b| format!(
                            "; {:.1} MiB stored",
                            b as f64 / MIB
                        )),
                        crate::encryption::ROUNDS
                    ),
                ]);
            }
            rows.push([
                "encrypted vs plain (snapshot, restore)".into(),
                format!("{:.2}×, {:.2}×", e.snapshot_ratio, e.restore_ratio),
                tito_store::encrypt::SCHEME.into(),
            ]);
        }
        if let Some(p) = &self.peers {
            rows.extend(peers_rows(p));
        }
        if let Some(e) = &self.etcd {
            rows.extend(etcd_rows(e));
        }
        if let Some(r) = &self.etcd_watch_rpo {
            rows.push([
                format!("RPO lag, etcd watch backup ({} ms interval)", r.interval_ms),
                format!("p50 {} / p99 {} / max {} ms", r.p50_ms, r.p99_ms, r.max_ms),
                format!(
                    "{:.0} puts/s achieved of {} ({} plain etcd clients, {} s); {} writes, each \
                     from its put returning until the store's log covered its revision (log end \
                     polled every {} ms, {} polls); {} segments, {} revisions shipped; prefix \
                     {:?} (deleted after)",
                    r.achieved_rate,
                    r.target_rate,
                    crate::etcd_watch_rpo::WRITERS,
                    r.duration_secs,
                    r.writes,
                    crate::rpo::SAMPLE_EVERY.as_millis(),
                    r.polls,
                    r.segments,
                    r.records_shipped,
                    r.prefix
                ),
            ]);
        }
        for s in &self.skipped {
            rows.push([kebab(&s.phase), "skipped".into(), s.reason.clone()]);
        }
        rows
    }

    fn target_rows(&self) -> Vec<[String; 5]> {
        self.targets
            .iter()
            .map(|t| {
                [
                    t.name.clone(),
                    num(t.measured, &t.unit),
                    t.goal(),
                    match t.verdict {
                        Verdict::Pass => "PASS".into(),
                        Verdict::Fail => "FAIL".into(),
                    },
                    t.note.clone().unwrap_or_default(),
                ]
            })
            .chain(self.skipped.iter().map(|s| {
                [
                    s.target.clone(),
                    "-".into(),
                    "-".into(),
                    "SKIPPED".into(),
                    s.reason.clone(),
                ]
            }))
            .collect()
    }

    /// A plain-text table for a terminal.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        out.push_str(&aligned(
            &["measurement", "value", "detail"],
            &self.figure_rows(),
        ));
        out.push('\n');
        out.push_str(&aligned(
            &["target", "measured", "goal", "verdict", "note"],
            &self.target_rows(),
        ));
        out.push_str(&format!(
            "\nrun took {:.1} s; {}; {}; {}\n",
            self.elapsed_secs,
            self.build,
            self.load_note(),
            self.machine.describe()
        ));
        out
    }

    /// A BENCHMARKS.md section: the machine, the command as typed and with every option
    /// spelled out, both tables, and a closing list of the targets not met with the
    /// factor by which each is missed.
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("## `tito bench`\n\n");
        out.push_str(&format!("**Machine:** {}\n\n", self.machine.describe()));
        out.push_str(&format!("**Build:** {}\n\n", self.build));
        out.push_str(&format!("**Load:** {}\n\n", self.load_note()));
        if let Some(c) = &self.command {
            out.push_str(&format!("Command: `{c}`\n\n"));
        }
        out.push_str(&format!(
            "Every option spelled out: `tito bench {}`\n\n",
            self.flags()
        ));
        out.push_str(&markdown(
            &["measurement", "value", "detail"],
            &self.figure_rows(),
        ));
        out.push('\n');
        out.push_str(&markdown(
            &["target", "measured", "goal", "verdict", "note"],
            &self.target_rows(),
        ));
        let failed: Vec<&TargetCheck> = self
            .targets
            .iter()
            .filter(|t| t.verdict == Verdict::Fail)
            .collect();
        if !failed.is_empty() {
            out.push_str("\nTargets not met:\n\n");
            for t in failed {
                out.push_str(&format!(
                    "- {}: {} against {} ({:.2}× off).\n",
                    t.name,
                    num(t.measured, &t.unit),
                    t.goal(),
                    t.shortfall()
                ));
            }
        }
        out
    }

    /// `1-minute load average 0.52 at start, 1.10 at end (2 cores)`.
    fn load_note(&self) -> String {
        let show = |l: Option<f64>| l.map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into());
        format!(
            "1-minute load average {} at start, {} at end ({} cores)",
            show(self.load_average[0]),
            show(self.load_average[1]),
            self.machine.cores
        )
    }

    /// The options as command-line flags.
    fn flags(&self) -> String {
        let o = &self.options;
        let mut f = format!(
            "--keys {} --value-size {} --values {} --seed {} --replay-records {} --ship-changes {} \
             --ship-small-keys {} --ship-large-keys {} --rpo-rate {} --rpo-secs {} \
             --rpo-interval-ms {} --capture-rounds {} --capture-per-round {} --etcd-keys {}",
            o.keys,
            o.value_size,
            kebab(&o.values),
            o.seed,
            o.replay_records,
            o.ship_changes,
            o.ship_small_keys,
            o.ship_large_keys,
            o.rpo_rate,
            o.rpo_secs,
            o.rpo_interval_ms,
            o.capture_rounds,
            o.capture_per_round,
            o.etcd_keys
        );
        if let Some(mb) = o.redb_cache_mb {
            f.push_str(&format!(" --redb-cache-mb {mb}"));
        }
        if let Some(l) = o.snapshot_level {
            f.push_str(&format!(" --snapshot-level {l}"));
        }
        if let Some(e) = &o.engine {
            f.push_str(&format!(" --db {}", shell_word(e)));
        }
        if let Some(s) = &o.store {
            f.push_str(&format!(" --store {}", shell_word(s)));
        }
        if let Some(s) = &o.s3_store {
            f.push_str(&format!(" --s3-store {}", shell_word(s)));
        }
        if o.runs(crate::Phase::RestoreS3) {
            f.push_str(&format!(" --restore-s3-segments {}", o.restore_s3_segments));
        }
        if o.runs(crate::Phase::Compaction) {
            f.push_str(&format!(" --compaction-seconds {}", o.compaction_seconds));
        }
        if o.runs(crate::Phase::EtcdWatchRpo) {
            f.push_str(&format!(" --watch-rpo-rate {}", o.watch_rpo_rate));
        }
        if o.etcd_private {
            f.push_str(" --etcd-private");
        }
        if o.etcd_compact {
            f.push_str(" --etcd-compact");
        }
        if !o.phases.is_empty() {
            let names: Vec<String> = o.phases.iter().map(kebab).collect();
            f.push_str(&format!(" --phases {}", names.join(",")));
        }
        f
    }
}

/// The peers phase's rows: each peer's figure next to Tito's, with Tito / peer after each,
/// then one row per skipped peer.
fn peers_rows(p: &crate::peers::PeersFigures) -> Vec<[String; 3]> {
    let mut rows = Vec::new();
    if let Some(l) = &p.litestream {
        rows.push([
            "SQLite + Litestream".into(),
            format!("litestream {}, sqlite {}", l.version, l.sqlite_version),
            format!(
                "{} rows loaded by sqlite3 in {:.2} s (not timed below); database {:.2} MiB; file replica",
                l.load.pairs,
                l.load.secs,
                l.db_bytes as f64 / MIB
            ),
        ]);
        rows.extend(peer_rows(
            &p.tito,
            "Litestream",
            [
                (
                    l.backup.secs,
                    "litestream replicate -once -force-snapshot (process wall time)".into(),
                ),
                (
                    l.restore.secs,
                    "litestream restore (process wall time)".into(),
                ),
            ],
            (l.replica_bytes, "the replica".into()),
            &l.ratios,
            format!(
                "{} rows restored, {} key + value bytes, checked",
                l.restored_rows, l.restored_bytes
            ),
        ));
        rows.extend(crate::peers::continuous::rows(&l.continuous));
    }
    if let Some(g) = &p.pgbackrest {
        rows.push([
            "PostgreSQL + pgBackRest".into(),
            format!("{}, {}", g.version, g.postgres_version),
            format!(
                "{} rows loaded by psql COPY in {:.2} s (not timed below); compress-type=zst, process-max={}",
                g.load.pairs, g.load.secs, g.process_max
            ),
        ]);
        rows.extend(peer_rows(
            &p.tito,
            "pgBackRest",
            [
                (
                    g.backup.secs,
                    "pgbackrest backup --type=full --start-fast (process wall time)".into(),
                ),
                (
                    g.restore.secs,
                    format!(
                        "pgbackrest restore {:.2} s, then pg_ctl start until SELECT 1 answers",
                        g.restore_files_secs
                    ),
                ),
            ],
            (g.repo_bytes, "the repository".into()),
            &g.ratios,
            format!(
                "{} rows restored, {} key + value bytes, checked; backup + archived WAL",
                g.restored_rows, g.restored_bytes
            ),
        ));
    }
    for s in &p.skipped {
        rows.push([
            format!("{} (peer)", s.peer),
            "skipped".into(),
            s.reason.clone(),
        ]);
    }
    rows
}

/// One peer's backup, restore and bytes rows, each followed by Tito's figure and ratio.
fn peer_rows(
    t: &crate::peers::TitoSide,
    peer: &str,
    [(backup, backup_how), (restore, restore_how)]: [(f64, String); 2],
    (bytes, where_): (u64, String),
    r: &crate::peers::Ratios,
    checked: String,
) -> Vec<[String; 3]> {
    let mib = |b: u64| format!("{:.2} MiB", b as f64 / MIB);
    vec![
        [
            format!("{peer} full backup time"),
            format!("{backup:.2} s"),
            backup_how,
        ],
        [
            "Tito full backup time (same rows)".into(),
            format!("{:.2} s", t.snapshot_secs),
            format!("Tito snapshot; Tito / {peer} {:.2}×", r.backup_time),
        ],
        [
            format!("{peer} restore time"),
            format!("{restore:.2} s"),
            restore_how,
        ],
        [
            "Tito restore time (same rows)".into(),
            format!("{:.2} s", t.restore_secs),
            format!(
                "into a fresh redb file; Tito / {peer} {:.2}×",
                r.restore_time
            ),
        ],
        [format!("{peer} bytes in {where_}"), mib(bytes), checked],
        [
            "Tito snapshot bytes (same rows)".into(),
            mib(t.snapshot_bytes),
            format!("Tito / {peer} {:.2}×", r.bytes),
        ],
    ]
}

/// The etcd phase's rows: Tito next to etcd's own tools, then the ratios.
fn etcd_rows(e: &EtcdFigures) -> Vec<[String; 3]> {
    let r = &e.ratios;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / MIB);
    let tool = |t: &crate::etcd::ToolRun, written: &str| {
        format!(
            "{:.1} MiB file, {} key revisions, {:.2} s (process wall time); {written} {:.1} MiB",
            t.timed.bytes as f64 / MIB,
            t.timed.pairs,
            t.timed.secs,
            t.written_bytes as f64 / MIB
        )
    };
    vec![
        [
            "etcd cluster".into(),
            format!(
                "{} members, etcd {}{}",
                e.endpoints.len(),
                e.server_version,
                if e.private { ", private" } else { "" }
            ),
            format!(
                "{}namespaces under {:?} (deleted after); etcdctl reads member {}",
                if e.private {
                    "started by the phase in a temp dir and stopped after; "
                } else {
                    ""
                },
                e.namespace,
                e.member
            ),
        ],
        [
            "member db etcdctl saved (etcd dbSize)".into(),
            mib(e.member_db.after_bytes),
            match e.member_db.compacted_to {
                Some(rev) => format!(
                    "{} after loading the dataset; then compacted to revision {rev}, every \
                     member defragmented",
                    mib(e.member_db.before_bytes)
                ),
                None => format!(
                    "{} after loading the dataset; not compacted nor defragmented \
                     (--etcd-private or --etcd-compact do)",
                    mib(e.member_db.before_bytes)
                ),
            },
        ],
        [
            format!(
                "etcd bulk_load ({} txns of {} pairs in flight)",
                crate::etcd::LOAD_CONCURRENCY,
                e.load_batch_pairs
            ),
            format!("{:.1} MiB/s", e.bulk_load.mib_per_s()),
            e.bulk_load.show(),
        ],
        [
            "Tito snapshot (etcd)".into(),
            format!("{:.1} MiB/s", e.snapshot.mib_per_s()),
            format!(
                "{}; {} chunks (zstd {}), {:.2} MiB stored; median of {} rounds: {}",
                e.snapshot.show(),
                e.chunks,
                e.level,
                e.snapshot_bytes as f64 / MIB,
                e.rounds,
                secs_list(&e.snapshot_secs)
            ),
        ],
        [
            format!("{} (whole member db)", e.etcdctl_save.tool),
            format!("{:.1} MiB/s", e.etcdctl_save.timed.mib_per_s()),
            format!(
                "{}; median of {} rounds, alternating with Tito's: {}",
                tool(&e.etcdctl_save, "wrote"),
                e.rounds,
                secs_list(&e.etcdctl_save_secs)
            ),
        ],
        [
            "Tito restore (etcd, verify + load)".into(),
            format!("{:.1} MiB/s", e.restore.mib_per_s()),
            e.restore.show(),
        ],
        [
            format!("{} (new data dir)", e.etcdctl_restore.tool),
            format!("{:.1} MiB/s", e.etcdctl_restore.timed.mib_per_s()),
            tool(&e.etcdctl_restore, "data dir (WAL preallocated)"),
        ],
        [
            "Tito snapshot vs etcdctl snapshot save".into(),
            format!("{:.2}×", r.snapshot_vs_etcdctl_save),
            format!(
                "MiB/s over each one's bytes; the dataset is {:.0}% of the member db",
                r.dataset_share_of_member_db * 100.0
            ),
        ],
        [
            "Tito restore vs etcdctl snapshot restore".into(),
            format!("{:.2}×", r.restore_vs_etcdctl_restore),
            "MiB/s over each one's bytes; etcdctl writes one member's files, Tito commits \
             through Raft to every member"
                .into(),
        ],
        [
            "Tito restore vs etcd bulk_load".into(),
            format!("{:.2}×", r.restore_vs_bulk_load),
            "MiB/s over the dataset's bytes".into(),
        ],
        [
            "commit throughput, capture vs raw (etcd)".into(),
            format!("{:.3}×", r.capture),
            format!(
                "raw {:.0} commits/s, capture {:.0} commits/s (medians of {}×{} paired)",
                e.capture.raw_commits_per_s,
                e.capture.capture_commits_per_s,
                e.capture.rounds,
                e.capture.per_round
            ),
        ],
    ]
}

/// `0.25 / 0.24 / 0.27 s`.
fn secs_list(secs: &[f64]) -> String {
    let each: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
    format!("{} s", each.join(" / "))
}

/// `w` quoted for a POSIX shell when it holds anything a shell would split or expand
/// (etcd URLs carry `?` and `&`).
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The serde (kebab-case) name of an option value.
fn kebab<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn cpu(secs: Option<f64>) -> String {
    secs.map(|c| format!("; {c:.2} CPU s")).unwrap_or_default()
}

fn peak(m: Option<PeakMemory>) -> String {
    m.map(|m| {
        if m.isolated {
            format!("; own process: peak RSS {:.0} MiB", m.peak_rss as f64 / MIB)
        } else {
            format!(
                "; RSS +{:.0} MiB (peak {:.0} MiB)",
                m.growth() as f64 / MIB,
                m.peak_rss as f64 / MIB
            )
        }
    })
    .unwrap_or_default()
}

fn memory_note(m: &PeakMemory, size_note: Option<&str>) -> String {
    let mut s = if m.isolated {
        format!(
            "peak RSS of a process doing only this work ({:.0} MiB at its start)",
            m.start_rss as f64 / MIB
        )
    } else {
        // In-process, the RSS at the start holds earlier phases' state (the source
        // engine's cache above all), which a process doing only this work would not.
        format!(
            "growth of RSS during the phase, in the benchmark's process; peak {:.0} MiB from {:.0} MiB at start",
            m.peak_rss as f64 / MIB,
            m.start_rss as f64 / MIB,
        )
    };
    if !m.reset {
        s.push_str("; high-water mark not resettable: includes earlier phases");
    }
    if let Some(n) = size_note {
        s.push_str("; ");
        s.push_str(n);
    }
    s
}

/// Columns padded to their widest cell.
fn aligned<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(rule.iter().map(String::as_str).collect()));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A markdown table.
fn markdown<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(N)));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Rows of the incremental phase.
fn incremental_rows(i: &crate::incremental::IncrementalFigures) -> Vec<[String; 3]> {
    vec![
        [
            "Tito full snapshot".into(),
            format!("{:.1} MiB/s", i.full.mib_per_s()),
            format!(
                "{}; {:.1} MiB uploaded",
                i.full.show(),
                i.full_bytes as f64 / MIB
            ),
        ],
        [
            format!(
                "Tito incremental snapshot after {} keys (1%) changed",
                i.churn_keys
            ),
            format!("{:.1} MiB/s", i.incremental.mib_per_s()),
            format!(
                "{}; {:.2} MiB uploaded, {} of {} chunks; {} pairs read",
                i.incremental.show(),
                i.incremental_bytes as f64 / MIB,
                i.incremental_chunks.0,
                i.incremental_chunks.1,
                i.incremental_pairs_read
            ),
        ],
        [
            "incremental vs full (bytes, speed-up)".into(),
            format!("{:.3}×, {:.1}×", i.bytes_ratio, i.speedup),
            "1% churn in one hot range of consecutive keys".into(),
        ],
        [
            format!(
                "{} daily snapshots and their log vs the original",
                crate::incremental::DAYS
            ),
            format!("{:.3}×", i.week_ratio),
            format!(
                "{:.1} MiB vs {:.1} MiB (a full backup a day and its change log)",
                i.week_bytes as f64 / MIB,
                i.week_baseline_bytes as f64 / MIB
            ),
        ],
        [
            "incremental after 1% churn in 10 runs vs full (bytes)".into(),
            format!("{:.3}×", i.scattered_bytes_ratio),
            "no target: each run touches a chunk or two".into(),
        ],
        [
            "incremental after 1% uniform churn vs full (bytes)".into(),
            format!("{:.3}×", i.uniform_bytes_ratio),
            "no target: spread churn touches most chunks".into(),
        ],
    ]
}

/// Rows of the compaction phase.
fn compaction_rows(c: &crate::compaction::CompactionFigures) -> Vec<[String; 3]> {
    let mut rows = vec![
        [
            format!("log of {} s of 1-second shipping: segments", c.seconds),
            format!("{} -> {}", c.segments_before, c.segments_after),
            format!(
                "{:.1} MiB -> {:.1} MiB stored",
                c.log_bytes_before as f64 / MIB,
                c.log_bytes_after as f64 / MIB
            ),
        ],
        [
            "tito compact (directory store)".into(),
            format!("{:.2} s", c.compact.secs),
            format!(
                "{:.0} segments read/s",
                c.compact.pairs as f64 / c.compact.secs.max(1e-9)
            ),
        ],
        [
            "restore latest before compaction (directory)".into(),
            format!("{:.2} s", c.restore_before.secs),
            format!("base snapshot + {} segments", c.segments_before),
        ],
        [
            "restore latest after compaction (directory)".into(),
            format!("{:.2} s", c.restore_after.secs),
            format!(
                "base snapshot + {} segments; best of {}",
                c.segments_after,
                crate::compaction::ROUNDS
            ),
        ],
        [
            "restore of the same state from a fresh snapshot (directory)".into(),
            format!("{:.2} s", c.restore_snapshot.secs),
            format!("best of {}", crate::compaction::ROUNDS),
        ],
        [
            "after compaction vs fresh snapshot (directory)".into(),
            format!("{:.2}×", c.ratio),
            "time; target ≤ 2×".into(),
        ],
    ];
    if let Some((a, s, r)) = &c.s3 {
        rows.push([
            "restore after compaction / from a fresh snapshot (S3)".into(),
            format!("{:.2} s / {:.2} s", a.secs, s.secs),
            format!("{r:.2}×; best of {}", crate::compaction::ROUNDS),
        ]);
    }
    rows
}
