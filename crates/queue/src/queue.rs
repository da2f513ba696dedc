//! Publishing, pulling, acknowledging and rescheduling events.

use tito_capture::{Db, Txn};

use crate::Result;
use crate::codec::{Event, QueuedEvent, decode_event, due_range, event_key};
use crate::hash::partition_for;

/// Publish `event` inside `txn` into partition `partition_for(event.key, partitions)`.
/// It becomes visible when `txn` commits, in the same log record as `txn`'s other writes.
/// Publishing an event with the same id and due time into the same partition replaces it.
pub fn publish(txn: &Txn, partitions: u32, event: Event) -> Result<QueuedEvent> {
    let queued = QueuedEvent {
        partition: partition_for(&event.key, partitions)?,
        event,
    };
    txn.put_queue(queued.engine_key(), queued.engine_value())?;
    Ok(queued)
}

/// Up to `limit` events of `partition` due at or before `now_ms`, in scheduled order
/// (ties by id), read in `txn` (so a consumer can pull and ack in one transaction).
pub async fn pull_in(
    txn: &Txn,
    partition: u32,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<QueuedEvent>> {
    let pairs = txn.scan_queue(&due_range(partition, now_ms), limit).await?;
    pairs.iter().map(|(k, v)| decode_event(k, v)).collect()
}

/// Like [`pull_in`], in a read-only transaction of its own. Pulling removes nothing.
pub async fn pull(db: &Db, partition: u32, now_ms: u64, limit: usize) -> Result<Vec<QueuedEvent>> {
    let txn = db.begin().await?;
    let out = pull_in(&txn, partition, now_ms, limit).await;
    txn.rollback().await?;
    out
}

/// Remove `event` from its partition. Returns `false` if it was no longer there (acked
/// or rescheduled by someone else). The event is read first, so two transactions acking
/// the same event conflict and only one of them sees `true`.
pub async fn ack(txn: &Txn, event: &QueuedEvent) -> Result<bool> {
    let key = event.engine_key();
    if txn.get_queue(&key).await?.is_none() {
        return Ok(false);
    }
    txn.delete_queue(key)?;
    Ok(true)
}

/// Move `event` to due time `new_time_ms`, counting one more attempt. Returns the moved
/// event, or `None` if it was no longer there.
pub async fn reschedule(
    txn: &Txn,
    event: &QueuedEvent,
    new_time_ms: u64,
) -> Result<Option<QueuedEvent>> {
    let old = event.engine_key();
    if txn.get_queue(&old).await?.is_none() {
        return Ok(None);
    }
    let mut moved = event.clone();
    moved.event.scheduled_at_ms = new_time_ms;
    moved.event.attempts = moved.event.attempts.saturating_add(1);
    let new = event_key(moved.partition, new_time_ms, &moved.event.id);
    if new != old {
        txn.delete_queue(old)?;
    }
    txn.put_queue(new, moved.engine_value())?;
    Ok(Some(moved))
}
