//! RPO of backing up an etcd cluster Tito did not write (`--phases etcd-watch-rpo`,
//! issue 16): plain etcd clients put at a fixed rate under a fresh prefix while a
//! [`WatchBackup`] follows the cluster in continuous mode and ships to the run's store.
//!
//! The RPO of one write is the time from its put returning to the first time the store's
//! log was seen covering its revision ([`store_log_end`], polled every
//! 20 ms, the `rpo` phase's sampling interval): a crash of the backup at any
//! instant in between would lose that write. Each figure is an upper bound by at most one
//! poll interval plus a listing. Writes whose revision the log covered before the put
//! returned count as 0. Every write gets a lag: after the writers stop, the poller waits
//! (at most [`DRAIN`]) until the log covers the last revision written.
//!
//! The prefix `<ns>/tito-bench-watch-rpo-<pid>-<ms>/` is deleted at the end, error or not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tito_backup::{BackupConfig, store_log_end};
use tito_engine::EngineError;
use tito_etcd_watch::{WatchBackup, WatchConfig};
use tito_store::Store;
use tokio::sync::watch;

use crate::dataset::{Dataset, Rng};
use crate::error::{BenchError, Result};
use crate::rpo::{SAMPLE_EVERY, percentile};

const PHASE: &str = "etcd-watch-rpo";
/// Concurrent plain etcd clients sharing the rate (one put waits for a Raft commit).
pub const WRITERS: u64 = 8;
/// Keys the writers update (at most; fewer when the dataset is smaller).
const WATCH_RPO_KEYS: u64 = 10_000;
/// How long the poller waits, after the writers stop, for the store's log to cover the
/// last revision written before the run fails.
pub const DRAIN: Duration = Duration::from_secs(60);
/// How long the backup may take to write its first snapshot before the writers start.
const FIRST_SNAPSHOT: Duration = Duration::from_secs(60);

/// Lag figures of one run of the phase.
#[derive(Clone, Debug, Serialize)]
pub struct WatchRpo {
    /// Client endpoints of the cluster.
    pub endpoints: Vec<String>,
    /// The prefix the writers wrote under and the backup watched (deleted at the end).
    pub prefix: String,
    /// Puts per second asked for.
    pub target_rate: u64,
    /// Puts per second that returned.
    pub achieved_rate: f64,
    /// Puts that returned (each one a revision).
    pub writes: u64,
    /// Lags measured: one per write.
    pub lags: usize,
    /// Seconds the writers ran.
    pub duration_secs: u64,
    /// Continuous mode's shipping interval (ms).
    pub interval_ms: u64,
    /// Store listings polled for the log's end.
    pub polls: usize,
    /// Segments shipped from the first write to the last one covered.
    pub segments: u64,
    /// Records (revisions) shipped in that time: the writes' and any other revisions of
    /// the cluster, shipped as empty records.
    pub records_shipped: u64,
    /// Revision of the first write.
    pub first_revision: u64,
    /// Revision of the last write.
    pub last_revision: u64,
    /// Median lag (ms).
    pub p50_ms: u64,
    /// 99th percentile lag (ms).
    pub p99_ms: u64,
    /// Largest lag (ms).
    pub max_ms: u64,
}

/// A put that returned: its revision and when it returned.
type Write = (u64, Instant);

/// Run the phase against the cluster of the `etcd://` URL `url`: [`WRITERS`] plain etcd
/// clients put `dataset`-sized values at `rate` puts/s for `secs` s under a fresh prefix,
/// while a [`WatchBackup`] of that prefix ships to `store` every `interval_ms`. The
/// prefix is deleted before returning.
pub async fn measure(
    url: &str,
    dataset: &Dataset,
    store: Arc<dyn Store>,
    rate: u64,
    secs: u64,
    interval_ms: u64,
) -> Result<WatchRpo> {
    let base = crate::etcd::config(url)?;
    let mut prefix = base.namespace.clone();
    prefix.extend_from_slice(
        format!(
            "/tito-bench-watch-rpo-{}-{}/",
            std::process::id(),
            tito_backup::now_ms()
        )
        .as_bytes(),
    );
    let client = etcd_client::Client::connect(base.endpoint_urls(), None)
        .await
        .map_err(etcd_err("connect"))?;
    let outcome = run(
        &base.endpoints,
        &prefix,
        client.clone(),
        dataset,
        store,
        rate.max(1),
        secs.max(1),
        interval_ms,
    )
    .await;
    // A failed delete fails the run only when the measurement succeeded (it left data on
    // a shared cluster).
    let deleted = client
        .clone()
        .delete(
            prefix.clone(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .map_err(etcd_err("deleting the bench prefix"));
    let figures = outcome?;
    deleted?;
    Ok(figures)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    endpoints: &[String],
    prefix: &[u8],
    client: etcd_client::Client,
    dataset: &Dataset,
    store: Arc<dyn Store>,
    rate: u64,
    secs: u64,
    interval_ms: u64,
) -> Result<WatchRpo> {
    let config = BackupConfig {
        ship_interval: Duration::from_millis(interval_ms.max(1)),
        ..BackupConfig::default()
    };
    let backup = Arc::new(
        WatchBackup::open(
            WatchConfig::new(endpoints.to_vec(), prefix.to_vec()),
            store,
            config,
        )
        .await
        .map_err(watch_err)?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = {
        let backup = backup.clone();
        tokio::spawn(async move { backup.run_continuous(stop_rx).await })
    };
    let measured = follow_writes(&backup, &shipper, client, prefix, dataset, rate, secs).await;
    let _ = stop_tx.send(true);
    // The backup's own failure, if any, explains a failed measurement best.
    shipper.await.map_err(task_err)?.map_err(watch_err)?;
    let (mut figures, stats_before) = measured?;
    let stats = backup.stats().snapshot();
    figures.endpoints = endpoints.to_vec();
    figures.prefix = String::from_utf8_lossy(prefix).into_owned();
    figures.interval_ms = interval_ms;
    figures.segments = stats.segments.saturating_sub(stats_before.segments);
    figures.records_shipped = stats
        .records_shipped
        .saturating_sub(stats_before.records_shipped);
    Ok(figures)
}

/// With the backup running: wait for its first snapshot, write at `rate` for `secs`, poll
/// the store's log end until it covers the last write, and compute the lags. Returns the
/// figures (endpoints, prefix, interval and shipping counts left for the caller) and the
/// shipper's stats when the writers started.
async fn follow_writes(
    backup: &Arc<WatchBackup>,
    shipper: &tokio::task::JoinHandle<std::result::Result<(), tito_etcd_watch::WatchError>>,
    client: etcd_client::Client,
    prefix: &[u8],
    dataset: &Dataset,
    rate: u64,
    secs: u64,
) -> Result<(WatchRpo, tito_backup::StatsSnapshot)> {
    // Measure steady state: the first round takes the prefix's first snapshot.
    let wait_from = Instant::now();
    while backup.shipper().covered() == 0 {
        if shipper.is_finished() {
            // Its error, if any, is what the caller reports.
            return Err(watch_failed(
                "the watch backup stopped before its first snapshot",
            ));
        }
        if wait_from.elapsed() > FIRST_SNAPSHOT {
            return Err(watch_failed("no first snapshot within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats_before = backup.stats().snapshot();
    let keys = dataset.keys.clamp(1, WATCH_RPO_KEYS);

    // The poller: (when the listing returned, the log's end) until told the revision to
    // reach and it is reached.
    let (reach_tx, reach_rx) = watch::channel(None::<u64>);
    let poller = {
        let repo = backup.shipper().repository().clone();
        tokio::spawn(poll_log_end(repo, reach_rx))
    };

    let started = Instant::now();
    let duration = Duration::from_secs(secs);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        writers.spawn(writer(
            client.clone(),
            prefix.to_vec(),
            *dataset,
            keys,
            w,
            rate,
            started,
            duration,
        ));
    }
    let mut writes: Vec<Write> = Vec::new();
    let mut failure = None;
    while let Some(joined) = writers.join_next().await {
        match joined {
            Ok(Ok(w)) => writes.extend(w),
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(task_err(e)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let last = writes.iter().map(|w| w.0).max().unwrap_or(0);
    let _ = reach_tx.send(Some(if failure.is_some() { 0 } else { last }));
    let polls = poller.await.map_err(task_err)??;
    if let Some(e) = failure {
        return Err(e);
    }
    writes.sort_unstable_by_key(|w| w.0);
    let mut lags = Vec::with_capacity(writes.len());
    for &(revision, returned) in &writes {
        // Polls are in time order and their log ends never go back.
        let i = polls.partition_point(|p| p.1 < revision);
        let Some(&(seen, _)) = polls.get(i) else {
            return Err(watch_failed(&format!(
                "the store's log never covered revision {revision}"
            )));
        };
        lags.push(seen.saturating_duration_since(returned).as_millis() as u64);
    }
    lags.sort_unstable();
    Ok((
        WatchRpo {
            endpoints: Vec::new(),
            prefix: String::new(),
            target_rate: rate,
            achieved_rate: writes.len() as f64 / elapsed.max(1e-9),
            writes: writes.len() as u64,
            lags: lags.len(),
            duration_secs: secs,
            interval_ms: 0,
            polls: polls.len(),
            segments: 0,
            records_shipped: 0,
            first_revision: writes.first().map_or(0, |w| w.0),
            last_revision: last,
            p50_ms: percentile(&lags, 50.0),
            p99_ms: percentile(&lags, 99.0),
            max_ms: lags.last().copied().unwrap_or(0),
        },
        stats_before,
    ))
}

/// Poll the store's log end every `SAMPLE_EVERY` until `reach` names a revision and
/// the log covers it (or [`DRAIN`] after that); the polls, each (when its listing
/// returned, the log's end then), the end kept monotone.
async fn poll_log_end(
    repo: tito_backup::Repository,
    reach: watch::Receiver<Option<u64>>,
) -> Result<Vec<(Instant, u64)>> {
    let mut polls: Vec<(Instant, u64)> = Vec::new();
    let mut drain_from = None;
    loop {
        let (end, _) = store_log_end(&repo, tito_etcd_watch::backup::TIMELINE)
            .await
            .map_err(|source| BenchError::Backup {
                phase: PHASE,
                source,
            })?;
        let end = end.max(polls.last().map_or(0, |p| p.1));
        polls.push((Instant::now(), end));
        if let Some(target) = *reach.borrow() {
            if end >= target {
                return Ok(polls);
            }
            let since = *drain_from.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN {
                return Err(watch_failed(&format!(
                    "the store's log reached revision {end}, not {target}, within {} s of the last write",
                    DRAIN.as_secs()
                )));
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Writer `w` of [`WRITERS`]: puts its share of `rate` on a fixed schedule (a slow put is
/// followed by catch-up, not a lower rate), each a key of `prefix` and a value of
/// `dataset`'s size; returns each put's revision and when it returned.
#[allow(clippy::too_many_arguments)]
async fn writer(
    mut client: etcd_client::Client,
    prefix: Vec<u8>,
    dataset: Dataset,
    keys: u64,
    w: u64,
    rate: u64,
    started: Instant,
    duration: Duration,
) -> Result<Vec<Write>> {
    let mut rng = Rng::new(dataset.seed ^ 0x7761_7463_6800 ^ w);
    let mut writes = Vec::new();
    let mut n = 0u64;
    loop {
        let due = started + Duration::from_secs_f64((n * WRITERS + w) as f64 / rate as f64);
        if due.duration_since(started) >= duration {
            return Ok(writes);
        }
        tokio::time::sleep_until(due.into()).await;
        let i = rng.below(keys);
        let key = [prefix.as_slice(), &Dataset::key(i)].concat();
        let resp = client
            .put(key, dataset.value(i, n + 1), None)
            .await
            .map_err(etcd_err("put"))?;
        let returned = Instant::now();
        let revision = resp
            .header()
            .map(|h| h.revision() as u64)
            .ok_or_else(|| watch_failed("a put response without a header"))?;
        writes.push((revision, returned));
        n += 1;
    }
}

fn etcd_err(what: &'static str) -> impl FnOnce(etcd_client::Error) -> BenchError {
    move |e| BenchError::Engine {
        phase: PHASE,
        source: EngineError::Backend(format!("etcd {what}: {e}")),
    }
}

fn watch_err(e: tito_etcd_watch::WatchError) -> BenchError {
    BenchError::Watch {
        phase: PHASE,
        source: e,
    }
}

fn watch_failed(detail: &str) -> BenchError {
    BenchError::Task {
        phase: PHASE,
        detail: detail.to_string(),
    }
}

fn task_err(e: tokio::task::JoinError) -> BenchError {
    BenchError::Task {
        phase: PHASE,
        detail: e.to_string(),
    }
}
