//! Byte layouts of everything Tito writes: log records (in the engine and in segments),
//! log segments, snapshot chunks, snapshot manifests, the repository config, and where
//! each object lives in a store ([`layout`]). See `docs/FORMAT.md`.
//!
//! This crate knows nothing of engines or stores: writers take `std::io::Write`,
//! readers take `std::io::Read`, and both work frame by frame so memory stays bounded.
#![warn(missing_docs)]

pub mod layout;
pub mod manifest;
pub mod record;
pub mod repo;
