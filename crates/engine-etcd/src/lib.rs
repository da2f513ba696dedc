//! The etcd engine: Tito on etcd, a Raft-replicated distributed key-value store.
//!
//! [`EtcdEngine`] implements [`tito_engine::Engine`] through the `etcd-client` crate.
//!
//! - **Namespace**: every key lives under a namespace prefix ([`EtcdConfig::namespace`]),
//!   user data and the engine's metadata (stamp counter, delete epoch, view pins) in
//!   disjoint sub-prefixes, so databases and tests can share a cluster. Or raw
//!   ([`EtcdConfig::raw`]): user keys are etcd's keys as applications see them, the
//!   metadata above them under [`RAW_META_PREFIX`].
//! - **Transactions**: the first read pins an etcd revision; every read is served at
//!   it. Writes are buffered. Commit is ONE etcd txn guarded by comparisons on every key
//!   and range read (see `readset` for the guards and how they stay within
//!   `--max-txn-ops`); if any fails, nothing is written and the commit reports
//!   [`tito_engine::EngineError::Conflict`] (first committer wins).
//! - **Stamps**: the stamp counter is a key compared (by modification revision) and
//!   rewritten in the same txn as the stamped record, so versions are dense and follow
//!   etcd's revision order. The commit is guarded by the counter the engine saw last
//!   (no read first, so a commit is one round trip); when only the counter moved, the
//!   failed txn returns the fresh counter and the commit is re-sent with it: the user's
//!   reads still hold.
//! - **Limits**: [`tito_engine::Engine::limits`] reports what fits one etcd request
//!   (`--max-request-bytes`, `--max-txn-ops`, given by the URL when not etcd's
//!   defaults); larger transactions fail with `TooLarge` before anything is sent.
//! - **Unknown outcomes**: a commit whose request failed in transit reports
//!   `CommitUnknown`. A commit that could not be sent at all (no connection to the
//!   endpoint tried) is sent again, for up to 15 s, so a dead member's endpoint does not
//!   fail commits the others can take. Reads are retried across member failures and
//!   elections.
//!
//! - **Read views** pin one revision and page through it; while alive they hold a pin
//!   key (under a lease) that [`EtcdEngine::compact`] never compacts past.
//!
//! Limitations (documented, not hidden):
//! - When a transaction read more keys than etcd's compare budget allows, its guards
//!   are coarsened (merged ranges plus a namespace-wide "delete epoch"): still sound,
//!   but any concurrent delete in the namespace then conflicts it.
//! - Compaction done outside Tito (etcdctl, `--auto-compaction-retention`) ignores pins:
//!   keep auto-compaction off or its retention above the longest snapshot; a view whose
//!   revision was compacted fails with a clear error, a transaction gets a conflict.
//! - Reverse scans use etcd's descending sort, which etcd 3.4 evaluates over the whole
//!   remaining range for each page: fine for short reverse reads (latest log record).
//! - The limits are not discovered from the server: give them in the URL when the
//!   cluster does not run with etcd's defaults. `bulk_load` is one atomic txn; callers
//!   size batches by [`tito_engine::Engine::limits`].
//!
//! URL: `etcd://host:port[,host:port...][/namespace][?max_request_bytes=N&max_txn_ops=N&timeout_ms=N]`.

#![warn(missing_docs)]

mod buffer;
mod commit;
mod config;
mod engine;
mod errors;
mod layout;
mod readset;
mod shared;
mod txn;
mod view;

pub use config::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, DEFAULT_NAMESPACE, EtcdConfig, endpoint_url,
};
pub use engine::EtcdEngine;
pub use layout::RAW_META_PREFIX;

/// Open an etcd engine from its URL (see [`EtcdEngine::open`]).
pub async fn open(url: &str) -> tito_engine::Result<EtcdEngine> {
    EtcdEngine::open(url).await
}
