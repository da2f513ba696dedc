//! The engine layer: an async trait over ordered, transactional key-value engines.
//!
//! Everything above this crate (change capture, queue, backup, restore) talks to
//! an engine only through [`Engine`], [`Transaction`] and [`ReadView`]. Each backend
//! lives in its own module; cross-cutting behaviour (fault injection) is a wrapper.
//!
//! The contract every backend must honour is written on the traits and checked by
//! [`conformance`], which every backend's tests run.

#![warn(missing_docs)]

mod error;
mod range;
mod retry;
mod traits;

pub mod conformance;
pub mod fault;
pub mod local;
pub mod memory;
mod open;
pub mod redb;

pub use error::{EngineError, Result};
pub use open::{SUPPORTED_SCHEMES, open};
pub use range::KeyRange;
pub use retry::{Finish, RetryPolicy, Retryable, run_transaction, transaction};
pub use traits::{BoxView, CommitInfo, Engine, KeyValue, Limits, ReadView, Stamp, Transaction, Tx};
