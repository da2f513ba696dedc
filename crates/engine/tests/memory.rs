//! The conformance suite on the in-memory engine.

use std::sync::Arc;

use tito_engine::Engine;
use tito_engine::memory::MemoryEngine;

tito_engine::conformance_tests!(async { Arc::new(MemoryEngine::new()) as Arc<dyn Engine> });

#[tokio::test]
async fn kind_is_memory() {
    assert_eq!(MemoryEngine::new().kind(), "memory");
}
