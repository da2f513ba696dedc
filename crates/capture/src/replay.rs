//! Applying log records to an engine, and reading the backed-up keyspace.

use tito_engine::{KeyRange, KeyValue, ReadView, Transaction};
use tito_format::record::{LogRecord, Mutation};

use crate::keys::{self, display_key};
use crate::{CaptureError, Result};

/// Apply `rec`'s mutations, in order, to the raw engine transaction `tx`.
///
/// The transaction writes no log record of its own. Every mutation must stay inside the
/// backed-up keyspace (user keys and queue state); a record that names a log or meta key,
/// or a range overlapping the reserved prefix other than inside the queue subspace, is
/// refused before anything is buffered.
pub fn apply_record(tx: &dyn Transaction, rec: &LogRecord) -> Result<()> {
    check_record(rec)?;
    for m in &rec.mutations {
        match m {
            Mutation::Put { key, value } => tx.put(key.clone(), value.clone())?,
            Mutation::Delete { key } => tx.delete(key.clone())?,
            Mutation::DeleteRange { start, end } => tx.delete_range(&KeyRange {
                start: start.clone(),
                end: end.clone(),
            })?,
        }
    }
    Ok(())
}

/// [`apply_record`] taking the record by value: its keys and values move into the
/// transaction instead of being copied (restore replays millions of them).
pub fn apply_record_owned(tx: &dyn Transaction, rec: LogRecord) -> Result<()> {
    check_record(&rec)?;
    for m in rec.mutations {
        match m {
            Mutation::Put { key, value } => tx.put(key, value)?,
            Mutation::Delete { key } => tx.delete(key)?,
            Mutation::DeleteRange { start, end } => tx.delete_range(&KeyRange { start, end })?,
        }
    }
    Ok(())
}

/// Refuse a record with a mutation outside the backed-up keyspace (what [`apply_record`]
/// checks before it buffers anything).
pub fn check_record(rec: &LogRecord) -> Result<()> {
    for (index, m) in rec.mutations.iter().enumerate() {
        let ok = match m {
            Mutation::Put { key, .. } | Mutation::Delete { key } => keys::is_backed_up(key),
            Mutation::DeleteRange { start, end } => {
                let range = KeyRange {
                    start: start.clone(),
                    end: end.clone(),
                };
                let inside_queue =
                    keys::intersect(&range, &keys::queue_range()).as_ref() == Some(&range);
                inside_queue || !range.overlaps(&keys::reserved_range())
            }
        };
        if !ok {
            let key = match m {
                Mutation::Put { key, .. } | Mutation::Delete { key } => key,
                Mutation::DeleteRange { start, .. } => start,
            };
            return Err(CaptureError::NotBackedUp {
                lsn: rec.lsn,
                index,
                key: display_key(key),
            });
        }
    }
    Ok(())
}

/// Up to `limit` pairs of the backed-up keyspace (user keys and queue state) of `view`,
/// in key order, starting strictly after `after` (from the beginning if `None`).
/// Page through the whole keyspace by passing the last key of each page.
pub async fn scan_backed_up(
    view: &dyn ReadView,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<KeyValue>> {
    let from = match after {
        Some(a) => KeyRange::all().after(a),
        None => KeyRange::all(),
    };
    scan_backed_up_in(view, &from, limit).await
}

/// Up to `limit` pairs of the backed-up keyspace of `view` inside `range`, in key order.
/// Page through the range by passing `range.after(last key)`.
pub async fn scan_backed_up_in(
    view: &dyn ReadView,
    range: &KeyRange,
    limit: usize,
) -> Result<Vec<KeyValue>> {
    let mut out = Vec::new();
    for part in keys::backed_up_ranges()
        .iter()
        .filter_map(|r| keys::intersect(r, range))
    {
        if out.len() >= limit {
            break;
        }
        out.extend(view.scan(&part, limit - out.len()).await?);
    }
    Ok(out)
}
