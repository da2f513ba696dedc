//! Building the one etcd txn a commit sends, and checking it against etcd's limits.

use etcd_client::{Compare, CompareOp, DeleteOptions, TxnOp};
use tito_engine::{EngineError, KeyValue, Result, Stamp};

use crate::buffer::FinalWrites;
use crate::shared::{Counter, RESERVED_OPS, Shared};

/// Approximate protobuf overhead of one operation beyond its keys and value.
const OP_OVERHEAD: usize = 16;
/// Request bytes left for the txn envelope and header.
const ENVELOPE: usize = 4 * 1024;

/// The stamped record `prefix ++ be(version)` → `be(time_ms) ++ value` for `stamp`.
pub(crate) fn stamped_record(prefix: &[u8], value: &[u8], stamp: Stamp) -> KeyValue {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&stamp.version.to_be_bytes());
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&stamp.time_ms.to_be_bytes());
    v.extend_from_slice(value);
    (key, v)
}

/// Reject writes that cannot fit one etcd txn, before anything is sent.
pub(crate) fn check_fits(shared: &Shared, writes: &FinalWrites, what: &str) -> Result<()> {
    let limits = shared.limits();
    if writes.ops() > limits.max_txn_ops {
        return Err(EngineError::TooLarge(format!(
            "{what} needs {} etcd operations, the limit is {} (etcd --max-txn-ops {} less {RESERVED_OPS} for the engine)",
            writes.ops(),
            limits.max_txn_ops,
            shared.config.max_txn_ops
        )));
    }
    if writes.bytes() > limits.max_txn_bytes {
        return Err(EngineError::TooLarge(format!(
            "{what} writes {} bytes of keys and values, the limit is {} (etcd --max-request-bytes {})",
            writes.bytes(),
            limits.max_txn_bytes,
            shared.config.max_request_bytes
        )));
    }
    Ok(())
}

/// Encoded size of the write operations, roughly (namespaced keys included).
pub(crate) fn write_request_bytes(shared: &Shared, writes: &FinalWrites) -> usize {
    let ns = shared.layout.overhead();
    writes.bytes() + writes.ops() * (2 * ns + OP_OVERHEAD) + 2 * (64 + OP_OVERHEAD)
}

/// Request bytes left for the read guards once the writes are in.
pub(crate) fn compare_budget(shared: &Shared, writes: &FinalWrites) -> usize {
    shared
        .config
        .max_request_bytes
        .saturating_sub(write_request_bytes(shared, writes) + ENVELOPE)
}

/// The etcd operations of `writes`, plus the delete epoch bump when anything is deleted.
pub(crate) fn write_ops(shared: &Shared, writes: &FinalWrites) -> Vec<TxnOp> {
    let layout = &shared.layout;
    let mut ops = Vec::with_capacity(writes.ops() + RESERVED_OPS);
    for range in &writes.deletes {
        let (start, end) = layout.range(range);
        if start >= end {
            continue; // nothing of the data in it (raw: it would reach the metadata)
        }
        let single = range.end.as_ref().is_some_and(|e| {
            e.len() == range.start.len() + 1 && e.starts_with(&range.start) && e.last() == Some(&0)
        });
        let options = if single {
            None
        } else {
            Some(DeleteOptions::new().with_range(end))
        };
        ops.push(TxnOp::delete(start, options));
    }
    for (k, v) in &writes.puts {
        ops.push(TxnOp::put(layout.key(k), v.clone(), None));
    }
    if !writes.deletes.is_empty() {
        ops.push(TxnOp::put(layout.delete_epoch.clone(), Vec::new(), None));
    }
    ops
}

/// Compare and operations that advance the stamp counter from `counter` to `stamp`.
pub(crate) fn counter_guard(shared: &Shared, counter: &Counter, stamp: Stamp) -> (Compare, TxnOp) {
    let key = shared.layout.counter.clone();
    (
        Compare::mod_revision(key.clone(), CompareOp::Equal, counter.mod_revision),
        TxnOp::put(key, Counter::encode(stamp.version, stamp.time_ms), None),
    )
}
