//! Progress reporting for long work, without tying the library to a terminal: the CLI
//! plugs in progress bars, tests and services plug in nothing.

/// Receives progress of a restore or verify.
pub trait Progress: Send + Sync {
    /// A new phase starts, with `total` units of work (0 if unknown).
    fn phase(&self, name: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// All done.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}
