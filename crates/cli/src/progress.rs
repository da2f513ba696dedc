//! Progress of long work: indicatif bars when stderr is a terminal, plain lines otherwise
//! (at most one per second per phase, plus one when the phase ends).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports phases of work and their advance on stderr.
pub struct Reporter {
    tty: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    done: u64,
    started: Option<Instant>,
    last_line: Option<Instant>,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

impl Reporter {
    /// Bars if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Reporter {
        Reporter::with_tty(std::io::stderr().is_terminal())
    }

    /// Choose bars (`true`) or plain lines (`false`).
    pub fn with_tty(tty: bool) -> Reporter {
        Reporter {
            tty,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a phase of `total` units (0 if unknown); ends the previous one.
    pub fn phase(&self, name: &str, total: u64) {
        let mut s = self.lock();
        self.end(&mut s);
        s.name = name.to_string();
        s.total = total;
        s.done = 0;
        s.started = Some(Instant::now());
        s.last_line = Some(Instant::now());
        if self.tty {
            let bar = if total > 0 {
                ProgressBar::new(total)
            } else {
                ProgressBar::new_spinner()
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let template = if total > 0 {
                "{msg:>12} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})"
            } else {
                "{msg:>12} {spinner} {pos} ({per_sec})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(name.to_string());
            s.bar = Some(bar);
        }
        // Plain mode says nothing until there is progress to report: a command that fails
        // at once prints only its error line.
    }

    /// `n` more units are done.
    pub fn advance(&self, n: u64) {
        let mut s = self.lock();
        s.done += n;
        if let Some(bar) = &s.bar {
            bar.inc(n);
        } else if !self.tty
            && s.last_line
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let of = if s.total > 0 {
                format!("/{}", s.total)
            } else {
                String::new()
            };
            eprintln!("{}: {}{of}", s.name, s.done);
            s.last_line = Some(Instant::now());
        }
    }

    /// End the current phase.
    pub fn finish(&self) {
        let mut s = self.lock();
        self.end(&mut s);
    }

    /// Drop the current phase without a summary (the command failed).
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.started = None;
        if let Some(bar) = s.bar.take() {
            bar.abandon();
        }
    }

    fn end(&self, s: &mut State) {
        let Some(started) = s.started.take() else {
            return;
        };
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: done, {} in {}",
            s.name,
            s.done,
            crate::fmt::duration(started.elapsed())
        );
    }
}

impl tito_restore::Progress for Reporter {
    fn phase(&self, name: &str, total: u64) {
        Reporter::phase(self, name, total);
    }

    fn advance(&self, n: u64) {
        Reporter::advance(self, n);
    }

    fn finish(&self) {
        Reporter::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_counts() {
        let r = Reporter::with_tty(false);
        r.phase("load", 10);
        r.advance(4);
        r.advance(6);
        assert_eq!(r.lock().done, 10);
        r.phase("replay", 0);
        assert_eq!(r.lock().done, 0);
        r.finish();
        assert!(r.lock().started.is_none());
    }
}
