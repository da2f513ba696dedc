//! The CLI beside a live process holding a redb database (`tito backup --continuous`, or
//! the `tito` library's example program): commands are forwarded over the control socket
//! with the same output and exit codes; a killed holder's socket is found stale; URL typos
//! are refused before anything is created.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::{continuous_backup, ok, restore, stderr, terminate, tito};

const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;

fn socket(dir: &Path, db: &str) -> PathBuf {
    dir.join(format!("{db}.tito.sock"))
}

/// Wait until a holder serves the socket of `db` (it appears once the database is open).
fn wait_for_socket(dir: &Path, db: &str, child: &mut Child) {
    let sock = socket(dir, db);
    for _ in 0..600 {
        if std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the holder exited early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no control socket at {}", sock.display());
}

/// Wait until the continuous backup `child` has shipped to `backups` (which it does while
/// holding its lease).
fn wait_for_first_backup(dir: &Path, child: &mut Child) {
    for _ in 0..300 {
        let status = tito(dir, &["--store", "backups", "status"]);
        if String::from_utf8_lossy(&status.stdout).contains("restorable: from") {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the holder exited before its first backup: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the holder shipped nothing within 30 s");
}

fn holder(dir: &Path, db: &str) -> Child {
    let mut child = continuous_backup(dir, db, &[]);
    wait_for_socket(dir, db, &mut child);
    child
}

#[test]
fn the_cli_works_beside_continuous_backup_and_restores_what_it_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "greeting", "hello"]);
    let child = holder(d, "app.redb");

    // Without the forwarding each of these fails: redb's lock is held by the backup.
    ok(d, &["--db", "app.redb", "kv", "put", "user:1", "alice"]);
    assert_eq!(
        ok(d, &["--db", "app.redb", "kv", "get", "greeting"]),
        "hello\n"
    );
    assert_eq!(
        ok(d, &["--db", "app.redb", "--json", "kv", "get", "user:1"]),
        "{\"key\":\"user:1\",\"value\":\"alice\"}\n"
    );
    let point = ok(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "before-deploy",
        ],
    );
    assert!(point.contains("restore point \"before-deploy\""), "{point}");
    ok(d, &["--db", "app.redb", "kv", "put", "greeting", "oops"]);
    ok(d, &["--db", "app.redb", "kv", "del", "user:1"]);
    ok(d, &["--db", "app.redb", "kv", "put", "user:2", "bob"]);
    let missing = tito(d, &["--db", "app.redb", "kv", "get", "user:1"]);
    assert_eq!(
        missing.status.code(),
        Some(NOT_FOUND),
        "{}",
        stderr(&missing)
    );
    assert_eq!(
        ok(d, &["--db", "app.redb", "kv", "scan", "--prefix", "user:"]),
        "user:2\tbob\n"
    );
    let status = ok(d, &["--db", "app.redb", "--store", "backups", "status"]);
    assert!(status.contains("live database app.redb"), "{status}");
    let once = ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    assert!(
        once.contains("the store holds the log through LSN"),
        "{once}"
    );
    let snap = ok(d, &["--db", "app.redb", "--store", "backups", "snapshot"]);
    assert!(snap.starts_with("snapshot "), "{snap}");
    // Nothing changed since: the holder's incremental snapshot reuses every chunk, and
    // `--full` (forwarded as `snapshot_full`) reuses none.
    let again = ok(d, &["--db", "app.redb", "--store", "backups", "snapshot"]);
    assert!(again.contains("1 chunks (1 reused)"), "{again}");
    let full = ok(
        d,
        &[
            "--db", "app.redb", "--store", "backups", "snapshot", "--full",
        ],
    );
    assert!(full.contains("1 chunks (0 reused)"), "{full}");
    let live_dump = ok(d, &["--db", "app.redb", "dump"]);
    assert!(
        live_dump.contains("\"greeting\",\"value\":\"oops\""),
        "{live_dump}"
    );

    terminate(child);
    assert!(
        !socket(d, "app.redb").exists(),
        "the socket goes with its holder"
    );
    // The same dump, opened directly now.
    assert_eq!(ok(d, &["--db", "app.redb", "dump"]), live_dump);
    ok(d, &restore("latest.redb", &["--to", "latest"]));
    assert_eq!(ok(d, &["--db", "latest.redb", "dump"]), live_dump);
    ok(d, &restore("label.redb", &["--to", "label:before-deploy"]));
    assert_eq!(
        ok(d, &["--db", "label.redb", "kv", "get", "greeting"]),
        "hello\n"
    );
    assert_eq!(
        ok(d, &["--db", "label.redb", "kv", "get", "user:1"]),
        "alice\n"
    );
}

#[test]
fn forwarded_commands_keep_their_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "a", "1"]);
    let child = holder(d, "app.redb");
    let reused = tito(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "x",
        ],
    );
    assert!(reused.status.success(), "{}", stderr(&reused));
    // A reused label is refused (4) by the holder, as it is locally.
    let again = tito(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "x",
        ],
    );
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    // Another store while the holder ships to `backups`: the lease is the holder's (4).
    let other = tito(d, &["--db", "app.redb", "--store", "other", "backup"]);
    assert_eq!(other.status.code(), Some(4), "{}", stderr(&other));
    // A second continuous backup of the same database is refused too.
    let second = tito(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "backup",
            "--continuous",
        ],
    );
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    assert!(stderr(&second).contains("held by the running Tito process"));
    terminate(child);
}

#[test]
fn a_killed_holders_socket_is_stale_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "a", "1"]);
    let mut child = holder(d, "app.redb");
    let sock = socket(d, "app.redb");
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only socket");
    // The socket is served from the moment the file opens, before the shipper takes its
    // lease: kill the holder only once it has shipped (a restorable point exists), so that
    // it leaves a lease behind for the next holder to take over.
    wait_for_first_backup(d, &mut child);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(sock.exists(), "SIGKILL leaves the socket behind");
    // Nobody listens: the CLI opens the file itself and removes the stale socket.
    assert_eq!(ok(d, &["--db", "app.redb", "kv", "get", "a"]), "1\n");
    assert!(!sock.exists(), "stale socket removed");
    // The killed holder's shipper lease is provably abandoned (redb's lock is ours now):
    // a new holder takes it over at once and says so, serving the CLI.
    let child = holder(d, "app.redb");
    ok(d, &["--db", "app.redb", "kv", "put", "b", "2"]);
    assert_eq!(ok(d, &["--db", "app.redb", "kv", "get", "b"]), "2\n");
    let log = terminate(child);
    assert!(
        log.contains("taking over the backup lease at once"),
        "the takeover is logged: {log}"
    );
}

/// Every file under `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("ls") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            out.insert(path.clone(), 0);
            out.extend(tree(&path));
        } else {
            out.insert(path, entry.metadata().expect("meta").len());
        }
    }
    out
}

#[test]
fn url_typos_are_refused_naming_the_url_meant_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "a", "1"]);
    let before = tree(d);
    let stores = [
        ("s3:/b/x", "did you mean s3://b/x?"),
        ("s3:b", "did you mean s3://b?"),
        ("s3//b/x", "did you mean s3://b/x?"),
        ("file:/x", "did you mean file:///x?"),
        ("https://h/b", "did you mean s3://b?endpoint=https://h?"),
        ("s4://b", "did you mean s3://b?"),
        ("backups:old", "did you mean ./backups:old?"),
    ];
    for (url, hint) in stores {
        for args in [
            vec!["--db", "app.redb", "--store", url, "backup"],
            vec!["--db", "app.redb", "--store", url, "snapshot"],
            vec!["--store", url, "status"],
            vec!["--db", "app.redb", "--store", url, "backup", "--continuous"],
        ] {
            let o = tito(d, &args);
            assert_eq!(o.status.code(), Some(USAGE), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(hint), "{args:?}: {}", stderr(&o));
        }
    }
    let dbs = [
        ("redb:/x", "did you mean redb:///x?"),
        ("etcd:/h:1", "did you mean etcd://h:1?"),
        ("app:db", "did you mean ./app:db?"),
    ];
    for (url, hint) in dbs {
        for args in [
            vec!["--db", url, "kv", "put", "k", "v"],
            vec!["--db", url, "--store", "backups", "backup"],
        ] {
            let o = tito(d, &args);
            assert_eq!(o.status.code(), Some(USAGE), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(hint), "{args:?}: {}", stderr(&o));
        }
    }
    let o = tito(d, &restore("redb:/x", &["--to", "latest"]));
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    assert_eq!(tree(d), before, "nothing created");
    // `./` makes such a name a path.
    ok(d, &["--db", "./app:db", "kv", "put", "k", "v"]);
    assert!(d.join("app:db").exists());
}

/// The example program of the `tito` crate, built: `cargo test --workspace` builds the
/// examples; a narrower run builds it here once (cargo's lock makes that safe).
fn shop_binary() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/examples");
    let bin = target.join("shop");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "tito", "--example", "shop"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example shop");
        assert!(built.success());
    }
    bin
}

#[test]
fn the_example_program_runs_with_the_cli_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut shop = Command::new(shop_binary())
        .args(["shop.redb", "backups", "10"])
        .current_dir(d)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shop");
    let mut lines = BufReader::new(shop.stdout.take().expect("stdout")).lines();
    let ready = lines.next().expect("a line").expect("read");
    assert!(ready.starts_with("ready 10 5 "), "{ready}");

    assert_eq!(
        ok(d, &["--db", "shop.redb", "kv", "get", "order:0007"]),
        "paid\n"
    );
    ok(
        d,
        &[
            "--db",
            "shop.redb",
            "kv",
            "put",
            "order:0011",
            "paid-by-cli",
        ],
    );
    let status = ok(d, &["--db", "shop.redb", "--store", "backups", "status"]);
    assert!(
        status.contains("restore points:\n  orders-written"),
        "{status}"
    );
    let dump = ok(d, &["--db", "shop.redb", "dump"]);
    // 11 orders and 5 pending events.
    assert_eq!(dump.lines().count(), 16, "{dump}");

    drop(shop.stdin.take()); // the shop stops when its stdin closes
    let stopped = lines.next().expect("a line").expect("read");
    assert!(stopped.starts_with("stopped "), "{stopped}");
    let out = shop.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    ok(d, &restore("copy.redb", &["--to", "latest"]));
    assert_eq!(ok(d, &["--db", "copy.redb", "dump"]), dump);
    ok(d, &restore("label.redb", &["--to", "label:orders-written"]));
    let labelled = ok(d, &["--db", "label.redb", "dump"]);
    assert_eq!(labelled.lines().count(), 15);
    assert!(!labelled.contains("order:0011"));
}

#[test]
fn forwarded_errors_carry_the_same_line_and_hint_as_local_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "a", "1"]);
    ok(d, &["--db", "app.redb", "--store", "other", "backup"]);
    // A damaged repository: its document is no longer what was written.
    std::fs::write(d.join("other/tito.repo"), "garbage\n").expect("damage");
    let commands: [&[&str]; 2] = [
        &["--db", "app.redb", "--store", "other", "backup"],
        &["--db", "app.redb", "--store", "other", "snapshot"],
    ];
    let local: Vec<_> = commands.iter().map(|args| tito(d, args)).collect();
    let child = holder(d, "app.redb");
    let forwarded: Vec<_> = commands.iter().map(|args| tito(d, args)).collect();
    terminate(child);
    for ((args, local), forwarded) in commands.iter().zip(&local).zip(&forwarded) {
        assert_eq!(local.status.code(), Some(5), "{args:?}: {}", stderr(local));
        assert!(
            stderr(local).contains("run `tito verify`"),
            "{args:?}: {}",
            stderr(local)
        );
        assert_eq!(forwarded.status.code(), local.status.code(), "{args:?}");
        assert_eq!(stderr(forwarded), stderr(local), "{args:?}");
    }
}
