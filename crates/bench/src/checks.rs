//! Consistency checks of a report's JSON (`tito bench --json`), shared by the tests of this
//! crate and of the CLI: every figure is where it should be, finite and not negative, and
//! every rate agrees with the work and time it was computed from. They panic, naming the
//! figure, on the first disagreement.

use serde_json::Value;

use crate::report::{TargetCheck, Verdict};

const MIB: f64 = 1024.0 * 1024.0;

/// The number at a dotted `path` of `v` (panics if it is missing or not a number).
pub fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

/// Panics unless `a` and `b` agree to 1e-9 relative (both come from the same f64 figures).
pub fn close(what: &str, a: f64, b: f64) {
    assert!(
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12),
        "{what}: {a} vs {b}"
    );
}

/// Panics unless every number anywhere in `v` is finite and not negative.
pub fn all_numbers_sane(v: &Value, path: &str) {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().expect("f64");
            assert!(f.is_finite() && f >= 0.0, "{path} = {f}");
        }
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| all_numbers_sane(v, &format!("{path}.{k}"))),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| all_numbers_sane(v, &format!("{path}[{i}]"))),
        _ => {}
    }
}

/// A timed figure at `path` ([`crate::Timed`]): positive pairs, bytes and time, and rates
/// that are work / time. Returns its pairs and its MiB/s.
pub fn timed(r: &Value, path: &str) -> (u64, f64) {
    let (pairs, bytes, secs) = (
        num(r, &format!("{path}.pairs")),
        num(r, &format!("{path}.bytes")),
        num(r, &format!("{path}.secs")),
    );
    assert!(
        pairs > 0.0 && bytes > 0.0 && secs > 0.0,
        "{path}: {pairs} pairs, {bytes} bytes, {secs} s"
    );
    let mib_s = num(r, &format!("{path}.mib_per_s"));
    close(&format!("{path}.mib_per_s"), mib_s, bytes / MIB / secs);
    close(
        &format!("{path}.pairs_per_s"),
        num(r, &format!("{path}.pairs_per_s")),
        pairs / secs,
    );
    (pairs as u64, mib_s)
}

/// Panics unless `t`'s verdict follows from its measured value and bound.
pub fn verdict_follows(t: &TargetCheck) {
    let met = if t.at_least {
        t.measured >= t.bound
    } else {
        t.measured <= t.bound
    };
    assert_eq!(t.verdict == Verdict::Pass, met, "{t:?}");
}
