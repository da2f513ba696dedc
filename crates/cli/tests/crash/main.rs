//! The crash harness: real `tito` processes SIGKILLed at random moments, on redb with the
//! local directory store and with the S3 test server, checked against an oracle the harness
//! keeps itself (the state after every acknowledged commit; a killed writer's in-flight
//! write may be there or not, nothing else).
//!
//! After every kill the interrupted operation runs again and must go on at once (no waiting
//! out a lease); every few kills (`TITO_CRASH_CHECK_EVERY`, default 2, 4 on S3) a full
//! check: the live database equals the oracle, `restore
//! --to latest` equals the live database, a restore to a random earlier acknowledged commit
//! (an LSN or a label) equals the oracle there, and `verify` is clean.
//!
//! - `TITO_CRASH_SEED`: replay a run (each case prints its seed; a failure names it).
//! - `TITO_CRASH_KILLS`: the kills of the whole run (default 320), shared by the cases.
//!
//! S3 comes from the environment or target/s3.env (`scripts/start-s3.sh`); without it the S3
//! cases are skipped, except under CI (`CI=true`), where they fail.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod continuous;
mod kill;
mod oneshot;
mod oracle;
mod tito;
mod writes;

use std::time::Instant;

use tito_store::testing::S3TestServer;

use kill::Dice;
use tito::Env;

/// Each case's share of `TITO_CRASH_KILLS`, out of 100.
const SHARES: [(&str, u64); 4] = [
    ("continuous-local", 35),
    ("continuous-s3", 15),
    ("oneshot-local", 35),
    ("oneshot-s3", 15),
];

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// The run's seed (`TITO_CRASH_SEED`, or fresh) and the case's own, mixed from it and the
/// case's name.
fn seeds(case: &str) -> (u64, u64) {
    let base = env_u64("TITO_CRASH_SEED", rand::random::<u64>() >> 12);
    let mixed = case
        .bytes()
        .fold(base, |h, b| h.rotate_left(7) ^ u64::from(b))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (base, mixed)
}

/// Whether the S3 test server is configured (in CI it must be).
fn s3() -> Option<S3TestServer> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/s3.env");
    let configured =
        std::env::var_os("TITO_TEST_S3_ENDPOINT").is_some() || std::path::Path::new(file).exists();
    if !configured && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("S3 crash case skipped: run scripts/start-s3.sh (in CI it is required)");
        return None;
    }
    Some(S3TestServer::settings())
}

/// Run one case.
fn case(name: &str, s3: Option<S3TestServer>, body: fn(&Env, &mut Dice, u64, u64)) {
    let share = SHARES.iter().find(|(n, _)| *n == name).expect("a case").1;
    let kills = (env_u64("TITO_CRASH_KILLS", 320) * share).div_ceil(100);
    // A check is some ten runs of tito; on the (slow, in-memory) S3 test server fewer.
    let check_every = env_u64("TITO_CRASH_CHECK_EVERY", if s3.is_some() { 4 } else { 2 }).max(1);
    let (seed, own) = seeds(name);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vars) = match &s3 {
        Some(s3) => (
            format!("s3://{}/crash-{:016x}", s3.bucket(), rand::random::<u64>()),
            s3.aws_env(),
        ),
        None => ("backups".to_string(), Vec::new()),
    };
    let env = Env {
        dir,
        store,
        vars,
        name: name.to_string(),
        seed,
        journal: Default::default(),
    };
    eprintln!("crash case {name}: seed {seed} (replay: TITO_CRASH_SEED={seed}), {kills} kills");
    let started = Instant::now();
    let mut dice = Dice::new(own, name);
    body(&env, &mut dice, kills, check_every);
    eprintln!(
        "crash case {name}: {} kills in {:.1?} {:?}; {:?}",
        dice.total_kills(),
        started.elapsed(),
        dice.kills,
        dice.seen
    );
}

#[test]
fn crash_continuous_backup_local_store() {
    case("continuous-local", None, continuous::run);
}

#[test]
fn crash_continuous_backup_s3_store() {
    if let Some(s3) = s3() {
        case("continuous-s3", Some(s3), continuous::run);
    }
}

#[test]
fn crash_one_shot_commands_local_store() {
    case("oneshot-local", None, oneshot::run);
}

#[test]
fn crash_one_shot_commands_s3_store() {
    if let Some(s3) = s3() {
        case("oneshot-s3", Some(s3), oneshot::run);
    }
}

/// A command killed while it creates a new redb file (the first write, or a restore into a
/// new target) leaves no file, or one that opens: redb writes its header after creating the
/// file, and such a half-made file was refused by every later open ("not a redb
/// database"), a forced restore included. Kills swept over the creation.
#[test]
fn crash_while_creating_a_database_file() {
    let env = Env {
        dir: tempfile::tempdir().expect("tempdir"),
        store: "backups".into(),
        vars: Vec::new(),
        name: "creating".into(),
        seed: 0,
        journal: Default::default(),
    };
    let mut unopenable = Vec::new();
    for i in 0..60u64 {
        let file = format!("new-{i}.redb");
        let delay = std::time::Duration::from_micros(i * 1500);
        let child = env.spawn(&["--db", &file, "kv", "put", "a", "1"]);
        kill::kill_after(child, delay);
        let again = env.run(&["--db", &file, "kv", "put", "a", "2"]);
        if !again.status.success() {
            unopenable.push(format!("{delay:?}: {}", support::stderr(&again)));
        }
    }
    assert!(
        unopenable.is_empty(),
        "{} in {}: {unopenable:#?}",
        unopenable.len(),
        env.path().display()
    );
}
