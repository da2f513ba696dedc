//! Commit throughput on the redb engine: Tito transactions with change capture vs raw
//! engine transactions, each writing 10 puts of 100-byte values, in one run.
//!
//! Run: `cargo bench -p tito-capture --bench commit`
//!
//! Two measurements:
//! - criterion groups, one per variant (rates; on a shared machine these drift between
//!   variants because they run minutes apart);
//! - a paired run first: rounds of 20 commits of each variant, back to back in rotating
//!   order, and the median over rounds of the per-round ratio. Load changes hit both
//!   variants of a round alike, so this ratio is the one to report.
//!
//! A third variant, a raw transaction plus one stamped put of a same-sized body, shows
//! what the engine itself charges for writing the log record's bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use tito_capture::Db;
use tito_capture::keys::LOG_PREFIX;
use tito_engine::Engine;
use tito_engine::redb::RedbEngine;

const PUTS: u64 = 10;
const VALUE: [u8; 100] = [0x5a; 100];
/// Size of the record body capture writes for one transaction (tag, 2 lengths, 17-byte key, value).
const BODY_LEN: usize = 2 + (PUTS as usize) * (1 + 1 + 17 + 1 + VALUE.len());

/// Ten fresh keys per transaction, so every variant grows its database the same way.
fn keys(counter: &AtomicU64) -> impl Iterator<Item = Vec<u8>> {
    let base = counter.fetch_add(PUTS, Ordering::Relaxed);
    (base..base + PUTS).map(|i| format!("user/{i:012}").into_bytes())
}

/// One variant: its engine (or database) and key counter.
enum Variant {
    Raw(Arc<dyn Engine>, AtomicU64),
    Capture(Db, AtomicU64),
    RawPlusStamped(Arc<dyn Engine>, AtomicU64),
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Variant::Raw(..) => "raw_engine_txn",
            Variant::Capture(..) => "tito_txn_with_capture",
            Variant::RawPlusStamped(..) => "raw_engine_txn_plus_stamped_put",
        }
    }

    async fn commit_one(&self) {
        match self {
            Variant::Raw(engine, counter) | Variant::RawPlusStamped(engine, counter) => {
                let tx = engine.begin().await.expect("begin");
                for k in keys(counter) {
                    tx.put(k, VALUE.to_vec()).expect("put");
                }
                if matches!(self, Variant::RawPlusStamped(..)) {
                    tx.put_stamped(LOG_PREFIX.to_vec(), vec![0xa5; BODY_LEN])
                        .expect("stamped put");
                }
                tx.commit().await.expect("commit");
            }
            Variant::Capture(db, counter) => {
                let txn = db.begin().await.expect("begin");
                for k in keys(counter) {
                    txn.put(k, VALUE.to_vec()).expect("put");
                }
                txn.commit().await.expect("commit");
            }
        }
    }
}

struct Setup {
    rt: tokio::runtime::Runtime,
    variants: Vec<Variant>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |name: &str| -> Arc<dyn Engine> {
        Arc::new(
            rt.block_on(RedbEngine::open(dir.path().join(name)))
                .expect("open redb"),
        )
    };
    let variants = vec![
        Variant::Raw(open("raw.redb"), AtomicU64::new(0)),
        Variant::Capture(
            rt.block_on(Db::open(open("capture.redb")))
                .expect("open db"),
            AtomicU64::new(0),
        ),
        Variant::RawPlusStamped(open("floor.redb"), AtomicU64::new(0)),
    ];
    Setup {
        rt,
        variants,
        _dir: dir,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The paired measurement (see the module doc).
fn paired(s: &Setup) {
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 20;
    let n = s.variants.len();
    s.rt.block_on(async {
        for v in &s.variants {
            for _ in 0..50 {
                v.commit_one().await;
            }
        }
    });
    let mut rates = vec![Vec::new(); n];
    for round in 0..ROUNDS {
        for i in 0..n {
            let v = &s.variants[(round + i) % n];
            let start = Instant::now();
            s.rt.block_on(async {
                for _ in 0..PER_ROUND {
                    v.commit_one().await;
                }
            });
            rates[(round + i) % n].push(PER_ROUND as f64 / start.elapsed().as_secs_f64());
        }
    }
    let ratios = |i: usize| {
        median(
            rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(x, raw)| x / raw)
                .collect(),
        )
    };
    println!(
        "paired run: {ROUNDS} rounds x {PER_ROUND} commits per variant, 10 puts x 100 B each, redb"
    );
    for (i, v) in s.variants.iter().enumerate() {
        println!(
            "  {:<34} median {:>8.1} commits/s   median ratio to raw {:.3}",
            v.name(),
            median(rates[i].clone()),
            ratios(i)
        );
    }
}

fn commit(c: &mut Criterion) {
    let s = setup();
    paired(&s);
    let mut group = c.benchmark_group("commit_10x100B_redb");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for v in &s.variants {
        group.bench_function(v.name(), |b| b.to_async(&s.rt).iter(|| v.commit_one()));
    }
    group.finish();
}

criterion_group!(benches, commit);
criterion::criterion_main!(benches);
