//! What to measure and at what size: a `clap::Args` the CLI embeds with
//! `#[command(flatten)]` under `tito bench`.

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::child::ChildCommand;
use crate::dataset::ValueKind;

/// One measured part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The original design's full backup and restore, re-implemented faithfully.
    Baseline,
    /// Tito's snapshot and restore of the same data (with peak memory).
    Snapshot,
    /// Restoring a repository whose snapshot is empty and whose log holds N records.
    Replay,
    /// Shipping the same number of changes from a small and from a large database.
    Ship,
    /// Continuous shipping lag while a writer sustains a transaction rate.
    Rpo,
    /// `zstd -1`, raw disk write/read and the engine's bulk load on the same bytes.
    Limits,
    /// Commit throughput with change capture vs raw engine transactions.
    Capture,
    /// `tito load` of a dump file next to the engine's bulk load of the same pairs.
    Load,
    /// On an etcd cluster (`--db etcd://...`): capture overhead, Tito's snapshot and
    /// restore next to `etcdctl snapshot save` / `snapshot restore` and the engine's bulk
    /// load, on a dataset of `--etcd-keys` keys. Runs only when selected.
    Etcd,
    /// Restore of one backup from S3 (`--s3-store`) next to its restore from a local
    /// directory. Runs only when selected (it needs an S3 server).
    RestoreS3,
    /// Restore after a simulated day of 1-second shipping, compacted, next to a restore of
    /// the same state from a snapshot (`--compaction-seconds`; with `--s3-store`, from S3
    /// too). Runs only when selected.
    Compaction,
    /// Snapshot and restore with encryption at rest next to the same without. Runs only
    /// when selected.
    Encryption,
    /// A full snapshot, 1% of the keys changed, an incremental snapshot (bytes and time),
    /// and a week of daily snapshots at 1% churn next to what the original design stores.
    /// Runs only when selected.
    Incremental,
    /// On an etcd cluster (`--db etcd://...`): RPO of a backup that watches the cluster
    /// (`etcd+watch://`) while plain etcd clients put at `--watch-rpo-rate` for
    /// `--rpo-secs`, shipping every `--rpo-interval-ms`. Runs only when selected; skipped,
    /// with a note in the report, without a cluster.
    EtcdWatchRpo,
    /// Other databases' backup tools on the same rows (SQLite + Litestream, PostgreSQL +
    /// pgBackRest), next to Tito's snapshot and restore on redb, and with Litestream write
    /// throughput and RPO lag (`--rpo-rate`, `--rpo-secs`) next to Tito's with continuous
    /// backup; a peer whose tools are missing is skipped with a message. Runs only when
    /// selected.
    Peers,
}

impl Phase {
    /// Every phase, in the order a run executes them.
    pub const ALL: [Phase; 15] = [
        Phase::Limits,
        Phase::Baseline,
        Phase::Snapshot,
        Phase::Replay,
        Phase::Ship,
        Phase::Rpo,
        Phase::Capture,
        Phase::Load,
        Phase::RestoreS3,
        Phase::Compaction,
        Phase::Encryption,
        Phase::Incremental,
        Phase::Peers,
        Phase::Etcd,
        Phase::EtcdWatchRpo,
    ];
}

/// Options of a benchmark run. Defaults keep a full run under about two minutes on a
/// small machine; raise `--keys` (and `--ship-large-keys`) for figures at scale.
#[derive(Clone, Debug, Args, Serialize)]
pub struct BenchOptions {
    /// Keys in the generated dataset (snapshot, restore, baseline, limits).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Size in bytes of each value: a JSON object, so the original design can carry it.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// What the values contain (decides every size ratio): order rows, uniform words, or
    /// random base64.
    #[arg(long, value_enum, default_value_t = ValueKind::Orders)]
    pub values: ValueKind,
    /// Page cache of every redb engine the run opens, in MiB (default: the engine's own
    /// default, `tito_engine::redb::DEFAULT_CACHE_BYTES`).
    #[arg(long)]
    pub redb_cache_mb: Option<usize>,
    /// zstd level of Tito's snapshot chunks (default: `BackupConfig`'s default level).
    #[arg(long)]
    pub snapshot_level: Option<i32>,
    /// Engine URL of the source database (`memory://`, `redb:///abs/file` or a path; it
    /// must not exist yet). Fresh engines of the same kind are created next to it and
    /// removed at the end. Default: a redb file in a temp dir. With `etcd://...` only the
    /// etcd phase runs, in fresh namespaces under the URL's namespace, deleted at the end.
    ///
    /// Not a flag of its own: the `tito` CLI already has global `--db` and `--store`
    /// flags, and clap refuses two arguments of one name, so the caller sets this field.
    #[arg(skip)]
    pub engine: Option<String>,
    /// Store URL under which every phase writes its own repository (`file:///dir`, a
    /// directory, `s3://bucket/prefix?...` or `memory://`); objects written are deleted
    /// at the end. Default: a temp dir. Set by the caller, like `engine`.
    #[arg(skip)]
    pub store: Option<String>,
    /// Seed of the generated dataset and workloads.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Log records for the replay measurement.
    #[arg(long, default_value_t = 100_000)]
    pub replay_records: u64,
    /// Changes shipped in the shipping-cost measurement.
    #[arg(long, default_value_t = 10_000)]
    pub ship_changes: u64,
    /// Keys of the small database in the shipping-cost measurement.
    #[arg(long, default_value_t = 10_000)]
    pub ship_small_keys: u64,
    /// Keys of the large database in the shipping-cost measurement (issue 4 asks 1M).
    #[arg(long, default_value_t = 200_000)]
    pub ship_large_keys: u64,
    /// Transactions per second the writer sustains during the RPO measurement.
    #[arg(long, default_value_t = 1_000)]
    pub rpo_rate: u64,
    /// Seconds the RPO measurement lasts.
    #[arg(long, default_value_t = 10)]
    pub rpo_secs: u64,
    /// Shipping interval of continuous mode during the RPO measurement (ms).
    #[arg(long, default_value_t = 500)]
    pub rpo_interval_ms: u64,
    /// Puts per second the plain etcd clients sustain in the etcd-watch-rpo phase.
    #[arg(long, default_value_t = 500)]
    pub watch_rpo_rate: u64,
    /// Paired rounds of the capture-overhead measurement.
    #[arg(long, default_value_t = 40)]
    pub capture_rounds: usize,
    /// Commits per variant in each capture round.
    #[arg(long, default_value_t = 20)]
    pub capture_per_round: usize,
    /// Keys in the dataset of the etcd phase (`--keys` sizes the other phases): every
    /// pair goes through Raft, so the default is modest.
    #[arg(long, default_value_t = 50_000)]
    pub etcd_keys: u64,
    /// Run the etcd phase on a private cluster it starts itself (3 members of the
    /// `etcd` binary on free 127.0.0.1 ports, data in a temp dir, stopped at the end, error
    /// or not) instead of on `--db`'s endpoints; the URL's namespace and request limits
    /// still apply. It is compacted and defragmented before the side-by-side
    /// measurement, so `etcdctl snapshot save` streams a database of this dataset only:
    /// the reproducible comparison.
    #[arg(long)]
    pub etcd_private: bool,
    /// Compact `--db`'s etcd cluster to its current revision and defragment every member
    /// before the etcd phase's side-by-side measurement, as an operator does before a
    /// backup. Off by default: compaction removes history other clients of a shared
    /// cluster (watchers, pinned reads) may need. Implied by `--etcd-private`.
    #[arg(long)]
    pub etcd_compact: bool,
    /// S3 store of the restore-s3 phase (`s3://bucket/prefix`; endpoint and credentials
    /// from the `AWS_*` environment). Objects written are deleted at the end.
    #[arg(long)]
    pub s3_store: Option<String>,
    /// Log segments (of 5 one-put transactions each) after the snapshot in the
    /// restore-s3 phase. Many small segments measure the S3 server's request rate more
    /// than the restore (log compaction is what shrinks their number).
    #[arg(long, default_value_t = 20)]
    pub restore_s3_segments: u64,
    /// Seconds of 1-second shipping the compaction phase simulates (one segment of one
    /// transaction each; 86,400 = a day).
    #[arg(long, default_value_t = 86_400)]
    pub compaction_seconds: u64,
    /// Run only these phases (comma-separated); default all but `compaction`, `encryption`,
    /// `incremental`, `restore-s3` (which needs `--s3-store`), and `etcd` and
    /// `etcd-watch-rpo`, which need
    /// `--db etcd://host:port[,host:port...][/namespace][?max_request_bytes=N&max_txn_ops=N]`
    /// and are then the only phases allowed (`etcd-watch-rpo` without it is skipped).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// How to start this program again to run the snapshot and the restore each in a
    /// process of its own, so each peak memory figure is that work's alone. Set by the
    /// caller (the `tito` CLI); without it both run in this process.
    #[arg(skip)]
    #[serde(skip)]
    pub child: Option<ChildCommand>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            keys: 100_000,
            value_size: 256,
            values: ValueKind::Orders,
            redb_cache_mb: None,
            snapshot_level: None,
            engine: None,
            store: None,
            seed: 42,
            replay_records: 100_000,
            ship_changes: 10_000,
            ship_small_keys: 10_000,
            ship_large_keys: 200_000,
            rpo_rate: 1_000,
            rpo_secs: 10,
            rpo_interval_ms: 500,
            watch_rpo_rate: 500,
            capture_rounds: 40,
            capture_per_round: 20,
            etcd_keys: 50_000,
            etcd_private: false,
            etcd_compact: false,
            s3_store: None,
            restore_s3_segments: 20,
            compaction_seconds: 86_400,
            phases: Vec::new(),
            child: None,
        }
    }
}

impl BenchOptions {
    /// Tiny sizes for tests: every phase runs in well under a second of work.
    pub fn tiny() -> Self {
        BenchOptions {
            keys: 300,
            value_size: 256,
            replay_records: 200,
            ship_changes: 50,
            ship_small_keys: 50,
            ship_large_keys: 400,
            rpo_rate: 200,
            rpo_secs: 1,
            rpo_interval_ms: 100,
            watch_rpo_rate: 100,
            capture_rounds: 3,
            capture_per_round: 3,
            etcd_keys: 300,
            restore_s3_segments: 5,
            compaction_seconds: 150,
            ..BenchOptions::default()
        }
    }

    /// Whether `phase` is selected: no `--phases` selects every phase but `etcd` and
    /// `etcd-watch-rpo`, which need a cluster, `restore-s3`, which needs an S3 server,
    /// `compaction`, `encryption` and `incremental`.
    pub fn runs(&self, phase: Phase) -> bool {
        if self.phases.is_empty() {
            !matches!(
                phase,
                Phase::Etcd
                    | Phase::EtcdWatchRpo
                    | Phase::RestoreS3
                    | Phase::Compaction
                    | Phase::Encryption
                    | Phase::Incremental
                    | Phase::Peers
            )
        } else {
            self.phases.contains(&phase)
        }
    }
}
