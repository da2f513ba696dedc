//! The conformance suite on the in-memory backend.

use std::sync::Arc;

use tito_store::{MemoryStore, Store};

tito_store::conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
