//! Oracle property test of backup and point-in-time restore on the memory engine.
//!
//! The scenario (workload, backup steps, oracle, restore targets) lives in
//! `common/pitr.rs`, shared with the other engines' runs of the same test.

mod common;

use std::sync::Arc;

use common::pitr::{self, NewEngine};
use proptest::prelude::*;
use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;

fn memory() -> NewEngine {
    Arc::new(|| Box::pin(async { Arc::new(MemoryEngine::new()) as Arc<dyn Engine> }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn restore_equals_oracle_at_every_target(
        steps in proptest::collection::vec(pitr::step(), 1..60),
        picks in proptest::collection::vec(any::<u64>(), 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(pitr::scenario(&memory(), steps, picks));
    }
}
