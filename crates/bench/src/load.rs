//! `tito load` next to the engine's own bulk load of the same pairs.
//!
//! The dataset is written once as a dump file (the `tito dump` format, through
//! [`tito_capture::jsonl`]). Then, into fresh engines of the configured kind and in
//! alternating order over [`ROUNDS`] rounds: `Engine::bulk_load` of the pairs in batches
//! of [`BULK_BATCH`] (pairs generated in memory; only the calls are timed), and what
//! `tito load FILE` does: read and check the whole file ([`tito_capture::load::check_file`]),
//! then read it again and commit it in captured transactions ([`tito_capture::load::load`],
//! default batches). Each figure is the best of its rounds; both are over the dataset's
//! key and value bytes, and every loaded engine must hold every pair, all with one digest.
//! Run: `tito bench --phases load`.

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tito_capture::Db;
use tito_capture::load::LoadOptions;
use tito_engine::Engine;

use crate::dataset::{self, Dataset};
use crate::env::BenchEnv;
use crate::error::{BenchError, Ctx, Result, io_err};
use crate::limits::BULK_BATCH;
use crate::report::Timed;

const PHASE: &str = "load";
/// Rounds of each variant; the best of each is reported.
pub const ROUNDS: usize = 2;

/// The load phase's figures.
#[derive(Clone, Debug, Serialize)]
pub struct LoadFigures {
    /// Bytes of the dump file.
    pub dump_bytes: u64,
    /// `Engine::bulk_load` in batches of [`BULK_BATCH`] pairs.
    pub bulk_load: Timed,
    /// The whole of `tito load FILE`: check pass plus load pass.
    pub tito_load: Timed,
    /// The check pass alone (reading and decoding every line).
    pub check: Timed,
    /// Transactions `tito load` committed.
    pub batches: u64,
    /// `tito_load` MiB/s over `bulk_load` MiB/s.
    pub ratio: f64,
}

/// Measure; engines come from `env` and are dropped after each round.
pub async fn measure(env: &BenchEnv, dataset: &Dataset) -> Result<LoadFigures> {
    let path = env
        .dump_dir()
        .join(format!("tito-bench-load-{}.jsonl", std::process::id()));
    let outcome = measure_with(env, dataset, &path).await;
    let _ = std::fs::remove_file(&path);
    outcome
}

async fn measure_with(env: &BenchEnv, dataset: &Dataset, path: &Path) -> Result<LoadFigures> {
    let shown = path.display().to_string();
    write_dump(dataset, path).map_err(io_err(PHASE, shown.clone()))?;
    let dump_bytes = std::fs::metadata(path)
        .map_err(io_err(PHASE, shown.clone()))?
        .len();
    // Every loaded engine must hold the same pairs as the first one, which must hold
    // every key of the dataset.
    let mut expected: Option<(u64, [u8; 32])> = None;
    let (mut bulk, mut check, mut total) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut batches = 0;
    for round in 0..ROUNDS {
        for variant in [round % 2, 1 - round % 2] {
            let engine = env.engine(&format!("load-{round}-{variant}")).await?;
            let outcome = if variant == 0 {
                bulk_load(dataset, engine.as_ref())
                    .await
                    .map(|t| bulk = bulk.min(t))
            } else {
                tito_load(path, engine.clone()).await.map(|(c, t, b)| {
                    check = check.min(c);
                    total = total.min(t);
                    batches = b;
                })
            };
            let digest = match outcome {
                Ok(()) => dataset::digest(engine.as_ref()).await,
                Err(e) => Err(e),
            };
            env.drop_engine(engine).await;
            let digest = digest?;
            let reference = *expected.get_or_insert(digest);
            crate::tito::check_same(PHASE, reference, digest)?;
            if digest.0 != dataset.keys {
                return Err(BenchError::Mismatch {
                    phase: PHASE,
                    detail: format!("{} pairs loaded of {}", digest.0, dataset.keys),
                });
            }
        }
    }
    let (n, raw) = (dataset.keys, dataset.raw_bytes());
    let bulk_load = Timed::new(n, raw, bulk);
    let tito_load = Timed::new(n, raw, total);
    Ok(LoadFigures {
        dump_bytes,
        ratio: tito_load.mib_per_s() / bulk_load.mib_per_s().max(1e-12),
        bulk_load,
        tito_load,
        check: Timed::new(n, raw, check),
        batches,
    })
}

fn write_dump(dataset: &Dataset, path: &Path) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for i in 0..dataset.keys {
        let line = tito_capture::jsonl::encode_line(&Dataset::key(i), &dataset.value(i, 0));
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

async fn bulk_load(dataset: &Dataset, engine: &dyn Engine) -> Result<Duration> {
    let mut took = Duration::ZERO;
    let mut start = 0;
    while start < dataset.keys {
        let end = (start + BULK_BATCH).min(dataset.keys);
        let batch = dataset.pairs(start, end);
        let t = Instant::now();
        engine.bulk_load(batch).await.ctx(PHASE)?;
        took += t.elapsed();
        start = end;
    }
    Ok(took)
}

/// `tito load FILE` into `engine`: (check time, total time, transactions).
async fn tito_load(path: &Path, engine: Arc<dyn Engine>) -> Result<(Duration, Duration, u64)> {
    let shown = path.display().to_string();
    let open = || {
        std::fs::File::open(path)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(io_err(PHASE, shown.clone()))
    };
    let db = Db::open(engine).await.ctx(PHASE)?;
    let started = Instant::now();
    let file = std::fs::File::open(path).map_err(io_err(PHASE, shown.clone()))?;
    tito_capture::load::check_file(&file, &mut |_| {}).map_err(load_err)?;
    let checked = started.elapsed();
    let done = tito_capture::load::load(&db, open()?, &LoadOptions::default(), &mut |_| {})
        .await
        .map_err(load_err)?;
    Ok((checked, started.elapsed(), done.batches))
}

fn load_err(e: tito_capture::load::LoadError) -> BenchError {
    BenchError::Mismatch {
        phase: PHASE,
        detail: format!("loading the dump failed: {e}"),
    }
}
