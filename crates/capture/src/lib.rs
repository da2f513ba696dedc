//! Tito: transactional change capture.
//!
//! Applications write through a [`Txn`] (from [`Db::begin`] or [`Db::transaction`]).
//! Each committed transaction that made at least one mutation appends exactly one log
//! record in the same engine transaction, stamped by the engine with a dense,
//! commit-ordered LSN and a non-decreasing commit time. The backup shipper reads and
//! trims the log with [`log`]; restore replays it with [`apply_record`].
//!
//! Modules: [`keys`] (keyspace layout), [`txn`] (capturing transaction), [`log`] (read /
//! trim the log), [`meta`] (database id, timeline), [`replay`] (apply records, scan
//! the backed-up keyspace), [`jsonl`] (the `dump` format), [`load`] (bulk import of it).
#![warn(missing_docs)]

mod db;
mod error;
pub mod jsonl;
pub mod keys;
pub mod load;
pub mod log;
pub mod meta;
pub mod replay;
pub mod txn;

pub use db::Db;
pub use error::{CaptureError, Result};
pub use log::LogBounds;
pub use replay::{apply_record, scan_backed_up, scan_backed_up_in};
pub use tito_format::record::{LogRecord, Mutation};
pub use txn::{PreparedPuts, Txn};
