//! Case 1: `tito backup --continuous` holds the database while writes go through its
//! control socket; the holder (and sometimes the writer) is killed at random moments, and a
//! new holder must come up at once (the killed one's lease is taken over: redb's file lock
//! proves it gone).

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::check::check;
use crate::kill::{Dice, kill_now};
use crate::oracle::Oracle;
use crate::tito::{DB, Env};
use crate::writes::{ack, killed, next_write, settle, start};

/// Start a holder, its log appended to `holder.log` (a pipe nobody reads could fill up and
/// stall it).
fn spawn_holder(env: &Env) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.file("holder.log"))
        .expect("holder.log");
    let args = env.db_store(&[
        "backup",
        "--continuous",
        "--interval",
        "100ms",
        "--snapshot-every-records",
        "12",
    ]);
    env.command(&args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tito backup --continuous")
}

/// The last lines of the holders' log.
fn log_tail(env: &Env) -> String {
    let log = std::fs::read_to_string(env.file("holder.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Start a holder and wait until it serves its socket; it must not exit (a lease it could
/// not take would end it with exit code 4).
fn holder(env: &Env) -> Child {
    let mut child = spawn_holder(env);
    let sock = env.file(&format!("{DB}.tito.sock"));
    for _ in 0..1200 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            env.fail(&format!(
                "the restarted continuous backup exited ({status}):\n{}",
                log_tail(env)
            ));
        }
        // A killed holder's socket stays until the new one replaces it: ask who answers.
        if std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) && answers(env)
        {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    env.fail(&format!("no holder serves {}", sock.display()));
}

/// Whether a live holder answers on the socket (a stale one refuses connections).
fn answers(env: &Env) -> bool {
    std::os::unix::net::UnixStream::connect(env.file(&format!("{DB}.tito.sock"))).is_ok()
}

/// Run the case with `kills` kills, checking every `check_every`.
pub fn run(env: &Env, dice: &mut Dice, kills: u64, check_every: u64) {
    let mut oracle = Oracle::new();
    let mut serial = 0;
    let mut checks = 0;
    for _ in 0..3 {
        let w = next_write(dice, &oracle, &mut serial);
        ack(env, dice, &mut oracle, &w);
    }
    // Kills land anywhere from a write's start to past its end, shipping included.
    dice.timed("holder", Duration::from_millis(250));
    let mut current = holder(env);
    let mut since_check = 0;
    while dice.total_kills() < kills {
        for _ in 0..dice.below(3) {
            let w = next_write(dice, &oracle, &mut serial);
            ack(env, dice, &mut oracle, &w);
        }
        // A write in flight (forwarded, or waiting for the socket) when the holder dies.
        let w = next_write(dice, &oracle, &mut serial);
        let mut writer = start(env, &w);
        let delay = dice.delay("holder");
        std::thread::sleep(delay);
        kill_now(&mut current);
        dice.killed("continuous backup");
        env.note(format!("holder killed {delay:?} after starting {w:?}"));
        let writer_killed = dice.chance(0.3);
        if writer_killed {
            kill_now(&mut writer);
            dice.killed("writer");
        }
        let out = writer.wait_with_output().expect("wait writer");
        settle(env, dice, &mut oracle, &w, (!writer_killed).then_some(out));

        // No holder now: the CLI opens the file itself; kill such a writer too.
        if dice.chance(0.3) {
            let w = next_write(dice, &oracle, &mut serial);
            killed(env, dice, &mut oracle, &w);
        }
        // Sometimes kill a holder while it starts up.
        if dice.chance(0.15) {
            let mut starting = spawn_holder(env);
            let delay = dice.delay("holder");
            std::thread::sleep(delay);
            kill_now(&mut starting);
            dice.killed("continuous backup (starting)");
        }
        current = holder(env);
        since_check += 1;
        if since_check >= check_every {
            check(env, dice, &oracle, &mut checks);
            since_check = 0;
        }
    }
    crate::support::terminate(current);
    check(env, dice, &oracle, &mut checks);
    let log = std::fs::read_to_string(env.file("holder.log")).unwrap_or_default();
    let takeovers = log.matches("taking over the backup lease at once").count() as u64;
    dice.seen.insert("lease takeovers logged".into(), takeovers);
}
