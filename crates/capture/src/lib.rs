//! Tito: transactional change capture.
pub mod keys;
