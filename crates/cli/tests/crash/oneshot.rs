//! Case 2: one-shot `tito backup`, `snapshot`, `prune`, `compact`, `restore-point` and `restore` (into
//! a new target, and `--force` in place over the live database) killed at random moments,
//! then run again at once; a killed restore's target must be absent, empty, refused as
//! partial, or complete — never anything else.

use std::time::Instant;

use crate::check::{check, pick_point, restore_into, same};
use crate::kill::{Dice, Ended, kill_after};
use crate::oracle::{Oracle, State};
use crate::support;
use crate::tito::{DB, Env, refused_as_partial};
use crate::writes::{ack, killed, next_write};

/// The operations, with their weights.
const OPS: [(&str, u64); 7] = [
    ("backup", 3),
    ("snapshot", 2),
    ("prune", 2),
    ("compact", 2),
    ("restore-point", 1),
    ("restore", 2),
    ("restore in place", 1),
];

fn pick(dice: &mut Dice) -> &'static str {
    let total: u64 = OPS.iter().map(|(_, w)| w).sum();
    let mut n = dice.below(total);
    for (op, w) in OPS {
        if n < w {
            return op;
        }
        n -= w;
    }
    unreachable!()
}

/// Run `args` killed at a random moment of a typical run of `op`; if it finished first, it
/// must have succeeded (or `allowed` its exit code).
fn kill_during(env: &Env, dice: &mut Dice, op: &'static str, args: &[&str]) -> bool {
    let delay = dice.delay(op);
    match kill_after(env.spawn(args), delay) {
        Ended::Killed => {
            dice.killed(op);
            env.note(format!("{args:?} killed after {delay:?}"));
            true
        }
        Ended::Exited(o) if o.status.success() => {
            env.note(format!("{args:?} finished before the kill at {delay:?}"));
            false
        }
        Ended::Exited(o) => env.fail(&format!(
            "tito {args:?}, not killed, failed ({:?}): {}",
            o.status.code(),
            support::stderr(&o)
        )),
    }
}

/// Run `args` again to its end (timed for the kill delays); its output.
fn again(env: &Env, dice: &mut Dice, op: &'static str, args: &[&str]) -> std::process::Output {
    let started = Instant::now();
    let o = env.run(args);
    dice.timed(op, started.elapsed());
    o
}

/// What a killed restore left in `target`: the name of the state, and whether a re-run
/// needs `--force`.
fn left_behind(
    env: &Env,
    dice: &mut Dice,
    target: &str,
    before: Option<&State>,
    want: &State,
) -> bool {
    let state = left_state(env, dice, target, before, want);
    env.note(format!("{target} after the run: force needed {state}"));
    state
}

fn left_state(
    env: &Env,
    dice: &mut Dice,
    target: &str,
    before: Option<&State>,
    want: &State,
) -> bool {
    if !env.file(target).exists() {
        dice.saw("restore target after the run: no target file");
        return false;
    }
    match env.dump(target) {
        Err(o) if refused_as_partial(&o) => {
            dice.saw("restore target after the run: target refused as partial");
            // Every other way in refuses it too.
            let get = env.run(&["--db", target, "kv", "get", "k00"]);
            if !refused_as_partial(&get) {
                env.fail(&format!("kv get on a partial {target}: {}", support::stderr(&get)));
            }
            true
        }
        Err(o) => env.fail(&format!(
            "a killed restore left {target} failing to open, not as partial ({:?}): {}",
            o.status.code(),
            support::stderr(&o)
        )),
        Ok(got) if &got == want => {
            dice.saw("restore target after the run: complete");
            true
        }
        Ok(got) if Some(&got) == before => {
            dice.saw("restore target after the run: target untouched");
            before.is_some_and(|b| !b.is_empty())
        }
        Ok(got) if got.is_empty() => {
            dice.saw("restore target after the run: empty target");
            false
        }
        Ok(got) => env.fail(&format!(
            "a killed restore left {target} open as if complete with {} keys, neither before ({:?}) nor the restored state ({} keys)",
            got.len(),
            before.map(|b| b.len()),
            want.len()
        )),
    }
}

/// Run the case with `kills` kills, checking every `check_every`.
pub fn run(env: &Env, dice: &mut Dice, kills: u64, check_every: u64) {
    let mut oracle = Oracle::new();
    let mut serial = 0;
    let mut checks = 0;
    let mut labels = 0;
    for _ in 0..4 {
        let w = next_write(dice, &oracle, &mut serial);
        ack(env, dice, &mut oracle, &w);
    }
    env.ok(&env.db_store(&["backup"]));
    let mut since_check = 0;
    while dice.total_kills() < kills {
        for _ in 0..dice.below(4) {
            let w = next_write(dice, &oracle, &mut serial);
            ack(env, dice, &mut oracle, &w);
        }
        if dice.chance(0.2) {
            let w = next_write(dice, &oracle, &mut serial);
            killed(env, dice, &mut oracle, &w);
        }
        let op = pick(dice);
        match op {
            "backup" | "snapshot" | "prune" | "compact" => {
                let more: &[&str] = match op {
                    "backup" => &["backup"],
                    "snapshot" => &["snapshot"],
                    // Short windows, so a run of the harness closes many.
                    "compact" => &["compact", "--levels", "1s,4s"],
                    _ => &["prune", "--keep-last", "2"],
                };
                let args = env.db_store(more);
                kill_during(env, dice, op, &args);
                // The next run goes on at once: a killed backup's lease is taken over.
                let o = again(env, dice, op, &args);
                if !o.status.success() {
                    env.fail(&format!(
                        "tito {args:?} after a kill failed ({:?}): {}",
                        o.status.code(),
                        support::stderr(&o)
                    ));
                }
            }
            "restore-point" => {
                labels += 1;
                let name = format!("point-{labels}");
                let args = env.db_store(&["restore-point", &name]);
                kill_during(env, dice, op, &args);
                let o = again(env, dice, op, &args);
                match o.status.code() {
                    Some(0) => {}
                    // The first run got as far as writing the label (checked below).
                    Some(4) => dice.saw("restore-point: the first run wrote the label"),
                    code => env.fail(&format!(
                        "restore-point {name} after a kill ({code:?}): {}",
                        support::stderr(&o)
                    )),
                }
                let status = env.status();
                let point = status["restore_points"]
                    .as_array()
                    .expect("restore_points")
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .unwrap_or_else(|| env.fail(&format!("label {name} missing")))
                    .clone();
                if point["lsn"].as_u64() != Some(oracle.lsn()) {
                    env.fail(&format!(
                        "label {name} at {point}, newest commit is LSN {}",
                        oracle.lsn()
                    ));
                }
            }
            "restore" => {
                serial += 1;
                let target = format!("restored-{serial}.redb");
                let (to, lsn) = pick_point(env, dice, &oracle);
                let want = oracle.at(lsn).clone();
                let args = env.store_args(&["restore", "--target", &target, "--to", &to]);
                // Killed or not, what is there decides how to run it again (a run that
                // finished first left it complete: --force replaces it).
                kill_during(env, dice, op, &args);
                let force = left_behind(env, dice, &target, None, &want);
                let started = Instant::now();
                let got = restore_into(env, &target, &to, force);
                dice.timed(op, started.elapsed());
                if got != lsn {
                    env.fail(&format!(
                        "restore --to {to} reached LSN {got}, expected {lsn}"
                    ));
                }
                same(
                    env,
                    &format!("re-run restore --to {to}"),
                    &env.must_dump(&target),
                    &want,
                );
                std::fs::remove_file(env.file(&target)).expect("remove target");
            }
            _ => {
                let (to, lsn) = pick_point(env, dice, &oracle);
                let want = oracle.at(lsn).clone();
                let before = oracle.now().clone();
                let args = env.store_args(&["restore", "--target", DB, "--to", &to, "--force"]);
                kill_during(env, dice, "restore in place", &args);
                left_behind(env, dice, DB, Some(&before), &want);
                let started = Instant::now();
                let got = restore_into(env, DB, &to, true);
                dice.timed("restore in place", started.elapsed());
                if got != lsn {
                    env.fail(&format!(
                        "restore in place --to {to} reached LSN {got}, expected {lsn}"
                    ));
                }
                oracle.rewind(lsn);
                same(
                    env,
                    &format!("in place, restore --to {to}"),
                    &env.must_dump(DB),
                    oracle.now(),
                );
                // Its first backup opens the new timeline.
                env.ok(&env.db_store(&["backup"]));
            }
        }
        since_check += 1;
        if since_check >= check_every {
            check(env, dice, &oracle, &mut checks);
            since_check = 0;
        }
    }
    check(env, dice, &oracle, &mut checks);
}
