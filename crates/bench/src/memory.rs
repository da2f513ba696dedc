//! Peak resident memory of a phase, from Linux's per-process high-water mark.
//!
//! `VmHWM` in `/proc/self/status` is the process's peak RSS; writing `5` to
//! `/proc/self/clear_refs` resets it to the current RSS, so the peak after a reset is the
//! peak of the work that followed. Where the reset is refused (older kernels, other OSes)
//! the figure is the process's peak so far, and the report says so.

use serde::{Deserialize, Serialize};

/// Peak memory of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakMemory {
    /// Resident bytes when the phase started.
    pub start_rss: u64,
    /// Highest resident bytes during the phase.
    pub peak_rss: u64,
    /// Whether the high-water mark was reset at the start (otherwise `peak_rss` may
    /// include earlier phases).
    pub reset: bool,
    /// Whether the phase ran in a process of its own (`peak_rss` is then the peak of a
    /// process doing only this work, which is what the memory target bounds).
    #[serde(default)]
    pub isolated: bool,
}

impl PeakMemory {
    /// Bytes the phase added at its peak over the RSS it started with.
    pub fn growth(&self) -> u64 {
        self.peak_rss.saturating_sub(self.start_rss)
    }

    /// The figure the memory target is checked against: the process's peak when the
    /// phase ran alone in it, otherwise the growth over the phase (the RSS at its start
    /// holds earlier phases' state, which a process doing only this work would not).
    pub fn figure(&self) -> u64 {
        if self.isolated {
            self.peak_rss
        } else {
            self.growth()
        }
    }
}

/// Starts measuring a phase's peak.
#[derive(Debug)]
pub struct PeakMeter {
    start_rss: u64,
    reset: bool,
}

impl PeakMeter {
    /// Reset the high-water mark if the OS allows it and note the current RSS.
    pub fn start() -> Self {
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        PeakMeter {
            start_rss: status_kib("VmRSS:").unwrap_or(0) * 1024,
            reset,
        }
    }

    /// The phase's peak so far, `None` where `/proc` is unavailable.
    pub fn finish(&self) -> Option<PeakMemory> {
        let peak = status_kib("VmHWM:")? * 1024;
        Some(PeakMemory {
            start_rss: self.start_rss,
            peak_rss: peak,
            reset: self.reset,
            isolated: false,
        })
    }
}

/// A `kB` field of `/proc/self/status`.
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_covers_an_allocation_made_during_the_phase() {
        let meter = PeakMeter::start();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        if let Some(m) = meter.finish() {
            assert!(m.peak_rss >= 64 << 20, "{m:?}");
            assert!(m.peak_rss >= m.start_rss, "{m:?}");
        }
    }
}
