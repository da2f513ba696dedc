//! A model-based test of the operator lifecycle.
//!
//! Random sequences of what operators do: writes (queue traffic included), one-shot
//! backups, snapshots, restore points, prunes with random policies, restores in place
//! (`force`), restored copies (new databases with their own store, or copies that continue
//! the lineage and replace their source), a copy trying to back up into its source's
//! store, a backup crashed by a failing store at a random call, and verify. The model keeps
//! every database's state at every commit. After every step:
//! - every backup of a live database succeeded (expected refusals aside);
//! - `latest` with no timeline restores exactly the live database of each store as of its
//!   last backup;
//! - every label that no prune reported as lost restores exactly its state;
//! - sampled shipped commits that the rules promise restore exactly (on their timeline);
//! - verify finds nothing wrong.
//!
//! 500 sequences on the memory engine and store, and a smaller run on redb with the local
//! directory store (`TITO_LIFECYCLE_CASES` overrides both counts).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{State, small_config, state_of};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tito_backup::{BackupError, BackupService, Repository};
use tito_capture::Db;
use tito_catalog::{RetentionPolicy, Target};
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_restore::{NoProgress, RestoreOptions, restore, verify_repository};
use tito_store::Store;
use tito_store::fault::{Fault, FaultPlan, FaultStore};

#[derive(Clone, Debug)]
enum Step {
    Write {
        db: usize,
        ops: Vec<(u8, Option<u8>)>,
        event: bool,
    },
    Backup {
        db: usize,
    },
    Snapshot {
        db: usize,
    },
    Label {
        db: usize,
    },
    Prune {
        store: usize,
        keep_last: Option<usize>,
        within: bool,
    },
    RestoreInPlace {
        db: usize,
        pick: usize,
    },
    RestoreCopy {
        store: usize,
        pick: usize,
        continue_lineage: bool,
    },
    CopyIntoSource {
        db: usize,
    },
    CrashedBackup {
        db: usize,
        call: u64,
        lost_ack: bool,
    },
    Verify {
        store: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let db = 0..4usize;
    let write =
        proptest::collection::vec((0..6u8, proptest::option::weighted(0.8, any::<u8>())), 1..4);
    prop_oneof![
        8 => (db.clone(), write, proptest::bool::weighted(0.3))
            .prop_map(|(db, ops, event)| Step::Write { db, ops, event }),
        5 => db.clone().prop_map(|db| Step::Backup { db }),
        2 => db.clone().prop_map(|db| Step::Snapshot { db }),
        2 => db.clone().prop_map(|db| Step::Label { db }),
        2 => (0..3usize, proptest::option::of(1..3usize), any::<bool>())
            .prop_map(|(store, keep_last, within)| Step::Prune { store, keep_last, within }),
        2 => (db.clone(), any::<usize>()).prop_map(|(db, pick)| Step::RestoreInPlace { db, pick }),
        2 => (0..3usize, any::<usize>(), proptest::bool::weighted(0.3))
            .prop_map(|(store, pick, continue_lineage)| Step::RestoreCopy { store, pick, continue_lineage }),
        1 => db.clone().prop_map(|db| Step::CopyIntoSource { db }),
        1 => (db.clone(), 1..12u64, any::<bool>())
            .prop_map(|(db, call, lost_ack)| Step::CrashedBackup { db, call, lost_ack }),
        1 => (0..3usize).prop_map(|store| Step::Verify { store }),
    ]
}

/// What the engines and stores are made of.
#[derive(Clone, Copy)]
enum Kind {
    Memory,
    RedbLocal,
}

/// A point a store promises to restore: `(timeline, lsn)` and the state there.
type Points = BTreeMap<(u64, u64), State>;

struct ModelDb {
    engine: Arc<dyn Engine>,
    db: Db,
    /// Index of the store it backs up into.
    store: usize,
    /// The store it was restored from, if it is a new database restored from one.
    source: Option<usize>,
    /// False once a copy continuing its lineage replaced it.
    live: bool,
    /// Commits since its last backup: `lsn -> state` (timeline learnt when shipped).
    pending: Vec<(u64, State)>,
    /// Its state as of its last successful backup, with the timeline shipped to.
    shipped: Option<(u64, State)>,
    /// After an in-place restore to `(timeline, lsn)` until the next backup: `pending[0]` is
    /// that point, not a commit of its own. The new timeline promises it only through its own
    /// first snapshot (no write before that backup).
    branch: Option<(u64, u64)>,
}

struct ModelStore {
    store: Arc<dyn Store>,
    points: Points,
    labels: BTreeMap<String, State>,
    /// The live database backing up into it, if any.
    live_db: Option<usize>,
}

struct World {
    kind: Kind,
    dir: tempfile::TempDir,
    dbs: Vec<ModelDb>,
    stores: Vec<ModelStore>,
    labels: u32,
    now_ms: u64,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl World {
    async fn new(kind: Kind) -> World {
        let mut w = World {
            kind,
            dir: tempfile::tempdir().expect("tempdir"),
            dbs: Vec::new(),
            stores: Vec::new(),
            labels: 0,
            now_ms: 0,
        };
        let store = w.new_store().await;
        let engine = w.new_engine().await;
        w.add_db(engine, store, None).await;
        w
    }

    async fn new_engine(&mut self) -> Arc<dyn Engine> {
        match self.kind {
            Kind::Memory => Arc::new(MemoryEngine::new()),
            Kind::RedbLocal => {
                let path = self.dir.path().join(format!("db{}.redb", self.dbs.len()));
                tito_engine::open(path.to_str().expect("utf-8 path"))
                    .await
                    .expect("open redb")
            }
        }
    }

    async fn new_store(&mut self) -> usize {
        let store: Arc<dyn Store> = match self.kind {
            Kind::Memory => Arc::new(tito_store::memory::MemoryStore::new()),
            Kind::RedbLocal => {
                let path = self.dir.path().join(format!("store{}", self.stores.len()));
                Arc::new(tito_store::local::LocalStore::new(&path).expect("local store"))
            }
        };
        self.stores.push(ModelStore {
            store,
            points: Points::new(),
            labels: BTreeMap::new(),
            live_db: None,
        });
        self.stores.len() - 1
    }

    async fn add_db(
        &mut self,
        engine: Arc<dyn Engine>,
        store: usize,
        source: Option<usize>,
    ) -> usize {
        let db = Db::open(engine.clone()).await.expect("open db");
        let state = state_of(engine.as_ref()).await;
        let version = engine.read_view().await.expect("view").version();
        self.dbs.push(ModelDb {
            engine,
            db,
            store,
            source,
            live: true,
            pending: vec![(version, state)],
            shipped: None,
            branch: None,
        });
        let i = self.dbs.len() - 1;
        self.stores[store].live_db = Some(i);
        i
    }

    fn db(&self, i: usize) -> Option<usize> {
        let live: Vec<usize> = (0..self.dbs.len()).filter(|&d| self.dbs[d].live).collect();
        (!live.is_empty()).then(|| live[i % live.len()])
    }

    async fn service(&self, d: usize, store: Arc<dyn Store>) -> Result<BackupService, BackupError> {
        let config = tito_backup::BackupConfig {
            lease_ttl: Duration::from_secs(30),
            ..small_config()
        };
        BackupService::new(self.dbs[d].db.clone(), store, config).await
    }

    /// After a successful backup of `d`: its pending commits are promised on its timeline.
    async fn shipped(&mut self, d: usize) -> Result<(), TestCaseError> {
        let timeline = self.dbs[d]
            .db
            .timeline()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let s = self.dbs[d].store;
        let mut pending = std::mem::take(&mut self.dbs[d].pending);
        if self.dbs[d].branch.take().is_some() && pending.len() > 1 {
            // Writes came before the first backup on the new timeline: its first snapshot is
            // after them, so they (and the branch point) restore only while the parent's base
            // for the branch point is kept: promise those that plan now.
            let repo = Repository::open(self.stores[s].store.clone())
                .await
                .map_err(|e| fail(e.to_string()))?;
            let cat = repo.catalog().await.map_err(|e| fail(e.to_string()))?;
            pending.retain(|(lsn, _)| cat.plan(&Target::Lsn(*lsn), Some(timeline)).is_ok());
        }
        let last = pending.last().cloned();
        for (lsn, state) in pending {
            self.stores[s].points.insert((timeline, lsn), state);
        }
        if let Some((lsn, state)) = last {
            self.dbs[d].pending.push((lsn, state.clone()));
            self.dbs[d].shipped = Some((timeline, state));
        }
        Ok(())
    }

    async fn backup(&mut self, d: usize) -> Result<(), TestCaseError> {
        let store = self.stores[self.dbs[d].store].store.clone();
        let service = self
            .service(d, store)
            .await
            .map_err(|e| fail(format!("open backup: {e}")))?;
        let r = service.run_backup().await;
        service.release_lease().await.ok();
        r.map_err(|e| fail(format!("backup of a live database failed: {e}")))?;
        self.shipped(d).await
    }

    async fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        self.now_ms += 1;
        match step {
            Step::Write { db, ops, event } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                let ops = ops.clone();
                let event = *event;
                let (_, lsn) = self.dbs[d]
                    .db
                    .transaction_lsn(|t| {
                        let ops = ops.clone();
                        async move {
                            for (k, v) in ops {
                                let key = vec![b'k', k];
                                match v {
                                    Some(v) => t.put(key, vec![v])?,
                                    None => t.delete(key)?,
                                }
                            }
                            if event {
                                let id = format!("{:016x}", rand::random::<u64>());
                                let e = tito_queue::Event::new(
                                    id,
                                    b"order".to_vec(),
                                    b"p".to_vec(),
                                    1,
                                    1,
                                );
                                tito_queue::publish(&t, 4, e).map_err(|e| {
                                    tito_capture::CaptureError::from(
                                        tito_engine::EngineError::Invalid(e.to_string()),
                                    )
                                })?;
                            }
                            Ok::<_, tito_capture::CaptureError>(())
                        }
                    })
                    .await
                    .map_err(|e| fail(format!("write: {e}")))?;
                if let Some(lsn) = lsn {
                    let state = state_of(self.dbs[d].engine.as_ref()).await;
                    self.dbs[d].pending.push((lsn, state));
                }
            }
            Step::Backup { db } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                self.backup(d).await?;
            }
            Step::Snapshot { db } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                let store = self.stores[self.dbs[d].store].store.clone();
                let service = self
                    .service(d, store)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                service
                    .ship_log()
                    .await
                    .map_err(|e| fail(format!("ship: {e}")))?;
                service
                    .snapshot()
                    .await
                    .map_err(|e| fail(format!("snapshot: {e}")))?;
                service.release_lease().await.ok();
                self.shipped(d).await?;
            }
            Step::Label { db } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                self.labels += 1;
                let name = format!("l{}", self.labels);
                let store = self.stores[self.dbs[d].store].store.clone();
                let service = self
                    .service(d, store)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                service
                    .restore_point(&name)
                    .await
                    .map_err(|e| fail(format!("label: {e}")))?;
                service.release_lease().await.ok();
                self.shipped(d).await?;
                let state = state_of(self.dbs[d].engine.as_ref()).await;
                let s = self.dbs[d].store;
                self.stores[s].labels.insert(name, state);
            }
            Step::Prune {
                store,
                keep_last,
                within,
            } => {
                let s = *store % self.stores.len();
                let repo = match Repository::open(self.stores[s].store.clone()).await {
                    Ok(r) => r,
                    Err(BackupError::NoRepository { .. }) => return Ok(()),
                    Err(e) => return Err(fail(e.to_string())),
                };
                let policy = RetentionPolicy {
                    keep_last: *keep_last,
                    keep_within_ms: within.then_some(u64::MAX / 4),
                    ..RetentionPolicy::default()
                };
                let r = tito_backup::prune_repository(&repo, &policy, Duration::ZERO, false)
                    .await
                    .map_err(|e| fail(format!("prune: {e}")))?;
                for lost in &r.lost_restore_points {
                    self.stores[s].labels.remove(&lost.name);
                }
                if !within {
                    // Without a window only the kept snapshots' log is promised: keep
                    // the points that still plan (the live databases' latest always must).
                    let cat = repo.catalog().await.map_err(|e| fail(e.to_string()))?;
                    self.stores[s]
                        .points
                        .retain(|&(tl, lsn), _| cat.plan(&Target::Lsn(lsn), Some(tl)).is_ok());
                }
            }
            Step::RestoreInPlace { db, pick } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                let s = self.dbs[d].store;
                let Some((&(tl, lsn), state)) = nth(&self.stores[s].points, *pick) else {
                    return Ok(());
                };
                let state = state.clone();
                let repo = Repository::open(self.stores[s].store.clone())
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let mut opts = RestoreOptions::new(Target::Lsn(lsn));
                opts.timeline = Some(tl);
                opts.force = true;
                restore(&repo, self.dbs[d].engine.clone(), &opts, &NoProgress)
                    .await
                    .map_err(|e| fail(format!("restore in place to {tl}/{lsn}: {e}")))?;
                let got = state_of(self.dbs[d].engine.as_ref()).await;
                if got != state {
                    return Err(fail(format!("in-place restore to {tl}/{lsn} differs")));
                }
                let version = self.dbs[d]
                    .engine
                    .read_view()
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .version();
                self.dbs[d].pending = vec![(version, state)];
                self.dbs[d].branch = Some((tl, lsn));
            }
            Step::RestoreCopy {
                store,
                pick,
                continue_lineage,
            } => {
                let s = *store % self.stores.len();
                let Some((&(tl, lsn), state)) = nth(&self.stores[s].points, *pick) else {
                    return Ok(());
                };
                let state = state.clone();
                if self.dbs.len() >= 6 {
                    return Ok(());
                }
                let repo = Repository::open(self.stores[s].store.clone())
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let engine = self.new_engine().await;
                let mut opts = RestoreOptions::new(Target::Lsn(lsn));
                opts.timeline = Some(tl);
                opts.continue_lineage = *continue_lineage;
                restore(&repo, engine.clone(), &opts, &NoProgress)
                    .await
                    .map_err(|e| fail(format!("restore copy of {tl}/{lsn}: {e}")))?;
                if state_of(engine.as_ref()).await != state {
                    return Err(fail(format!("restored copy of {tl}/{lsn} differs")));
                }
                if *continue_lineage {
                    // The copy replaces the store's live database, which is retired.
                    if let Some(old) = self.stores[s].live_db {
                        self.dbs[old].live = false;
                    }
                    let d = self.add_db(engine, s, None).await;
                    self.backup(d).await?;
                } else {
                    let own = self.new_store().await;
                    let d = self.add_db(engine, own, Some(s)).await;
                    self.backup(d).await?;
                }
            }
            Step::CopyIntoSource { db } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                let Some(source) = self.dbs[d].source else {
                    return Ok(());
                };
                let store = self.stores[source].store.clone();
                match self.service(d, store).await {
                    Err(BackupError::ForeignRepository { .. }) => {}
                    Err(e) => return Err(fail(format!("copy into source: unexpected {e}"))),
                    Ok(_) => return Err(fail("a copy opened its source's repository".into())),
                }
            }
            Step::CrashedBackup { db, call, lost_ack } => {
                let Some(d) = self.db(*db) else { return Ok(()) };
                let plan = FaultPlan::new();
                plan.fail_call(
                    *call,
                    if *lost_ack {
                        Fault::LostAck
                    } else {
                        Fault::Permanent
                    },
                );
                let faulty: Arc<dyn Store> = Arc::new(FaultStore::new(
                    self.stores[self.dbs[d].store].store.clone(),
                    plan,
                ));
                if let Ok(service) = self.service(d, faulty).await {
                    let r = service.run_backup().await;
                    service.release_lease().await.ok();
                    if r.is_ok() {
                        self.shipped(d).await?;
                    }
                }
                // No manual step: the next backup goes on.
                self.backup(d).await?;
            }
            Step::Verify { store } => {
                let s = *store % self.stores.len();
                self.verify(s).await?;
            }
        }
        Ok(())
    }

    async fn verify(&self, s: usize) -> Result<(), TestCaseError> {
        let repo = match Repository::open(self.stores[s].store.clone()).await {
            Ok(r) => r,
            Err(BackupError::NoRepository { .. }) => return Ok(()),
            Err(e) => return Err(fail(e.to_string())),
        };
        let report = verify_repository(&repo, false, &NoProgress)
            .await
            .map_err(|e| fail(format!("verify: {e}")))?;
        if !report.problems.is_empty() {
            return Err(fail(format!(
                "verify found problems: {:?}",
                report.problems
            )));
        }
        Ok(())
    }

    async fn restore_state(
        &mut self,
        s: usize,
        target: Target,
        timeline: Option<u64>,
    ) -> Result<State, String> {
        let repo = Repository::open(self.stores[s].store.clone())
            .await
            .map_err(|e| e.to_string())?;
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut opts = RestoreOptions::new(target);
        opts.timeline = timeline;
        restore(&repo, engine.clone(), &opts, &NoProgress)
            .await
            .map_err(|e| e.to_string())?;
        Ok(state_of(engine.as_ref()).await)
    }

    /// Everything the rules promise restores exactly.
    async fn check(&mut self, round: usize) -> Result<(), TestCaseError> {
        for s in 0..self.stores.len() {
            if let Some(d) = self.stores[s].live_db {
                if let Some((_, state)) = self.dbs[d].shipped.clone() {
                    let got = self
                        .restore_state(s, Target::Latest, None)
                        .await
                        .map_err(|e| {
                            fail(format!(
                                "latest of store {s} (live database {d}) does not restore: {e}"
                            ))
                        })?;
                    if got != state {
                        return Err(fail(format!(
                            "latest of store {s} is not its live database's last backup"
                        )));
                    }
                }
            }
            let labels: Vec<(String, State)> = self.stores[s]
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, state) in labels {
                let got = self
                    .restore_state(s, Target::Label(name.clone()), None)
                    .await
                    .map_err(|e| fail(format!("label {name} that no prune let go: {e}")))?;
                if got != state {
                    return Err(fail(format!("label {name} restores another state")));
                }
            }
            let n = self.stores[s].points.len();
            for k in 0..n.min(2) {
                let Some((&(tl, lsn), state)) = nth(&self.stores[s].points, round * 7 + k * 13)
                else {
                    continue;
                };
                let state = state.clone();
                let got = self
                    .restore_state(s, Target::Lsn(lsn), Some(tl))
                    .await
                    .map_err(|e| fail(format!("promised point {tl}/{lsn} of store {s}: {e}")))?;
                if got != state {
                    return Err(fail(format!(
                        "point {tl}/{lsn} of store {s} restores another state"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn nth<K, V>(map: &BTreeMap<K, V>, pick: usize) -> Option<(&K, &V)> {
    if map.is_empty() {
        return None;
    }
    map.iter().nth(pick % map.len())
}

fn run_cases(kind: Kind, default_cases: u32, steps: std::ops::Range<usize>) {
    let cases = std::env::var("TITO_LIFECYCLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let strategy = proptest::collection::vec(step(), steps);
    runner
        .run(&strategy, |steps| rt.block_on(run_steps(kind, &steps)))
        .expect("lifecycle");
}

/// Runs one sequence of steps, checking every promise after each.
async fn run_steps(kind: Kind, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut world = World::new(kind).await;
    for (i, step) in steps.iter().enumerate() {
        world
            .run(step)
            .await
            .map_err(|e| fail(format!("step {i} {step:?}: {e}")))?;
        world
            .check(i)
            .await
            .map_err(|e| fail(format!("after step {i} {step:?}: {e}")))?;
    }
    for s in 0..world.stores.len() {
        world.verify(s).await?;
    }
    Ok(())
}

/// Sequences that once failed, kept as they were found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_regressions() {
    let write = || Step::Write {
        db: 0,
        ops: vec![(0, None)],
        event: false,
    };
    // A prune while an in-place restore's branch was pending let the parent's branch point go;
    // the model then promised that point on the new timeline, which has no snapshot there.
    // And the same branch point with writes before a (crashed) first backup.
    let cases: Vec<Vec<Step>> = vec![
        vec![
            write(),
            write(),
            Step::Backup { db: 0 },
            Step::RestoreInPlace {
                db: 0,
                pick: 9361170648499774939,
            },
            write(),
            Step::Prune {
                store: 0,
                keep_last: None,
                within: false,
            },
            Step::Backup { db: 0 },
        ],
        vec![
            write(),
            write(),
            Step::Backup { db: 0 },
            Step::RestoreInPlace {
                db: 0,
                pick: 838307584164227740,
            },
            Step::Prune {
                store: 0,
                keep_last: None,
                within: false,
            },
            write(),
            write(),
            Step::CrashedBackup {
                db: 0,
                call: 1,
                lost_ack: false,
            },
        ],
    ];
    for (i, steps) in cases.iter().enumerate() {
        for kind in [Kind::Memory, Kind::RedbLocal] {
            if let Err(e) = run_steps(kind, steps).await {
                panic!("regression {i}: {e}");
            }
        }
    }
}

#[test]
fn operator_lifecycle_memory() {
    run_cases(Kind::Memory, 500, 4..24);
}

#[test]
fn operator_lifecycle_redb_local_directory() {
    run_cases(Kind::RedbLocal, 24, 4..16);
}
