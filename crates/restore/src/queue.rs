//! Queue state after a restore: count pending events, and move them to other partitions
//! when the restored database uses another partition count (stable hash, see tito-queue).

use tito_capture::keys;
use tito_engine::{Engine, KeyRange, Limits};

use crate::error::RestoreError;

const PAGE: usize = 1000;

/// Number of pending events in `engine`.
pub async fn count_events(engine: &dyn Engine) -> Result<u64, RestoreError> {
    let view = engine.read_view().await?;
    let mut range = keys::queue_range();
    let mut n = 0;
    loop {
        let page = view.scan(&range, PAGE).await?;
        n += page.len() as u64;
        match page.last() {
            Some((k, _)) if page.len() == PAGE => range = range.after(k),
            _ => return Ok(n),
        }
    }
}

/// Move every pending event to the partition the stable hash of its key gives among
/// `partitions`. Returns how many moved. Runs on a restored database before it is used.
pub async fn repartition(
    engine: &dyn Engine,
    partitions: u32,
    limits: Limits,
) -> Result<u64, RestoreError> {
    let view = engine.read_view().await?;
    let mut range: KeyRange = keys::queue_range();
    let mut moved = 0;
    // Two writes per moved event (delete + put).
    let per_txn = (limits.max_txn_ops / 2).clamp(1, PAGE);
    loop {
        let page = view.scan(&range, per_txn).await?;
        let mut moves = Vec::new();
        for (k, v) in &page {
            let new_key = tito_queue::codec::repartition_key(k, v, partitions).map_err(|e| {
                RestoreError::Damaged {
                    key: keys::display_key(k),
                    reason: format!("queue event cannot be decoded: {e}"),
                }
            })?;
            if &new_key != k {
                moves.push((k.clone(), new_key, v.clone()));
            }
        }
        if !moves.is_empty() {
            moved += moves.len() as u64;
            let moves = std::sync::Arc::new(moves);
            tito_engine::transaction(engine, |tx| {
                let moves = moves.clone();
                async move {
                    for (old, new, v) in moves.iter() {
                        tx.delete(old.clone())?;
                        tx.put(new.clone(), v.clone())?;
                    }
                    Ok::<_, RestoreError>(())
                }
            })
            .await?;
        }
        match page.last() {
            Some((k, _)) if page.len() == per_txn => range = range.after(k),
            _ => return Ok(moved),
        }
    }
}
