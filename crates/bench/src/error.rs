//! Errors of a benchmark run: each names the phase and the object that failed.

use thiserror::Error;

/// Why a benchmark run stopped.
#[derive(Debug, Error)]
pub enum BenchError {
    /// An engine call failed.
    #[error("{phase}: engine error: {source}")]
    Engine {
        /// The phase running.
        phase: &'static str,
        /// The engine's error.
        #[source]
        source: tito_engine::EngineError,
    },
    /// A store call failed.
    #[error("{phase}: store error on {object:?}: {source}")]
    Store {
        /// The phase running.
        phase: &'static str,
        /// The object (or prefix) involved.
        object: String,
        /// The store's error.
        #[source]
        source: tito_store::StoreError,
    },
    /// A capture (Tito transaction) call failed.
    #[error("{phase}: capture error: {source}")]
    Capture {
        /// The phase running.
        phase: &'static str,
        /// The capture layer's error.
        #[source]
        source: tito_capture::CaptureError,
    },
    /// The backup service failed.
    #[error("{phase}: backup error: {source}")]
    Backup {
        /// The phase running.
        phase: &'static str,
        /// The backup service's error.
        #[source]
        source: tito_backup::BackupError,
    },
    /// A restore failed.
    #[error("{phase}: restore error: {source}")]
    Restore {
        /// The phase running.
        phase: &'static str,
        /// The restore's error.
        #[source]
        source: tito_restore::RestoreError,
    },
    /// Local file I/O (dump file, temp dirs, the `zstd` binary) failed.
    #[error("{phase}: I/O error on {path}: {source}")]
    Io {
        /// The phase running.
        phase: &'static str,
        /// The file or command involved.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// JSON encoding or decoding failed (the baseline's chunk format).
    #[error("{phase}: JSON error in {object:?}: {source}")]
    Json {
        /// The phase running.
        phase: &'static str,
        /// The chunk or entry involved.
        object: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// An option or URL is unusable.
    #[error("bad benchmark option: {0}")]
    Options(String),
    /// A restore did not reproduce the dataset: the benchmark refuses to report a speed
    /// for a wrong result.
    #[error("{phase}: restored data differs from the source: {detail}")]
    Mismatch {
        /// The phase whose restore was wrong.
        phase: &'static str,
        /// What differed.
        detail: String,
    },
    /// A phase run in a child process failed.
    #[error("child process: {detail}")]
    Child {
        /// What the child reported on stderr, or why it could not run.
        detail: String,
    },
    /// A backup of an etcd cluster by watching (`tito-etcd-watch`) failed.
    #[error("{phase}: etcd watch backup error: {source}")]
    Watch {
        /// The phase running.
        phase: &'static str,
        /// The watch backup's error.
        #[source]
        source: tito_etcd_watch::WatchError,
    },
    /// A private etcd cluster the etcd phase starts did not come up.
    #[error("{phase}: private etcd cluster: {detail}")]
    Cluster {
        /// The phase running.
        phase: &'static str,
        /// What failed, with the end of the member's log when there is one.
        detail: String,
    },
    /// A background task panicked or was cancelled.
    #[error("{phase}: background task failed: {detail}")]
    Task {
        /// The phase running.
        phase: &'static str,
        /// The join error.
        detail: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Attach a phase name to lower-level errors.
pub(crate) trait Ctx<T> {
    /// Map the error into a [`BenchError`] of `phase`.
    fn ctx(self, phase: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, tito_engine::EngineError> {
    fn ctx(self, phase: &'static str) -> Result<T> {
        self.map_err(|source| BenchError::Engine { phase, source })
    }
}

impl<T> Ctx<T> for std::result::Result<T, tito_capture::CaptureError> {
    fn ctx(self, phase: &'static str) -> Result<T> {
        self.map_err(|source| BenchError::Capture { phase, source })
    }
}

impl<T> Ctx<T> for std::result::Result<T, tito_backup::BackupError> {
    fn ctx(self, phase: &'static str) -> Result<T> {
        self.map_err(|source| BenchError::Backup { phase, source })
    }
}

impl<T> Ctx<T> for std::result::Result<T, tito_restore::RestoreError> {
    fn ctx(self, phase: &'static str) -> Result<T> {
        self.map_err(|source| BenchError::Restore { phase, source })
    }
}

/// Attach a phase and an object name to store errors.
pub(crate) fn store_err(
    phase: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(tito_store::StoreError) -> BenchError {
    let object = object.into();
    move |source| BenchError::Store {
        phase,
        object,
        source,
    }
}

/// Attach a phase and a path to I/O errors.
pub(crate) fn io_err(
    phase: &'static str,
    path: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.into();
    move |source| BenchError::Io {
        phase,
        path,
        source,
    }
}
