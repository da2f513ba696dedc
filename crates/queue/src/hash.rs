//! The stable partition hash.
//!
//! `partition = xxh3_64(event key bytes, seed 0) % partition_count`, where `xxh3_64` is
//! XXH3's 64-bit variant (the `xxhash-rust` crate, identical to the reference C
//! `XXH3_64bits`). The function is specified by its algorithm, not by a Rust release, so
//! it never changes: `std`'s `DefaultHasher` is not used because its output may differ
//! between Rust versions. The tests pin the hashes of fixed keys.

use crate::{QueueError, Result};

/// The stable 64-bit hash of an event key: XXH3-64 with seed 0.
pub fn stable_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The partition of an event key among `partitions` partitions.
pub fn partition_for(key: &[u8], partitions: u32) -> Result<u32> {
    if partitions == 0 {
        return Err(QueueError::ZeroPartitions);
    }
    // The remainder is below `partitions`, so it fits in u32.
    Ok((stable_hash(key) % u64::from(partitions)) as u32)
}
