//! `tito demo`: the whole story on the embedded engine, with proof.
//!
//! In a temporary directory (or `--dir`): a redb database and a `file://` store. Writers
//! commit user data with queue traffic (publish, pull, ack) while continuous backup ships
//! every 200 ms in a background task; a snapshot is taken mid-workload; the expected state
//! is recorded; a "bad write" deletes a range of keys; once it is shipped, the database is
//! restored by *time* to just before the bad write into a new redb file, and the demo
//! proves the restored keyspace equals the recorded one (full dumps compared) and that
//! the pending queue events survived. Any failed check exits with [`CHECK_FAILED`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tito_backup::{BackupConfig, BackupService};
use tito_capture::{Db, keys};
use tito_catalog::Target;
use tito_engine::{Engine, KeyRange, KeyValue};
use tito_queue::{Event, QueueError};
use tito_restore::{RestoreOptions, verify_repository};
use tokio::sync::watch;

use crate::args::DemoArgs;
use crate::commands::dump::dump_string;
use crate::exit::{CHECK_FAILED, CliError, REFUSED, Result};
use crate::fmt::{self, now_ms};
use crate::progress::Reporter;

/// Queue partitions of the demo.
const PARTITIONS: u32 = 4;
/// Concurrent writers.
const WRITERS: u32 = 4;
/// Transactions per writer and per workload phase.
const TXNS_PER_PHASE: u32 = 40;

/// Prints numbered steps with the time since the start.
struct Steps {
    started: Instant,
    n: u32,
}

impl Steps {
    fn step(&mut self, what: &str) -> Result<()> {
        self.n += 1;
        crate::outln!(
            "[{:>7}] step {}: {what}",
            fmt::duration(self.started.elapsed()),
            self.n
        )
    }

    fn note(&self, what: &str) -> Result<()> {
        crate::outln!("          {what}")
    }
}

/// Where the demo's files live.
pub struct Paths {
    /// The live database.
    pub db: PathBuf,
    /// The backup store directory.
    pub store: PathBuf,
    /// The restored database.
    pub restored: PathBuf,
}

impl Paths {
    /// The files inside `dir`.
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            db: dir.join("live.redb"),
            store: dir.join("backups"),
            restored: dir.join("restored.redb"),
        }
    }
}

/// `tito demo`.
pub async fn run(args: &DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| {
                CliError::new(REFUSED, format!("cannot create --dir {}: {e}", d.display()))
            })?;
            std::fs::canonicalize(d).map_err(|e| {
                CliError::new(REFUSED, format!("cannot use --dir {}: {e}", d.display()))
            })?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("tito-demo-")
                .tempdir()
                .map_err(|e| {
                    CliError::new(
                        crate::exit::UNAVAILABLE,
                        format!("cannot create a temporary directory: {e}"),
                    )
                })?;
            temp.path().to_path_buf()
        }
    };
    let paths = Paths::in_dir(&dir);
    for p in [&paths.db, &paths.store, &paths.restored] {
        if p.exists() {
            return Err(CliError::new(
                REFUSED,
                format!(
                    "{} already exists: run the demo in an empty --dir (it never overwrites files)",
                    p.display()
                ),
            ));
        }
    }
    let result = demo(&paths).await;
    if args.dir.is_none() {
        crate::outln!(
            "(the files were in a temporary directory, removed now; run `tito demo --dir DIR` to keep them)"
        )?;
    }
    result
}

/// The demo in `paths`; fails with [`CHECK_FAILED`] if a check does not pass.
pub async fn demo(paths: &Paths) -> Result<()> {
    let mut steps = Steps {
        started: Instant::now(),
        n: 0,
    };
    let db_path = utf8(&paths.db)?;
    let store_url = format!("file://{}", utf8(&paths.store)?);
    let restored_path = utf8(&paths.restored)?;

    steps.step("open the live database and start continuous backup (every 200 ms)")?;
    steps.note(&format!("database: redb://{db_path}"))?;
    steps.note(&format!("backups:  {store_url}"))?;
    let engine = tito_engine::open(&db_path).await?;
    let db = Db::open(engine.clone()).await?;
    let store = tito_store::open(&store_url).await?;
    let config = BackupConfig {
        ship_interval: Duration::from_millis(200),
        chunk_target_bytes: 64 << 10,
        ..BackupConfig::default()
    };
    let service = Arc::new(BackupService::new(db.clone(), store, config).await?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = {
        let service = service.clone();
        tokio::spawn(async move { service.run_continuous(stop_rx).await })
    };

    steps.step(&format!(
        "workload: {WRITERS} writers x {TXNS_PER_PHASE} transactions (users, binary keys, queue events) + a consumer acking events"
    ))?;
    let stats = workload(&db, 0).await?;
    steps.note(&format!(
        "{} transactions committed, {} events acked",
        stats.0, stats.1
    ))?;

    steps.step("full snapshot while the writers keep going")?;
    let (snap, more) = tokio::join!(service.snapshot(), workload(&db, 1));
    let snap = snap?;
    let more = more?;
    steps.note(&crate::commands::snapshot::summary(&snap))?;
    steps.note(&format!(
        "{} more transactions committed meanwhile, {} events acked",
        more.0, more.1
    ))?;

    steps.step("record the expected state (full dump of the backed-up keyspace)")?;
    let expected = dump_string(engine.as_ref()).await?;
    let expected_events = queue_pairs(engine.as_ref()).await?;
    steps.note(&format!(
        "{} pairs, of which {} pending queue events",
        expected.lines().count(),
        expected_events.len()
    ))?;

    // The target time lies strictly between the last good commit and the bad write.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let target_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;

    steps.step("the bad write: delete every key of writer 1 (user:1:...)")?;
    let bad_range = KeyRange::new(b"user:1:".to_vec(), b"user:1;".to_vec());
    let doomed = count_range(engine.as_ref(), &bad_range).await?;
    let (_, bad_lsn) = db
        .transaction_lsn(|txn| {
            let r = bad_range.clone();
            async move { txn.delete_range(&r) }
        })
        .await?;
    let bad_lsn = bad_lsn.ok_or_else(|| check_failed("the bad write produced no log record"))?;
    steps.note(&format!("deleted {doomed} keys at LSN {bad_lsn}"))?;

    steps.step("wait until the bad write is shipped, then stop the backup")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.stats().snapshot().shipped_lsn < bad_lsn {
        if Instant::now() > deadline {
            return Err(check_failed(format!(
                "LSN {bad_lsn} was not shipped within 20 s (shipped: {})",
                service.stats().snapshot().shipped_lsn
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    shipper
        .await
        .map_err(|e| check_failed(format!("backup task failed: {e}")))??;
    let s = service.stats().snapshot();
    steps.note(&format!(
        "shipped {} records in {} segments ({} uploaded), {} failed rounds",
        s.records_shipped,
        s.segments,
        fmt::bytes(s.bytes_uploaded),
        s.errors
    ))?;

    steps.step(&format!(
        "restore by time to {} (just before the bad write) into a new database",
        fmt::time_ms(target_ms)
    ))?;
    steps.note(&format!("restored database: redb://{restored_path}"))?;
    let restored = tito_engine::open(&restored_path).await?;
    let progress = Reporter::new();
    let result = tito_restore::restore(
        service.repository(),
        restored.clone(),
        &RestoreOptions::new(Target::Time(target_ms)),
        &progress,
    )
    .await;
    progress.finish();
    let result = result?;
    steps.note(&crate::commands::restore::summary(
        &result,
        &format!("redb://{restored_path}"),
    ))?;

    steps.step("prove it: compare the restored database with the expected state")?;
    let mut failures = Vec::new();
    if result.restored_lsn + 1 != bad_lsn {
        failures.push(format!(
            "restored up to LSN {}, expected {} (the record before the bad write)",
            result.restored_lsn,
            bad_lsn - 1
        ));
    }
    let actual = dump_string(restored.as_ref()).await?;
    if actual == expected {
        steps.note(&format!(
            "OK  the full dumps are identical ({} pairs)",
            expected.lines().count()
        ))?;
    } else {
        failures.push(first_difference(&expected, &actual));
    }
    let restored_events = queue_pairs(restored.as_ref()).await?;
    if restored_events == expected_events && !expected_events.is_empty() {
        steps.note(&format!(
            "OK  all {} pending queue events survived",
            expected_events.len()
        ))?;
    } else {
        failures.push(format!(
            "pending queue events differ: {} expected, {} restored",
            expected_events.len(),
            restored_events.len()
        ));
    }
    let pullable = pull_all(&Db::new(restored.clone())).await?;
    if pullable == expected_events.len() {
        steps.note(&format!(
            "OK  consumers can pull all {pullable} events from the restored queue"
        ))?;
    } else {
        failures.push(format!(
            "{pullable} events pullable, {} expected",
            expected_events.len()
        ));
    }
    let live_doomed = count_range(engine.as_ref(), &bad_range).await?;
    let restored_doomed = count_range(restored.as_ref(), &bad_range).await?;
    if live_doomed == 0 && restored_doomed == doomed {
        steps.note(&format!(
            "OK  the {doomed} keys of the bad write are back (the live database has {live_doomed})"
        ))?;
    } else {
        failures.push(format!(
            "range of the bad write: live {live_doomed}, restored {restored_doomed}, expected {doomed}"
        ));
    }

    steps.step("verify every object of the backup")?;
    let report = verify_repository(
        service.repository(),
        false,
        &crate::progress::Reporter::new(),
    )
    .await?;
    if report.ok() {
        steps.note(&format!(
            "OK  {} objects checked, {} snapshots and {} segments intact",
            report.objects_checked, report.snapshots_ok, report.segments_ok
        ))?;
    } else {
        failures.extend(
            report
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.problem)),
        );
    }

    restored.close().await?;
    engine.close().await?;
    crate::outln!()?;
    crate::outln!("files: live database {db_path}")?;
    crate::outln!("       backups       {}", utf8(&paths.store)?)?;
    crate::outln!("       restored      {restored_path}")?;
    if failures.is_empty() {
        crate::outln!(
            "demo passed in {}: point-in-time restore by time reproduced the exact state before the bad write",
            fmt::duration(steps.started.elapsed())
        )?;
        Ok(())
    } else {
        for f in &failures {
            crate::outln!("FAILED: {f}")?;
        }
        Err(check_failed(format!(
            "{} checks failed, first: {}",
            failures.len(),
            failures[0]
        )))
    }
}

fn check_failed(msg: impl Into<String>) -> CliError {
    CliError::new(CHECK_FAILED, format!("demo check failed: {}", msg.into()))
}

fn utf8(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::usage(format!("path {} is not UTF-8", p.display())))
}

/// One workload phase: every writer commits [`TXNS_PER_PHASE`] transactions while a
/// consumer acks about half of the due events. Returns (transactions, events acked).
async fn workload(db: &Db, phase: u32) -> Result<(u64, u64)> {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..TXNS_PER_PHASE {
                let n = phase * TXNS_PER_PHASE + i;
                db.transaction(|txn| async move {
                    txn.put(
                        format!("user:{w}:{n:04}").into_bytes(),
                        format!("{{\"name\":\"user {w}-{n}\",\"visits\":{}}}", n * 7).into_bytes(),
                    )?;
                    txn.put(
                        format!("user:{w}:{:04}", n / 2).into_bytes(),
                        b"updated".to_vec(),
                    )?;
                    // Binary keys and values are backed up like any other.
                    txn.put(
                        vec![b'b', b'i', b'n', 0, w as u8, (n % 256) as u8, 0xff],
                        vec![0xfe, w as u8],
                    )?;
                    if n % 5 == 4 {
                        txn.delete(format!("user:{w}:{:04}", n - 3).into_bytes())?;
                    }
                    let now = now_ms();
                    tito_queue::publish(
                        &txn,
                        PARTITIONS,
                        Event::new(
                            format!("evt-{w}-{n}"),
                            format!("user:{w}:{n:04}"),
                            format!("welcome user {w}-{n}"),
                            now,
                            now,
                        ),
                    )?;
                    Ok::<_, QueueError>(())
                })
                .await?;
            }
            Ok::<_, QueueError>(TXNS_PER_PHASE as u64)
        }));
    }
    let consumer = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut acked = 0u64;
            for round in 0..10u32 {
                let partition = round % PARTITIONS;
                let events = tito_queue::pull(&db, partition, now_ms(), 8).await?;
                // Ack every other event so some stay pending.
                for e in events.into_iter().step_by(2) {
                    let done = db
                        .transaction(|txn| {
                            let e = e.clone();
                            async move { tito_queue::ack(&txn, &e).await }
                        })
                        .await?;
                    acked += u64::from(done);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, QueueError>(acked)
        })
    };
    let mut txns = 0;
    for t in tasks {
        txns += t
            .await
            .map_err(|e| check_failed(format!("writer task failed: {e}")))??;
    }
    let acked = consumer
        .await
        .map_err(|e| check_failed(format!("consumer task failed: {e}")))??;
    Ok((txns, acked))
}

/// Every queue pair of `engine`, in key order.
async fn queue_pairs(engine: &dyn Engine) -> Result<Vec<KeyValue>> {
    let view = engine.read_view().await?;
    Ok(view.scan(&keys::queue_range(), usize::MAX).await?)
}

/// Keys of `engine` in `range`.
async fn count_range(engine: &dyn Engine, range: &KeyRange) -> Result<u64> {
    let view = engine.read_view().await?;
    Ok(view.scan(range, usize::MAX).await?.len() as u64)
}

/// How many events consumers can pull from every partition right now.
async fn pull_all(db: &Db) -> Result<usize> {
    let mut n = 0;
    for p in 0..PARTITIONS {
        n += tito_queue::pull(db, p, u64::MAX, usize::MAX).await?.len();
    }
    Ok(n)
}

/// The first line where two dumps differ, for the failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for (i, (x, y)) in e.iter().zip(&a).enumerate() {
        if x != y {
            return format!("dumps differ at line {}: expected {x}, restored {y}", i + 1);
        }
    }
    format!(
        "dumps differ in length: expected {} pairs, restored {}",
        e.len(),
        a.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_line() {
        assert_eq!(
            first_difference("a\nb\n", "a\nc\n"),
            "dumps differ at line 2: expected b, restored c"
        );
        assert!(first_difference("a\n", "a\nb\n").contains("1 pairs, restored 2"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_passes_in_a_fresh_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        demo(&Paths::in_dir(dir.path())).await.expect("demo passes");
        assert!(dir.path().join("restored.redb").exists());
    }
}
