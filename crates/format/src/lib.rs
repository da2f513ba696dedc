//! Byte layouts of everything Tito writes: log records (in the engine, [`stored`], and in segments),
//! log segments, snapshot chunks, snapshot manifests, the repository config, and where
//! each object lives in a store ([`layout`]). See `docs/FORMAT.md`.
//!
//! This crate knows nothing of engines or stores: writers take `std::io::Write`,
//! readers take `std::io::Read`, and both work frame by frame so memory stays bounded.
#![warn(missing_docs)]

pub mod chunk;
mod doc;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_corpus;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
pub mod manifest;
pub mod record;
pub mod repo;
pub mod segment;
pub mod stored;

pub use chunk::{
    ChunkBoundaries, ChunkDigest, ChunkReader, ChunkSummary, ChunkWriter, ContentHash,
    KeyspaceDigest,
};
pub use error::{FormatError, Result};
pub use manifest::{ChunkEntry, Manifest};
pub use repo::{RepoConfig, RepoEncryption, RestorePoint, TimelineHistory};
pub use segment::{RawRecord, SegmentReader, SegmentSummary, SegmentWriter};
