//! The shipper lease: one backup shipper per database.
//!
//! The lease is a key in the engine (`META_PREFIX "backup-lease"`), so it works the same on
//! every engine and across processes. A holder renews it while it works (with every log trim,
//! so after each shipped segment, and in the background while a round takes a snapshot), and
//! gives it up on a clean stop ([`Lease::release`]); a lease not renewed
//! within its TTL expires and another shipper may take it, bumping the epoch. Every
//! destructive step (trimming the log) re-checks the lease *inside the same engine
//! transaction*, so a holder whose lease was taken over is fenced: its trim conflicts or
//! fails instead of deleting records the new holder has not shipped. A lease that expired
//! but that nobody took over is still its holder's (a slow store call must not end a
//! backup): no other shipper ran meanwhile, and a takeover racing the renewal conflicts.
//!
//! On an engine that one process holds exclusively (redb's file lock), a lease left by
//! another process is provably abandoned (that process is gone: we could not have opened
//! the database otherwise), so it is taken over at once instead of waiting out its TTL.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tito_capture::keys::META_PREFIX;
use tito_engine::{Engine, EngineError, Transaction};

use crate::error::BackupError;
use crate::now_ms;

/// The engine key of the lease.
pub fn lease_key() -> Vec<u8> {
    let mut k = META_PREFIX.to_vec();
    k.extend_from_slice(b"backup-lease");
    k
}

/// What the lease key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// Random id of the holding shipper.
    pub owner: String,
    /// Incremented each time the lease changes hands (fencing token).
    pub epoch: u64,
    /// When the lease runs out unless renewed (ms since the epoch).
    pub expires_ms: u64,
    /// Random id of the holder's process (empty in leases written before this field).
    #[serde(default)]
    pub process: String,
    /// The holder's process id, for messages.
    #[serde(default)]
    pub pid: u32,
}

/// This process's random id, recorded in the leases it takes.
pub fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

/// A shipper's handle on the lease.
#[derive(Clone)]
pub struct Lease {
    engine: Arc<dyn Engine>,
    owner: String,
    ttl: Duration,
}

impl Lease {
    /// A handle for a new shipper with a random owner id.
    pub fn new(engine: Arc<dyn Engine>, ttl: Duration) -> Self {
        let owner = format!("{:016x}", rand::random::<u64>());
        Lease { engine, owner, ttl }
    }

    /// This shipper's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Take the lease, or renew it if we hold it. Fails with [`BackupError::LeaseHeld`]
    /// when another live shipper holds it.
    pub async fn acquire(&self) -> Result<LeaseState, BackupError> {
        let owner = self.owner.clone();
        let ttl = self.ttl;
        let exclusive = self.engine.process_exclusive();
        tito_engine::transaction(self.engine.as_ref(), |tx| {
            let owner = owner.clone();
            async move {
                let now = now_ms();
                let current = read_lease(tx.as_ref()).await?;
                let epoch = match &current {
                    Some(l) if l.owner == owner => l.epoch,
                    Some(l) if exclusive && l.process != process_token() => {
                        tracing::warn!(
                            holder = %l.owner,
                            pid = l.pid,
                            "taking over the backup lease at once: the process that held it is \
                             gone (this process holds the database exclusively)"
                        );
                        l.epoch + 1
                    }
                    Some(l) if l.expires_ms > now => {
                        return Err(BackupError::LeaseHeld {
                            owner: l.owner.clone(),
                            expires_in_ms: l.expires_ms - now,
                        });
                    }
                    Some(l) => l.epoch + 1,
                    None => 1,
                };
                let state = LeaseState {
                    owner,
                    epoch,
                    expires_ms: now + ttl.as_millis() as u64,
                    process: process_token().to_string(),
                    pid: std::process::id(),
                };
                write_lease(tx.as_ref(), &state)?;
                Ok(state)
            }
        })
        .await
    }

    /// Wait until the lease can be taken (polling), then take it.
    pub async fn acquire_waiting(&self) -> Result<LeaseState, BackupError> {
        loop {
            match self.acquire().await {
                Err(BackupError::LeaseHeld { expires_in_ms, .. }) => {
                    tokio::time::sleep(Duration::from_millis(expires_in_ms.clamp(50, 1000))).await
                }
                other => return other,
            }
        }
    }

    /// Give the lease up if we hold it, so the next shipper can start at once. The delete is
    /// guarded by a compare on the owner in the same transaction: a holder whose lease was
    /// taken over never removes the new holder's lease.
    pub async fn release(&self) -> Result<(), BackupError> {
        let owner = self.owner.clone();
        tito_engine::transaction(self.engine.as_ref(), |tx| {
            let owner = owner.clone();
            async move {
                if let Some(l) = read_lease(tx.as_ref()).await? {
                    if l.owner == owner {
                        tx.delete(lease_key())?;
                    }
                }
                Ok::<_, BackupError>(())
            }
        })
        .await
    }

    /// Extend our lease by the TTL. Fails with [`BackupError::LeaseLost`] if another shipper
    /// holds it or nobody does: only a holder renews (an expired lease nobody took over is
    /// still ours, since no other shipper can have run meanwhile).
    pub async fn renew(&self) -> Result<LeaseState, BackupError> {
        let this = self.clone();
        tito_engine::transaction(self.engine.as_ref(), |tx| {
            let this = this.clone();
            async move {
                let current = read_lease(tx.as_ref()).await?;
                match current {
                    Some(l) if l.owner == this.owner => this.extend_in(tx.as_ref(), l),
                    other => Err(lost(other.as_ref())),
                }
            }
        })
        .await
    }

    /// Inside `tx`, fail unless this shipper still holds the lease, and extend it by the
    /// TTL. The shipper trims the log with this after every segment: the check fences a
    /// holder whose lease was taken over, the extension keeps a long round within its lease.
    pub async fn renew_in(&self, tx: &dyn Transaction) -> Result<LeaseState, BackupError> {
        let held = self.live_in(tx).await?;
        self.extend_in(tx, held)
    }

    /// Inside `tx`, fail unless this shipper still holds the lease. Destructive steps call
    /// this in the same transaction as their writes, which fences a holder whose lease was
    /// taken over.
    pub async fn check_in(&self, tx: &dyn Transaction) -> Result<(), BackupError> {
        self.live_in(tx).await.map(|_| ())
    }

    async fn live_in(&self, tx: &dyn Transaction) -> Result<LeaseState, BackupError> {
        // Expired but not taken over is still ours: nobody else shipped meanwhile, and a
        // takeover committing now conflicts with this transaction, which read the lease.
        match read_lease(tx).await? {
            Some(l) if l.owner == self.owner => Ok(l),
            other => Err(lost(other.as_ref())),
        }
    }

    fn extend_in(&self, tx: &dyn Transaction, held: LeaseState) -> Result<LeaseState, BackupError> {
        let renewed = LeaseState {
            // Never shorten: a clock step back must not expire a lease early.
            expires_ms: held.expires_ms.max(now_ms() + self.ttl.as_millis() as u64),
            ..held
        };
        write_lease(tx, &renewed)?;
        Ok(renewed)
    }
}

/// The error for a lease someone else holds, or nobody.
fn lost(current: Option<&LeaseState>) -> BackupError {
    match current {
        Some(l) => BackupError::LeaseLost {
            reason: format!("shipper {} holds it now", l.owner),
        },
        None => BackupError::LeaseLost {
            reason: "no lease is held".into(),
        },
    }
}

async fn read_lease(tx: &dyn Transaction) -> Result<Option<LeaseState>, BackupError> {
    match tx.get(&lease_key()).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BackupError::Engine(EngineError::Corrupt(format!("backup lease: {e}")))),
    }
}

fn write_lease(tx: &dyn Transaction, state: &LeaseState) -> Result<(), BackupError> {
    let bytes = serde_json::to_vec(state).expect("lease state serializes");
    tx.put(lease_key(), bytes)?;
    Ok(())
}
