//! Command-line arguments (clap). Engines and stores are addressed by URL; both can also
//! come from the environment (`TITO_DB`, `TITO_STORE`) or a TOML file given with `--config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tito: continuous backup and point-in-time recovery for ordered key-value engines.
#[derive(Debug, Parser)]
#[command(name = "tito", version, about, long_about = None)]
pub struct Cli {
    /// Database URL: redb:///path, a bare path (redb), memory://, etcd://host:port[,host:port...][/namespace];
    /// etcd+watch://host:port[,host:port...][/prefix] (an etcd cluster Tito did not write:
    /// `backup` watches it, LSN = revision; without a prefix it is also the whole cluster
    /// with raw keys, e.g. a restore target that gives applications their keys back).
    #[arg(long, global = true, env = "TITO_DB")]
    pub db: Option<String>,

    /// Backup store URL: file:///dir, a bare directory path, s3://bucket/prefix,
    /// gs://bucket/prefix, az://container/prefix, memory://.
    #[arg(long, global = true, env = "TITO_STORE")]
    pub store: Option<String>,

    /// TOML config file with `db`, `store` and backup settings; flags and env win over it.
    #[arg(long, global = true, env = "TITO_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (status, list, verify, restore, bench).
    #[arg(long, global = true)]
    pub json: bool,

    /// More logging (-v: debug, -vv: trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ship the change log to the store (once, or continuously), taking snapshots when due;
    /// with --db etcd+watch://..., back up that etcd cluster (or prefix) by watching it.
    Backup(BackupArgs),
    /// Take a snapshot now: incremental (chunks whose pairs did not change since an earlier
    /// snapshot are not uploaded again), or with --full every chunk afresh.
    Snapshot(SnapshotArgs),
    /// Show what is restorable: snapshots, log coverage, gaps, sizes, and the live lag.
    Status,
    /// Same as status.
    List,
    /// Restore a backup into a target database.
    Restore(RestoreArgs),
    /// Import a backup root of the original backup module into a new database.
    ImportLegacy(ImportLegacyArgs),
    /// Check every object of the backup store.
    Verify(VerifyArgs),
    /// Delete what the retention policy no longer needs.
    Prune(PruneArgs),
    /// Merge small log segments into larger ones (a minute, an hour, a day of records).
    Compact(CompactArgs),
    /// Label the current log position with a name you can restore to.
    RestorePoint(RestorePointArgs),
    /// Read and write keys of the database.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Write the backed-up keyspace (user keys and queue state) as JSON lines, sorted by key.
    Dump,
    /// Read the dump format (JSON lines) from a file or stdin into the database.
    Load(LoadArgs),
    /// Run the end-to-end demo on the embedded engine.
    Demo(DemoArgs),
    /// Measure Tito side by side with the original design and this machine's limits.
    Bench(Box<BenchArgs>),
    /// Create and rotate encryption keys (keyring files).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Re-encrypt every object of the store not sealed with the keyring's newest key. Run it
    /// with the store's backup processes stopped (they would keep sealing with the key they
    /// loaded, and a prune or compaction beside it may see a deleted object written back).
    Rekey,
}

/// `tito key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new keyring file holding one random key (mode 0600; never overwrites).
    New {
        /// The file to create.
        path: std::path::PathBuf,
    },
    /// Add a new random key to a keyring file; it encrypts new objects from now on, the
    /// older keys still read what they encrypted (run `tito rekey` to move those over).
    Add {
        /// The keyring file.
        path: std::path::PathBuf,
    },
    /// List the ids of a keyring's keys, oldest first (never the keys).
    List {
        /// The keyring file.
        path: std::path::PathBuf,
    },
}

/// `tito backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Keep shipping every interval until interrupted.
    #[arg(long)]
    pub continuous: bool,
    /// Shipping interval in continuous mode (e.g. 1s, 500ms; default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// Take a snapshot every this long (e.g. 6h); none by default.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub snapshot_every: Option<std::time::Duration>,
    /// Also take a snapshot after this many records shipped since the last one.
    #[arg(long)]
    pub snapshot_every_records: Option<u64>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9187) in continuous mode.
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Wait for another shipper's lease instead of failing.
    #[arg(long)]
    pub wait_for_lease: bool,
    /// The backup store URL (the same as the global --store, which it overrides).
    #[arg(long, value_name = "STORE")]
    pub to: Option<String>,
}

/// `tito load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The dump file, or `-` for standard input.
    pub input: String,
    /// Merge into a non-empty database: loaded keys overwrite, other keys stay.
    #[arg(long)]
    pub force: bool,
    /// Commit while reading instead of checking the whole input first (standard input is
    /// otherwise copied to a temporary file); a bad line then leaves the earlier batches
    /// committed and the error says through which line.
    #[arg(long)]
    pub stream: bool,
    /// Most pairs per transaction (default 100000; the engine's limits may lower it).
    #[arg(long)]
    pub batch_pairs: Option<usize>,
}

/// `tito restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// URL of the database to restore into (must be empty unless --force).
    #[arg(long)]
    pub target: String,
    /// latest, an RFC 3339 time, epoch milliseconds, lsn:N (rev:N: the same, for a watched etcd cluster) or label:NAME.
    #[arg(long, default_value = "latest")]
    pub to: String,
    /// Restore on this timeline (default: the one live timeline that the target can mean;
    /// where several could be meant, restore refuses and lists them).
    #[arg(long)]
    pub timeline: Option<u64>,
    /// Re-partition pending queue events into this many partitions.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Replace the target's existing data (still verifies the backup first).
    #[arg(long)]
    pub force: bool,
    /// Make the restored database continue the backed-up database (same id, a new
    /// timeline in this store that replaces the one restored from): for a rebuilt server
    /// replacing a dead one. Without it a restore into another database makes a new
    /// database. A restore in place (--force over the backed-up database) always continues.
    #[arg(long)]
    pub continue_lineage: bool,
    /// Print the plan and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `tito snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Upload every chunk afresh into the snapshot's own folder: a snapshot that shares no
    /// object with earlier ones (an independent base).
    #[arg(long)]
    pub full: bool,
}

/// `tito verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also decode every snapshot and compare its pair count and digest with its
    /// manifest, and restore the latest state into a scratch redb file under `TMPDIR`
    /// (needs disk room for the database; memory stays bounded).
    #[arg(long)]
    pub deep: bool,
}

/// `tito prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Keep everything needed to restore any point within this window (e.g. 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long)]
    pub keep_daily: Option<usize>,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long)]
    pub keep_weekly: Option<usize>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long)]
    pub keep_monthly: Option<usize>,
    /// Print what would be deleted and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `tito compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Level windows, smallest first, each a multiple of the one before (default 1m,1h,1d).
    #[arg(long, value_delimiter = ',', value_parser = crate::commands::compact::parse_window)]
    pub levels: Vec<std::time::Duration>,
    /// Print the merges it would do and write or delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `tito restore-point`.
#[derive(Debug, Args)]
pub struct RestorePointArgs {
    /// The label (letters, digits, '-', '_', '.').
    pub name: String,
}

/// `tito kv`.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print the value of KEY.
    Get {
        /// The key (UTF-8).
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value (UTF-8).
        value: String,
    },
    /// Delete KEY.
    Del {
        /// The key (UTF-8).
        key: String,
    },
    /// List keys and values in key order.
    Scan {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `tito demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work in this directory instead of a temporary one (kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `tito bench`: the engine and store come from the global `--db` and `--store` (default:
/// a redb file and a directory in a temp dir); every file and object it creates is removed.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sizes, phases and workloads.
    #[command(flatten)]
    pub opts: tito_bench::BenchOptions,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the BENCHMARKS.md section (machine, command, figures, targets) to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Internal: run one phase described by this JSON spec in this process and print what
    /// it measured (the benchmark starts itself this way to measure each phase's memory).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

/// `tito import-legacy`.
#[derive(Debug, Args)]
pub struct ImportLegacyArgs {
    /// The original's backup root (a store URL: the directory or prefix holding
    /// LATEST_STATE_FULL, state/ and events/).
    #[arg(long)]
    pub from: String,
    /// URL of the database to import into (must be new or empty).
    #[arg(long)]
    pub target: String,
    /// latest, an RFC 3339 time or epoch milliseconds (the old format resolves seconds).
    #[arg(long, default_value = "latest")]
    pub to: String,
    /// Archived events: skip them (whether each was processed is unknown) or enqueue them all.
    #[arg(long, value_enum, default_value = "skip")]
    pub events: EventsArg,
    /// Queue partitions to enqueue events into (with --events enqueue).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Plan and read every chunk needed; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `import-legacy` does with archived events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsArg {
    /// Leave them out.
    Skip,
    /// Enqueue every one (stable partition hash).
    Enqueue,
}
