//! The check after kills: the live database equals the oracle, restore latest equals the
//! live database, a restore to a random earlier acknowledged commit equals the oracle's state
//! there, and verify is clean.

use serde_json::Value;

use crate::kill::Dice;
use crate::oracle::{Oracle, State};
use crate::tito::{DB, Env};

/// The newest timeline of the store (the live one, once the database's first backup after an
/// in-place restore opened it) and the LSNs it says are restorable, up to `max`.
pub fn restorable(env: &Env, max: u64) -> (u64, Vec<u64>, Value) {
    let status = env.status();
    let timelines = status["timelines"].as_array().expect("timelines");
    let newest = timelines
        .iter()
        .max_by_key(|t| t["timeline"].as_u64())
        .unwrap_or_else(|| env.fail(&format!("no timeline in the store: {status}")));
    let mut lsns = Vec::new();
    for r in newest["restorable"].as_array().expect("restorable") {
        let from = r["from_lsn"].as_u64().expect("from_lsn");
        let to = r["to_lsn"].as_u64().expect("to_lsn").min(max);
        lsns.extend(from..=to);
    }
    let timeline = newest["timeline"].as_u64().expect("timeline");
    (timeline, lsns, status)
}

/// Pick a restorable point at or before the oracle's newest commit: `lsn:N`, or a label on
/// the newest timeline. Returns the `--to` value and its LSN.
pub fn pick_point(env: &Env, dice: &mut Dice, oracle: &Oracle) -> (String, u64) {
    let (timeline, lsns, status) = restorable(env, oracle.lsn());
    if lsns.is_empty() {
        env.fail(&format!(
            "nothing restorable up to LSN {}: {status}",
            oracle.lsn()
        ));
    }
    let labels: Vec<(String, u64)> = status["restore_points"]
        .as_array()
        .expect("restore_points")
        .iter()
        .filter(|p| p["timeline"].as_u64() == Some(timeline))
        .filter_map(|p| {
            let lsn = p["lsn"].as_u64()?;
            lsns.contains(&lsn)
                .then(|| (p["name"].as_str().expect("name").to_string(), lsn))
        })
        .collect();
    if !labels.is_empty() && dice.chance(0.25) {
        let (name, lsn) = labels[dice.below(labels.len() as u64) as usize].clone();
        return (format!("label:{name}"), lsn);
    }
    let lsn = lsns[dice.below(lsns.len() as u64) as usize];
    (format!("lsn:{lsn}"), lsn)
}

/// Restore `to` into the new file `target`; returns the LSN restore says it reached.
pub fn restore_into(env: &Env, target: &str, to: &str, force: bool) -> u64 {
    let mut args = env.store_args(&["--json", "restore", "--target", target, "--to", to]);
    if force {
        args.push("--force");
    }
    let out = env.ok(&args);
    let v: Value = serde_json::from_str(&out).expect("restore JSON");
    v["restored_lsn"].as_u64().expect("restored_lsn")
}

/// Compare two states, failing with the keys that differ.
pub fn same(env: &Env, what: &str, got: &State, want: &State) {
    if got != want {
        let mut diff = Vec::new();
        for k in got.keys().chain(want.keys()) {
            if got.get(k) != want.get(k) && !diff.iter().any(|(d, _, _)| d == k) {
                diff.push((k.clone(), got.get(k).cloned(), want.get(k).cloned()));
            }
        }
        env.fail(&format!("{what}: (key, got, expected) {diff:?}"));
    }
}

/// The whole check. The store is caught up first (`tito backup`, forwarded to the holder
/// when one runs): that run must go on at once, whatever was killed before it.
pub fn check(env: &Env, dice: &mut Dice, oracle: &Oracle, serial: &mut u64) {
    let live = env.must_dump(DB);
    same(env, "live database vs oracle", &live, oracle.now());
    env.ok(&env.db_store(&["backup"]));

    *serial += 1;
    let latest = format!("check-{serial}-latest.redb");
    let lsn = restore_into(env, &latest, "latest", false);
    if lsn != oracle.lsn() {
        env.fail(&format!(
            "restore --to latest reached LSN {lsn}, the oracle's newest commit is LSN {}",
            oracle.lsn()
        ));
    }
    same(
        env,
        "restore latest vs live database",
        &env.must_dump(&latest),
        &live,
    );

    let earlier = format!("check-{serial}-earlier.redb");
    let (to, want) = pick_point(env, dice, oracle);
    let lsn = restore_into(env, &earlier, &to, false);
    if lsn != want {
        env.fail(&format!(
            "restore --to {to} reached LSN {lsn}, expected {want}"
        ));
    }
    same(
        env,
        &format!("restore --to {to} vs oracle at LSN {want}"),
        &env.must_dump(&earlier),
        oracle.at(want),
    );

    let verify = env.ok(&env.store_args(&["verify"]));
    if !verify.contains("no problems") {
        env.fail(&format!("verify: {verify}"));
    }
    for f in [latest, earlier] {
        std::fs::remove_file(env.file(&f)).expect("remove check target");
    }
    env.note(format!(
        "check passed at LSN {} (earlier: {to})",
        oracle.lsn()
    ));
    dice.saw("checks");
}
