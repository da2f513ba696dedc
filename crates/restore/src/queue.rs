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

/// Prefix where events wait between their old and their new partition (metadata: never
/// backed up; a restore interrupted here is refused as partial anyway).
fn staging_prefix() -> Vec<u8> {
    keys::meta_key("repartition/")
}

/// Move every pending event to the partition the stable hash of its key gives among
/// `partitions`. Returns how many moved. Runs on a restored database before it is used.
///
/// Moves go through a staging area in two passes, so that no move can overwrite an event
/// or delete one that was just moved (an event's new key may be another event's old key,
/// and moves may form cycles). Two events with the same due time and id that would share
/// a partition are refused with an error naming both: event identity must be unique
/// across partitions, and nothing is overwritten.
pub async fn repartition(
    engine: &dyn Engine,
    partitions: u32,
    limits: Limits,
) -> Result<u64, RestoreError> {
    // Three operations per moved event at most (a read-checked delete and a put).
    let per_txn = (limits.max_txn_ops / 3).clamp(1, PAGE);
    let staging = KeyRange::prefix(&staging_prefix());
    // Pass 1: every event whose partition changes moves into staging, keyed by its new key.
    let view = engine.read_view().await?;
    let mut range: KeyRange = keys::queue_range();
    let mut moved = 0;
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
                let mut staged = staging_prefix();
                staged.extend_from_slice(&new_key);
                moves.push((k.clone(), staged, v.clone()));
            }
        }
        if !moves.is_empty() {
            moved += moves.len() as u64;
            let moves = std::sync::Arc::new(moves);
            tito_engine::transaction(engine, |tx| {
                let moves = moves.clone();
                async move {
                    for (old, staged, v) in moves.iter() {
                        if tx.get(staged).await?.is_some() {
                            return Err(duplicate_identity(old, &staged[staging_prefix().len()..]));
                        }
                        tx.delete(old.clone())?;
                        tx.put(staged.clone(), v.clone())?;
                    }
                    Ok::<_, RestoreError>(())
                }
            })
            .await?;
        }
        match page.last() {
            Some((k, _)) if page.len() == per_txn => range = range.after(k),
            _ => break,
        }
    }
    // Pass 2: staged events go to their new keys, never over an event already there.
    loop {
        let view = engine.read_view().await?;
        let page = view.scan(&staging, per_txn).await?;
        if page.is_empty() {
            return Ok(moved);
        }
        let page = std::sync::Arc::new(page);
        tito_engine::transaction(engine, |tx| {
            let page = page.clone();
            async move {
                for (staged, v) in page.iter() {
                    let new_key = staged[staging_prefix().len()..].to_vec();
                    if tx.get(&new_key).await?.is_some() {
                        return Err(duplicate_identity(&new_key, &new_key));
                    }
                    tx.delete(staged.clone())?;
                    tx.put(new_key, v.clone())?;
                }
                Ok::<_, RestoreError>(())
            }
        })
        .await?;
    }
}

fn duplicate_identity(a: &[u8], b: &[u8]) -> RestoreError {
    RestoreError::Refused {
        reason: format!(
            "queue event {} and another pending event have the same due time and id and would \
             share {} after re-partitioning; event ids must be unique across partitions \
             (restore without --partitions to keep both)",
            keys::display_key(a),
            keys::display_key(b)
        ),
    }
}
