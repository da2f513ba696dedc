//! Random histories of the original's application (writes, deletes, events) and backups
//! (shipping runs, full backups when due, full backups that die part-way, retention),
//! imported at random seconds and compared with the oracle of the original's restore
//! semantics (`support::Oracle`, computed from the history alone).

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::{Expected, Sim, Step, keyspace};
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;
use tito_legacy::original::Config;
use tito_legacy::{EventsMode, ImportOptions, LegacyError};
use tito_restore::NoProgress;
use tito_store::{MemoryStore, Store};

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..8, any::<u16>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => (0u8..8).prop_map(Step::Delete),
        2 => (0u8..8).prop_map(Step::Event),
        1 => (1u32..3000).prop_map(Step::Wait),
        3 => Just(Step::Backup),
        1 => (0u8..4).prop_map(Step::CrashFull),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn an_import_at_any_second_is_what_the_original_restore_meant(
        steps in proptest::collection::vec(step(), 1..60),
        chunk_size in 1u32..4,
        interval in 1i64..6,
        retention in 1i64..20,
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..5),
        ms in 0u64..1000,
        batch_ops in 1usize..6,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let config = Config {
                chunk_size,
                full_backup_interval_secs: interval,
                retention_secs: retention,
                backup_root: String::new(),
            };
            let mut sim = Sim::new(store.clone(), config);
            for s in &steps {
                sim.step(s).await;
            }
            let times = sim.oracle.interesting_times();
            for pick in &picks {
                let t = times[pick.index(times.len())];
                for (events, partitions) in [(EventsMode::Skip, None), (EventsMode::Enqueue, Some(3))] {
                    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
                    let opts = ImportOptions {
                        to_ms: t.map(|s| s as u64 * 1000 + ms),
                        events,
                        partitions,
                        batch_ops,
                        ..ImportOptions::default()
                    };
                    let got = tito_legacy::import(store.clone(), engine.clone(), &opts, &NoProgress).await;
                    match sim.oracle.expect(t, partitions) {
                        Expected::State(state, full) => {
                            let report = got.unwrap_or_else(|e| panic!("import at {t:?}: {e}"));
                            assert_eq!(report.full_used, full, "at {t:?}");
                            assert_eq!(keyspace(engine.as_ref()).await, state, "at {t:?}");
                            tito_capture::Db::open(engine).await.expect("an ordinary database");
                        }
                        Expected::NotFound => assert!(
                            matches!(got, Err(LegacyError::NotFound(_))),
                            "at {t:?}: {got:?}"
                        ),
                        Expected::NoMarker => assert!(
                            matches!(got, Err(LegacyError::BadMarker { .. })),
                            "at {t:?}: {got:?}"
                        ),
                    }
                }
            }
        });
    }
}
