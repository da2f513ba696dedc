//! Database metadata under [`crate::keys::META_PREFIX`]: the database id and the
//! current timeline. Meta keys are written with raw engine transactions: they are
//! neither captured in the log nor backed up.

use tito_engine::{Engine, transaction};

use crate::keys::{META_DATABASE_ID, META_TIMELINE, display_key};
use crate::{CaptureError, Result};

/// The timeline of a database that was never restored.
pub const DEFAULT_TIMELINE: u64 = 1;

fn corrupt(key: &[u8], problem: impl Into<String>) -> CaptureError {
    CaptureError::CorruptMeta {
        key: display_key(key),
        problem: problem.into(),
    }
}

fn decode_id(raw: Vec<u8>) -> Result<String> {
    String::from_utf8(raw)
        .map_err(|e| corrupt(META_DATABASE_ID, format!("database id is not UTF-8: {e}")))
}

async fn read(engine: &dyn Engine, key: &'static [u8]) -> Result<Option<Vec<u8>>> {
    transaction(engine, |tx| async move {
        let v = tx.get(key).await?;
        Ok::<_, CaptureError>(v)
    })
    .await
}

async fn write(engine: &dyn Engine, key: &'static [u8], value: Vec<u8>) -> Result<()> {
    transaction(engine, |tx| {
        let value = value.clone();
        async move { Ok::<_, CaptureError>(tx.put(key.to_vec(), value)?) }
    })
    .await
}

/// The database id, if one was created.
pub async fn database_id(engine: &dyn Engine) -> Result<Option<String>> {
    read(engine, META_DATABASE_ID)
        .await?
        .map(decode_id)
        .transpose()
}

/// The database id, created (random, 32 lowercase hex digits) if there is none yet.
/// Concurrent first opens agree on one id: the loser of the race conflicts and re-reads.
pub async fn ensure_database_id(engine: &dyn Engine) -> Result<String> {
    transaction(engine, |tx| async move {
        if let Some(raw) = tx.get(META_DATABASE_ID).await? {
            return decode_id(raw);
        }
        let id = format!("{:032x}", rand::random::<u128>());
        tx.put(META_DATABASE_ID.to_vec(), id.clone().into_bytes())?;
        Ok(id)
    })
    .await
}

/// Set the database id (restore uses it to give a restored database its source's id).
pub async fn set_database_id(engine: &dyn Engine, id: &str) -> Result<()> {
    write(engine, META_DATABASE_ID, id.as_bytes().to_vec()).await
}

/// The current timeline ([`DEFAULT_TIMELINE`] if none was set).
pub async fn timeline(engine: &dyn Engine) -> Result<u64> {
    match read(engine, META_TIMELINE).await? {
        None => Ok(DEFAULT_TIMELINE),
        Some(raw) => {
            let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
                corrupt(
                    META_TIMELINE,
                    format!("expected 8 bytes, found {}", raw.len()),
                )
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Set the current timeline.
pub async fn set_timeline(engine: &dyn Engine, timeline: u64) -> Result<()> {
    write(engine, META_TIMELINE, encode_timeline(timeline)).await
}

/// True if an unfinished restore left its marker in this database.
pub async fn restore_in_progress(engine: &dyn Engine) -> Result<bool> {
    Ok(read(engine, crate::keys::META_RESTORE_IN_PROGRESS)
        .await?
        .is_some())
}

/// The stored form of a timeline number (for writes that must share a transaction).
pub fn encode_timeline(timeline: u64) -> Vec<u8> {
    timeline.to_be_bytes().to_vec()
}
