//! Snapshot and restore with encryption at rest next to the same without (issue 15: the
//! encrypted speed ≥ 0.9× the plain one).
//!
//! The dataset is loaded once into a source database. Each round snapshots it into a fresh
//! plain store and into a fresh store of the same kind wrapped in an
//! [`tito_store::EncryptStore`] (a new random key), and restores each into a fresh engine,
//! alternating which goes first; each figure is the best of [`ROUNDS`] rounds. Every
//! restore must hold the source's dataset. Run: `tito bench --phases encryption`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tito_backup::BackupService;
use tito_capture::Db;
use tito_engine::Engine;
use tito_store::{EncryptStore, Keyring, Store};

use crate::child::snapshot_config;
use crate::dataset::{Dataset, digest};
use crate::env::BenchEnv;
use crate::error::{Ctx, Result};
use crate::report::Timed;
use crate::tito::{check_same, restore_latest};

const PHASE: &str = "encryption";
/// Rounds of each variant; the best of each is reported.
pub const ROUNDS: usize = 3;
/// Rows written per transaction when loading the source.
const LOAD_BATCH: u64 = 100_000;

/// The encryption phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct EncryptionFigures {
    /// Snapshot into a plain store (best of the rounds).
    pub plain_snapshot: Timed,
    /// Snapshot into an encrypted store (best of the rounds).
    pub encrypted_snapshot: Timed,
    /// Restore from the plain store (best of the rounds).
    pub plain_restore: Timed,
    /// Restore from the encrypted store (best of the rounds).
    pub encrypted_restore: Timed,
    /// Bytes one plain snapshot uploaded.
    pub plain_bytes: u64,
    /// Bytes stored by one encrypted snapshot (envelopes included).
    pub encrypted_bytes: u64,
    /// Encrypted snapshot speed over plain snapshot speed.
    pub snapshot_ratio: f64,
    /// Encrypted restore speed over plain restore speed.
    pub restore_ratio: f64,
}

/// Measure on `dataset`; engines and stores come from `env`.
pub async fn measure(
    env: &BenchEnv,
    dataset: &Dataset,
    level: Option<i32>,
) -> Result<EncryptionFigures> {
    let source = env.engine("encryption-source").await?;
    let outcome = measure_with(env, dataset, level, source.clone()).await;
    env.drop_engine(source).await;
    outcome
}

/// Best (snapshot, restore, stored bytes) per variant: 0 plain, 1 encrypted.
type Best = [Option<(Timed, Timed, u64)>; 2];

async fn measure_with(
    env: &BenchEnv,
    dataset: &Dataset,
    level: Option<i32>,
    source: Arc<dyn Engine>,
) -> Result<EncryptionFigures> {
    dataset.load(source.as_ref(), LOAD_BATCH).await?;
    let expected = digest(source.as_ref()).await?;
    let db = Db::open(source).await.ctx(PHASE)?;
    let mut best: Best = [None, None];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let raw = env.store(&format!("encryption-{i}-{round}")).await?;
            let store: Arc<dyn Store> = if i == 0 {
                raw.clone()
            } else {
                Arc::new(EncryptStore::new(
                    raw.clone(),
                    Keyring::generate(),
                    [tito_format::layout::REPO_CONFIG.to_string()],
                ))
            };
            let fresh = env
                .engine(&format!("encryption-restore-{i}-{round}"))
                .await?;
            let r = one_round(&db, level, expected, store, raw, fresh.clone()).await;
            env.drop_engine(fresh).await;
            let (snap, restore, bytes) = r?;
            let better = best[i]
                .as_ref()
                .is_none_or(|(s, r, _)| snap.secs + restore.secs < s.secs + r.secs);
            if better {
                best[i] = Some((snap, restore, bytes));
            }
        }
    }
    let [Some(plain), Some(enc)] = best else {
        unreachable!("every round measures both variants");
    };
    Ok(EncryptionFigures {
        snapshot_ratio: plain.0.secs / enc.0.secs.max(1e-9),
        restore_ratio: plain.1.secs / enc.1.secs.max(1e-9),
        plain_bytes: plain.2,
        encrypted_bytes: enc.2,
        plain_snapshot: plain.0,
        encrypted_snapshot: enc.0,
        plain_restore: plain.1,
        encrypted_restore: enc.1,
    })
}

/// Snapshot `db` into `store`, restore it into `fresh`, check it; the bytes stored are
/// counted in `raw` (the store underneath any wrapper).
async fn one_round(
    db: &Db,
    level: Option<i32>,
    expected: (u64, [u8; 32]),
    store: Arc<dyn Store>,
    raw: Arc<dyn Store>,
    fresh: Arc<dyn Engine>,
) -> Result<(Timed, Timed, u64)> {
    let service = BackupService::new(db.clone(), store, snapshot_config(level))
        .await
        .ctx(PHASE)?;
    let started = Instant::now();
    let snap = service.snapshot().await.ctx(PHASE)?;
    let snap_took = started.elapsed();
    // The next round's service takes the lease at once.
    service.release_lease().await.ctx(PHASE)?;
    let (restored, took) = restore_latest(
        service.repository(),
        fresh.clone(),
        &tito_restore::NoProgress,
        PHASE,
    )
    .await?;
    check_same(PHASE, expected, digest(fresh.as_ref()).await?)?;
    let stored = stored_bytes(raw.as_ref()).await?;
    Ok((
        Timed::new(snap.pairs, snap.raw_bytes, snap_took),
        Timed::new(restored.state_entries_restored, snap.raw_bytes, took),
        stored,
    ))
}

async fn stored_bytes(store: &dyn Store) -> Result<u64> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store
        .list("")
        .try_collect()
        .await
        .map_err(crate::error::store_err(PHASE, store.describe()))?;
    Ok(metas.iter().map(|m| m.size).sum())
}
