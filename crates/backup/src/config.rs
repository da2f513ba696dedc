//! Settings of the backup service.

use std::time::Duration;

/// How the backup service ships, snapshots and leases. `Default` gives settings fit for
/// production: 1 s shipping, rounds of at most about 10 s, 16 MiB segments, snapshot chunks
/// of 2 MiB on average (512 KiB to 16 MiB), 4 uploads in flight.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    /// Most records in one log segment.
    pub segment_max_records: usize,
    /// Most uncompressed record bytes in one log segment.
    pub segment_max_bytes: usize,
    /// Average uncompressed key and value bytes of a snapshot chunk. Boundaries are
    /// content-defined ([`tito_format::ChunkBoundaries`]): a chunk holds at least a quarter
    /// of this and at most 8 times it.
    pub chunk_target_bytes: usize,
    /// Most snapshot chunk uploads in flight at once (bounds memory to about
    /// `upload_concurrency * chunk_target_bytes`, at worst 8 times that).
    pub upload_concurrency: usize,
    /// zstd level of segments and chunks.
    pub compression_level: i32,
    /// Continuous mode: time between two shipping rounds.
    pub ship_interval: Duration,
    /// Continuous mode: a shipping round stops after the first segment that ends this long
    /// after the round began, leaving the rest of a backlog to the next rounds, so that
    /// snapshots keep their schedule behind a large backlog. `None`: no limit. Every round
    /// also stops at the newest record present when it began, whatever the limit.
    pub max_round_duration: Option<Duration>,
    /// Continuous mode: take a snapshot when the newest one is older than this.
    pub snapshot_every: Option<Duration>,
    /// Continuous mode: take a snapshot once the shipped log reaches this many LSNs past the
    /// newest snapshot of the timeline (counted from the store, so it survives restarts).
    pub snapshot_every_records: Option<u64>,
    /// How long the shipper lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Wait for another shipper's lease instead of failing.
    pub wait_for_lease: bool,
    /// Continuous mode: after a round, merge small log segments of this database's timeline
    /// (bounded work per round; see [`crate::compactor`]). `None`: never compact here.
    pub compaction: Option<crate::compactor::CompactionConfig>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            segment_max_records: 100_000,
            segment_max_bytes: 16 << 20,
            // Smaller chunks share more between snapshots but compress worse (each is one
            // zstd frame): at 1 MiB a full snapshot of the bench's rows is 1.003x the
            // original design's bytes, at 2 MiB 0.978x (BENCHMARKS.md, Backup size).
            chunk_target_bytes: 2 << 20,
            upload_concurrency: 4,
            compression_level: tito_format::frame::DEFAULT_ZSTD_LEVEL,
            ship_interval: Duration::from_secs(1),
            max_round_duration: Some(Duration::from_secs(10)),
            snapshot_every: None,
            snapshot_every_records: None,
            lease_ttl: Duration::from_secs(15),
            wait_for_lease: false,
            compaction: Some(crate::compactor::CompactionConfig::default()),
        }
    }
}
