//! Tito: the queue, a transactional outbox.
//!
//! Events are published inside a Tito transaction ([`tito_capture::Txn`]), atomically with
//! the data they describe, into the partition [`hash::partition_for`] picks from the
//! event key. Consumers [`pull`] the due events of one partition in scheduled order,
//! then [`ack`] or [`reschedule`] each. Queue state lives under
//! [`tito_capture::keys::QUEUE_PREFIX`], so it is captured in the log, backed up and
//! restored like user data; restore re-partitions pending events with [`repartition_key`].
//!
//! Modules: [`hash`] (the stable partition hash), [`codec`] (key and value layout),
//! [`queue`] (publish / pull / ack / reschedule).
#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod hash;
pub mod queue;

pub use codec::{Event, QueuedEvent, decode_event, repartition_key};
pub use error::{QueueError, Result};
pub use hash::{partition_for, stable_hash};
pub use queue::{ack, publish, pull, pull_in, reschedule};
