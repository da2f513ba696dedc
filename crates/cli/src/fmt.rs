//! Human formatting of sizes, durations, rates and times, and printing a command's report.

use std::time::Duration;

use crate::exit::{CliError, Result};

/// `1.5 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `850 ms`, `2.35 s`, `3m 12s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        if s < 3600 {
            format!("{}m {}s", s / 60, s % 60)
        } else {
            format!("{}h {}m", s / 3600, (s % 3600) / 60)
        }
    }
}

/// `12.3k/s` style rate of `n` units over `d`.
pub fn rate(n: u64, d: Duration, unit: &str) -> String {
    let secs = d.as_secs_f64().max(1e-6);
    let r = n as f64 / secs;
    if r >= 1e6 {
        format!("{:.1}M {unit}/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k {unit}/s", r / 1e3)
    } else {
        format!("{r:.0} {unit}/s")
    }
}

/// `12.5 MiB/s`: bytes over a duration.
pub fn byte_rate(n: u64, d: Duration) -> String {
    let per_sec = n as f64 / d.as_secs_f64().max(1e-6);
    format!("{}/s", bytes(per_sec as u64))
}

/// RFC 3339 UTC with milliseconds, or `-` for 0.
pub fn time_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Print a command's report on stdout: pretty JSON with `--json`, else its text form.
pub fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json {
        let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
        s.push('\n');
        out(&s)
    } else {
        out(&text(report))
    }
}

/// Write `text` on stdout, flushed. Unlike `print!`, which panics, a closed pipe ends the
/// command quietly and another failure is an error ([`CliError::stdout`]).
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(CliError::stdout)
}

/// `println!` through [`out`]: evaluates to its `Result`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::fmt::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::fmt::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(2350)), "2.35 s");
        assert_eq!(duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(rate(2000, Duration::from_secs(1), "rec"), "2.0k rec/s");
        assert_eq!(time_ms(1_764_342_245_123), "2025-11-28T15:04:05.123Z");
        assert_eq!(time_ms(0), "-");
    }
}
