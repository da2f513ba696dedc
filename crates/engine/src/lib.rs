//! The engine layer: an async trait over ordered, transactional key-value engines.
//!
//! Everything above this crate (change capture, queue, backup, restore) talks to
//! an engine only through [`Engine`], [`Transaction`] and [`ReadView`]. Each backend
//! lives in its own module; cross-cutting behaviour (fault injection) is a wrapper.
//!
//! The contract every backend must honour is written on the traits and checked by
//! [`conformance`], which every backend's tests run.

mod error;
mod range;
mod retry;
mod traits;

pub use error::{EngineError, Result};
pub use range::KeyRange;
pub use retry::{run_transaction, transaction, Finish, RetryPolicy, Retryable};
pub use traits::{BoxView, CommitInfo, Engine, KeyValue, Limits, ReadView, Stamp, Transaction, Tx};
