//! Change-capture overhead: commit throughput of Tito transactions (capture writes one log
//! record per transaction) against raw engine transactions, 10 puts of 100-byte values
//! each, on two fresh engines of the configured kind.
//!
//! Rounds of `per_round` commits of each variant back to back, in rotating order, and the
//! median over rounds of the per-round ratio, so load changes on a shared machine hit both
//! variants of a round alike. Run: `tito bench --phases capture`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tito_capture::Db;
use tito_engine::Engine;

use crate::error::{Ctx, Result};

const PHASE: &str = "capture";
/// Puts per transaction.
pub const PUTS: u64 = 10;
/// Bytes per value.
pub const VALUE_LEN: usize = 100;
/// Commits of each variant before measuring (warms caches and file growth).
const WARMUP: usize = 50;

/// Result of the paired measurement.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureOverhead {
    /// Rounds measured.
    pub rounds: usize,
    /// Commits per variant per round.
    pub per_round: usize,
    /// Median commits/s of raw engine transactions.
    pub raw_commits_per_s: f64,
    /// Median commits/s of Tito transactions with capture.
    pub capture_commits_per_s: f64,
    /// Median over rounds of (capture rate / raw rate).
    pub ratio: f64,
}

/// One variant and its key counter (ten fresh keys per commit, so both grow alike).
enum Variant {
    Raw(Arc<dyn Engine>, u64),
    Capture(Db, u64),
}

impl Variant {
    async fn commit_one(&mut self) -> Result<()> {
        let value = vec![0x5a; VALUE_LEN];
        match self {
            Variant::Raw(engine, next) => {
                let tx = engine.begin().await.ctx(PHASE)?;
                for i in *next..*next + PUTS {
                    tx.put(format!("user/{i:012}").into_bytes(), value.clone())
                        .ctx(PHASE)?;
                }
                *next += PUTS;
                tx.commit().await.ctx(PHASE)?;
            }
            Variant::Capture(db, next) => {
                let txn = db.begin().await.ctx(PHASE)?;
                for i in *next..*next + PUTS {
                    txn.put(format!("user/{i:012}").into_bytes(), value.clone())
                        .ctx(PHASE)?;
                }
                *next += PUTS;
                txn.commit().await.ctx(PHASE)?;
            }
        }
        Ok(())
    }
}

/// The median of `v` (0 for an empty list).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Run the paired measurement on `raw` and `captured` (two fresh engines).
pub async fn measure(
    raw: Arc<dyn Engine>,
    captured: Arc<dyn Engine>,
    rounds: usize,
    per_round: usize,
) -> Result<CaptureOverhead> {
    let db = Db::open(captured).await.ctx(PHASE)?;
    let mut variants = [Variant::Raw(raw, 0), Variant::Capture(db, 0)];
    for v in variants.iter_mut() {
        for _ in 0..WARMUP.min(per_round * 3) {
            v.commit_one().await?;
        }
    }
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..rounds.max(1) {
        for i in 0..2 {
            let which = (round + i) % 2;
            let started = Instant::now();
            for _ in 0..per_round.max(1) {
                variants[which].commit_one().await?;
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            rates[which].push(per_round.max(1) as f64 / secs);
        }
    }
    let ratios = rates[1].iter().zip(&rates[0]).map(|(c, r)| c / r).collect();
    Ok(CaptureOverhead {
        rounds: rounds.max(1),
        per_round: per_round.max(1),
        raw_commits_per_s: median(rates[0].clone()),
        capture_commits_per_s: median(rates[1].clone()),
        ratio: median(ratios),
    })
}
