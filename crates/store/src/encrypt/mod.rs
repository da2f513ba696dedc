//! Client-side encryption at rest: [`EncryptStore`] seals every object it writes with
//! XChaCha20-Poly1305 (in 64 KiB chunks, the object's key bound as associated data) and
//! authenticates every byte it reads; [`Keyring`] holds the keys (the newest seals, all
//! open). Encryption is just another wrapper: it sits outside [`crate::RetryStore`], so a
//! retried write resends the same sealed bytes.

pub mod envelope;
pub mod keyring;
mod store;

pub use keyring::{Key, KeyId, Keyring, KeyringError};
pub use store::{CHUNK_NAMING_CONTEXT, EncryptStore, SCHEME};
