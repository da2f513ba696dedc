//! The backup/restore oracle property test the embedded engines run, on etcd: the
//! source and every restore target are fresh namespaces of the test cluster.
//!
//! The scenario is `crates/restore/tests/common/pitr.rs` (one piece of code for every
//! engine): random concurrent transactions, queue traffic and range deletes, random
//! ship/snapshot/label/prune steps, then restores to random LSN, time, label and latest
//! targets, each equal to the oracle at exactly the commit boundary it names.

mod common;
#[path = "../../restore/tests/common/mod.rs"]
mod restore_common;

use std::sync::Arc;

use proptest::prelude::*;
use restore_common::pitr::{self, NewEngine};

fn etcd() -> NewEngine {
    Arc::new(|| Box::pin(common::engine()))
}

proptest! {
    // Each case restores up to ~15 targets into fresh etcd namespaces: few cases keep the
    // test well under a minute; the memory engine runs the same scenario 96 times.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn etcd_restore_equals_oracle_at_every_target(
        steps in proptest::collection::vec(pitr::step(), 1..50),
        picks in proptest::collection::vec(any::<u64>(), 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(pitr::scenario(&etcd(), steps, picks));
    }
}
