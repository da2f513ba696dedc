//! Recovery point objective: continuous mode ships while writers sustain a transaction
//! rate; a sampler records how much committed history is not in the store yet.
//!
//! Lag at a sample = commit time of the newest committed transaction − commit time of the
//! newest shipped record (0 when everything committed is shipped): the window of commits a
//! crash at that instant would lose.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tito_backup::{BackupConfig, BackupService, now_ms};
use tito_capture::Db;
use tito_engine::Engine;
use tito_store::Store;

use crate::dataset::{Dataset, Rng};
use crate::error::{BenchError, Ctx, Result};

const PHASE: &str = "rpo";
/// Concurrent writer tasks sharing the rate (one writer cannot overlap fsyncs).
const WRITERS: u64 = 4;
/// Time between two lag samples (also the `etcd-watch-rpo` phase's polls).
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Keys the writers update.
pub(crate) const RPO_KEYS: u64 = 10_000;

/// Lag figures of one RPO run.
#[derive(Clone, Debug, Serialize)]
pub struct Rpo {
    /// Transactions per second asked for.
    pub target_rate: u64,
    /// Transactions per second committed.
    pub achieved_rate: f64,
    /// Transactions committed.
    pub commits: u64,
    /// Seconds the writers ran.
    pub duration_secs: u64,
    /// Continuous mode's shipping interval (ms).
    pub interval_ms: u64,
    /// Segments shipped while the writers ran (small segments mean many store objects).
    pub segments: u64,
    /// Lag samples taken.
    pub samples: usize,
    /// Median lag (ms).
    pub p50_ms: u64,
    /// 99th percentile lag (ms).
    pub p99_ms: u64,
    /// Largest lag seen (ms).
    pub max_ms: u64,
}

/// Newest committed LSN and its commit time (ms), shared by the writers.
type Newest = Arc<Mutex<(u64, u64)>>;

/// Run continuous mode on `engine` into `store` while writers commit at `rate` for `secs`.
pub async fn measure(
    dataset: &Dataset,
    engine: Arc<dyn Engine>,
    store: Arc<dyn Store>,
    rate: u64,
    secs: u64,
    interval_ms: u64,
) -> Result<Rpo> {
    let small = Dataset {
        keys: dataset.keys.min(RPO_KEYS),
        ..*dataset
    };
    small.load(engine.as_ref(), 100_000).await?;
    let db = Db::open(engine).await.ctx(PHASE)?;
    let continuous = Continuous::start(db.clone(), store, interval_ms, PHASE).await?;
    let service = continuous.service.clone();

    let newest: Newest = Arc::new(Mutex::new((0, 0)));
    let segments_before = service.stats().snapshot().segments;
    let start_ms = now_ms();
    let started = Instant::now();
    let duration = Duration::from_secs(secs.max(1));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        writers.spawn(writer(
            db.clone(),
            small,
            w,
            rate.max(1),
            started,
            duration,
            newest.clone(),
        ));
    }
    let mut lags = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let (lsn, time) = *newest.lock().unwrap_or_else(|e| e.into_inner());
        let stats = service.stats().snapshot();
        let lag = if lsn > stats.shipped_lsn {
            time.saturating_sub(stats.shipped_time_ms.max(start_ms))
        } else {
            0
        };
        lags.push(lag);
    }
    let mut commits = 0;
    let mut failure = None;
    while let Some(joined) = writers.join_next().await {
        match joined {
            Ok(Ok(n)) => commits += n,
            Ok(Err(e)) => failure = Some(e),
            Err(e) => {
                failure = Some(BenchError::Task {
                    phase: PHASE,
                    detail: e.to_string(),
                })
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let segments = service.stats().snapshot().segments - segments_before;
    let shipped = continuous.stop(PHASE).await;
    if let Some(e) = failure {
        return Err(e);
    }
    shipped?;
    lags.sort_unstable();
    Ok(Rpo {
        target_rate: rate,
        achieved_rate: commits as f64 / elapsed.max(1e-9),
        commits,
        duration_secs: secs.max(1),
        interval_ms,
        segments,
        samples: lags.len(),
        p50_ms: percentile(&lags, 50.0),
        p99_ms: percentile(&lags, 99.0),
        max_ms: lags.last().copied().unwrap_or(0),
    })
}

/// Continuous mode running in a task of its own, past its first round (the repository's
/// first snapshot), so what follows measures steady state. Shared by this phase and the
/// peers phase's write throughput and lag rows.
pub(crate) struct Continuous {
    /// The service shipping (its [`BackupService::stats`] say how far it got).
    pub(crate) service: Arc<BackupService>,
    stop: tokio::sync::watch::Sender<bool>,
    shipper: tokio::task::JoinHandle<std::result::Result<(), tito_backup::BackupError>>,
}

impl Continuous {
    /// Start continuous mode on `db` into `store`, shipping every `interval_ms`, and wait
    /// (at most two minutes) for its first round to finish.
    pub(crate) async fn start(
        db: Db,
        store: Arc<dyn Store>,
        interval_ms: u64,
        phase: &'static str,
    ) -> Result<Self> {
        let config = BackupConfig {
            ship_interval: Duration::from_millis(interval_ms.max(1)),
            ..BackupConfig::default()
        };
        let service = Arc::new(BackupService::new(db, store, config).await.ctx(phase)?);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let shipper = {
            let service = service.clone();
            tokio::spawn(async move { service.run_continuous(stop_rx).await })
        };
        let wait_from = Instant::now();
        while service.stats().snapshot().last_round_ms == 0 {
            if shipper.is_finished() || wait_from.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Continuous {
            service,
            stop,
            shipper,
        })
    }

    /// Stop shipping and wait for the shipper: its error, if it failed.
    pub(crate) async fn stop(self, phase: &'static str) -> Result<()> {
        let _ = self.stop.send(true);
        self.shipper
            .await
            .map_err(|e| BenchError::Task {
                phase,
                detail: e.to_string(),
            })?
            .ctx(phase)
    }
}

/// Nearest-rank percentile of sorted `v` (0 for none).
pub(crate) fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Writer `w` of [`WRITERS`]: commits its share of `rate` on a fixed schedule (so a slow
/// commit is followed by catch-up, not a lower rate), one put per transaction.
async fn writer(
    db: Db,
    dataset: Dataset,
    w: u64,
    rate: u64,
    started: Instant,
    duration: Duration,
    newest: Newest,
) -> Result<u64> {
    let mut rng = Rng::new(dataset.seed ^ 0x7270_6f00 ^ w);
    let mut n = 0u64;
    loop {
        let due = started + Duration::from_secs_f64((n * WRITERS + w) as f64 / rate as f64);
        if due.duration_since(started) >= duration {
            return Ok(n);
        }
        tokio::time::sleep_until(due.into()).await;
        let i = rng.below(dataset.keys.max(1));
        let (key, value) = (Dataset::key(i), dataset.value(i, n + 1));
        let (_, lsn) = db
            .transaction_lsn(|txn| {
                let (key, value) = (key.clone(), value.clone());
                async move { txn.put(key, value) }
            })
            .await
            .ctx(PHASE)?;
        if let Some(lsn) = lsn {
            let t = now_ms();
            let mut guard = newest.lock().unwrap_or_else(|e| e.into_inner());
            if lsn > guard.0 {
                *guard = (lsn, t);
            }
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
