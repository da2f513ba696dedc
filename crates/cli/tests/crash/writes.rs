//! The harness's writes through `tito --db app.redb kv ...` (forwarded to a holder when
//! one runs), and settling a write whose writer or holder was killed.

use std::process::Output;
use std::time::Instant;

use crate::kill::{Dice, Ended, kill_after};
use crate::oracle::{Oracle, Write};
use crate::support;
use crate::tito::{DB, Env};

/// Keys are few, so writes overwrite and delete each other's keys.
const KEYS: u64 = 24;

/// A random write: a put of a new unique value, or a delete of a key that exists.
pub fn next_write(dice: &mut Dice, oracle: &Oracle, serial: &mut u64) -> Write {
    *serial += 1;
    let existing: Vec<&String> = oracle.now().keys().collect();
    if !existing.is_empty() && dice.chance(0.2) {
        let k = existing[dice.below(existing.len() as u64) as usize].clone();
        return Write::Del(k);
    }
    let k = format!("k{:02}", dice.below(KEYS));
    Write::Put(k, format!("v{serial}"))
}

/// The arguments of `w` against the case's database.
fn args(w: &Write) -> Vec<String> {
    let mut a = vec!["--db".to_string(), DB.to_string()];
    a.extend(w.args());
    a
}

/// Run `w` to its end; it must succeed (an acknowledged commit).
pub fn ack(env: &Env, dice: &mut Dice, oracle: &mut Oracle, w: &Write) {
    let a = args(w);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let started = Instant::now();
    env.ok(&a);
    env.note(format!("{w:?} acknowledged"));
    dice.timed("write", started.elapsed());
    oracle.commit(w);
}

/// Start `w` in the background.
pub fn start(env: &Env, w: &Write) -> std::process::Child {
    let a = args(w);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    env.spawn(&a)
}

/// A write killed at a random moment (no holder: the writer itself has the file).
pub fn killed(env: &Env, dice: &mut Dice, oracle: &mut Oracle, w: &Write) {
    let delay = dice.delay("write");
    match kill_after(start(env, w), delay) {
        Ended::Exited(o) => settle(env, dice, oracle, w, Some(o)),
        Ended::Killed => {
            dice.killed("writer");
            settle(env, dice, oracle, w, None)
        }
    }
}

/// Record `w` after its writer ended with `out` (`None`: killed). Exit 0 is an
/// acknowledged commit; otherwise it may or may not have committed, and the database
/// (read once every process that could still commit it is gone) decides between exactly
/// those two states.
pub fn settle(env: &Env, dice: &mut Dice, oracle: &mut Oracle, w: &Write, out: Option<Output>) {
    if let Some(o) = &out {
        if o.status.success() {
            oracle.commit(w);
            dice.saw("write acknowledged beside a kill");
            return;
        }
    }
    let before = oracle.now().get(w.key()).cloned();
    let now = env.get(w.key());
    env.note(format!("{w:?} unacknowledged: key now {now:?}"));
    if w.landed(now.as_deref()) {
        oracle.commit(w);
        dice.saw("unacknowledged write found committed");
    } else if now == before {
        dice.saw("unacknowledged write found absent");
    } else {
        env.fail(&format!(
            "after the unacknowledged {w:?} ({}) key {} holds {now:?}: neither the state before ({before:?}) nor after",
            out.as_ref()
                .map(|o| format!("exit {:?}: {}", o.status.code(), support::stderr(o)))
                .unwrap_or_else(|| "killed".into()),
            w.key()
        ));
    }
}
