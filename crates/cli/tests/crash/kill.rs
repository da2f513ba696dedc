//! Killing a process at a random moment, and the random choices of a case (seeded).

use std::collections::BTreeMap;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How a run ended.
pub enum Ended {
    /// It finished before the kill.
    Exited(Output),
    /// SIGKILL ended it.
    Killed,
}

/// Let `child` run for `delay`, then SIGKILL it unless it has ended; wait for it either way
/// (after the wait, whatever it committed is on disk and nothing more will be).
pub fn kill_after(mut child: Child, delay: Duration) -> Ended {
    let deadline = Instant::now() + delay;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Ended::Exited(child.wait_with_output().expect("wait"));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    Ended::Killed
}

/// SIGKILL `child` now and wait for it.
pub fn kill_now(child: &mut Child) {
    // It may have exited already; kill() then fails harmlessly.
    let _ = child.kill();
    child.wait().expect("wait");
}

/// A case's random choices and what it counted.
pub struct Dice {
    /// The seeded generator.
    pub rng: StdRng,
    /// Typical run time of each operation (moving average of uninterrupted runs), so kills
    /// land anywhere inside a run, startup included.
    typical: BTreeMap<&'static str, Duration>,
    /// Kills per operation.
    pub kills: BTreeMap<&'static str, u64>,
    /// Other counts (outcomes seen after kills).
    pub seen: BTreeMap<String, u64>,
    /// The case, for progress lines.
    case: String,
}

impl Dice {
    /// Seeded, for `case`.
    pub fn new(seed: u64, case: &str) -> Self {
        Dice {
            case: case.to_string(),
            rng: StdRng::seed_from_u64(seed),
            typical: BTreeMap::new(),
            kills: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    /// A delay somewhere in a typical run of `op` (a little past its end sometimes, so
    /// some runs finish before the kill).
    pub fn delay(&mut self, op: &'static str) -> Duration {
        let typical = self
            .typical
            .get(op)
            .copied()
            .unwrap_or(Duration::from_millis(150));
        let max = (typical.as_micros() as u64 * 11 / 10).max(1);
        Duration::from_micros(self.rng.random_range(0..=max))
    }

    /// Remember how long an uninterrupted run of `op` took.
    pub fn timed(&mut self, op: &'static str, took: Duration) {
        let avg = self.typical.entry(op).or_insert(took);
        *avg = (*avg * 3 + took) / 4;
    }

    /// Count a kill of `op`.
    pub fn killed(&mut self, op: &'static str) {
        *self.kills.entry(op).or_default() += 1;
        let total = self.total_kills();
        if total % 100 == 0 {
            eprintln!("crash case {}: {total} kills", self.case);
        }
    }

    /// Count an outcome.
    pub fn saw(&mut self, what: impl Into<String>) {
        *self.seen.entry(what.into()).or_default() += 1;
    }

    /// All kills so far.
    pub fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.random_range(0..n)
    }
}
