//! Tito backup stores: one [`Store`] trait over object stores, three backends and small
//! wrappers.
//!
//! - [`store`]: the trait and its contract (atomic durable puts, create-only puts,
//!   whole/ranged/streamed reads, sorted paginated listings, bulk deletes).
//! - backends, one folder each: [`local`] (`file:///dir` or a bare path), [`memory`]
//!   (`memory://`), and on `object_store` ([`cloud`]: what they share) [`s3`]
//!   (`s3://bucket/prefix`), [`gcs`] (`gs://bucket/prefix`) and [`azure`]
//!   (`az://container/prefix`); [`open()`] picks one from a URL and wraps it in a
//!   [`RetryStore`].
//! - wrappers: [`retry`] (backoff on transient errors), [`fault`] (fault injection),
//!   [`encrypt`] (client-side encryption and authentication of every object).
//! - [`conformance`]: the suite every backend passes, via [`conformance_tests!`];
//!   [`testing`]: where the test servers (S3, the Azure emulator) are, for the tests of
//!   every crate.
#![warn(missing_docs)]

pub mod azure;
pub mod cloud;
pub mod conformance;
pub mod encrypt;
mod error;
pub mod fault;
#[doc(hidden)]
pub mod fuzzing;
pub mod gcs;
mod key;
pub mod local;
pub mod memory;
mod open;
mod range;
pub mod retry;
pub mod s3;
pub mod store;
pub mod testing;

pub use azure::AzureConfig;
pub use cloud::CloudStore;
pub use encrypt::{EncryptStore, Key, KeyId, Keyring, KeyringError};
pub use error::{BoxError, Result, StoreError};
pub use fault::{Fault, FaultPlan, FaultStore};
pub use gcs::GcsConfig;
pub use key::{MAX_KEY_LEN, validate_key, validate_prefix};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use open::{URL_FORMS, open, open_backend, open_with};
pub use retry::{RetryPolicy, RetryStore};
pub use s3::S3Config;
pub use store::{Encryption, ObjectMeta, Store, Upload};
