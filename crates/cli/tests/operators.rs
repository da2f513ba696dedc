//! What operators do after a bad day, through the real binary: undo in place and keep
//! going, restore a copy beside production, prune with copies around, and copies of a
//! database file that try to ship into their source's store.

mod support;

use std::path::Path;

use support::{ok, stderr, stdout, tito};

fn dump(dir: &Path, db: &str) -> String {
    ok(dir, &["--db", db, "dump"])
}

fn put(dir: &Path, db: &str, k: &str, v: &str) {
    ok(dir, &["--db", db, "kv", "put", k, v]);
}

fn backup(dir: &Path, db: &str) -> String {
    ok(dir, &["--db", db, "--store", "backups", "backup"])
}

fn restore_latest(dir: &Path, target: &str, more: &[&str]) -> String {
    let mut args = vec![
        "--store", "backups", "restore", "--target", target, "--to", "latest",
    ];
    args.extend_from_slice(more);
    ok(dir, &args)
}

fn refused(dir: &Path, args: &[&str], code: i32, needle: &str) -> String {
    let o = tito(dir, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "tito {args:?}: expected exit {code}; stdout {} stderr {err}",
        stdout(&o)
    );
    assert!(
        err.contains(needle),
        "tito {args:?}: {err:?} lacks {needle:?}"
    );
    err
}

/// Undo in place: restore production over itself to before a mistake, keep writing, and
/// every later backup works; the undone history stays restorable on its own timeline.
#[test]
fn undo_in_place_then_backups_continue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "app.redb", "a", "1");
    put(d, "app.redb", "b", "2");
    backup(d, "app.redb");
    let good = dump(d, "app.redb");
    let label = ok(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "good",
        ],
    );
    assert!(label.contains("good"), "{label}");
    put(d, "app.redb", "b", "oops");
    put(d, "app.redb", "c", "oops");
    backup(d, "app.redb");
    let bad = dump(d, "app.redb");

    let out = ok(
        d,
        &[
            "--store",
            "backups",
            "restore",
            "--target",
            "app.redb",
            "--to",
            "label:good",
            "--force",
        ],
    );
    assert!(out.contains("continues database"), "{out}");
    assert_eq!(dump(d, "app.redb"), good);
    put(d, "app.redb", "c", "3");
    // The first backup after the undo and every later one succeed.
    backup(d, "app.redb");
    put(d, "app.redb", "d", "4");
    backup(d, "app.redb");
    let live = dump(d, "app.redb");

    // Latest is the live database; the undone history is there on timeline 1.
    restore_latest(d, "latest.redb", &[]);
    assert_eq!(dump(d, "latest.redb"), live);
    restore_latest(d, "undone.redb", &["--timeline", "1"]);
    assert_eq!(dump(d, "undone.redb"), bad);
    ok(d, &["--store", "backups", "verify"]);

    // Continuous mode goes on too.
    let child = support::continuous_backup(d, "app.redb", &[]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    support::terminate(child);
}

/// A restored copy is a new database: backing it up into production's store is refused,
/// and prune, restore and production's backups are untouched by it.
#[test]
fn a_restored_copy_cannot_harm_its_sources_backups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "prod.redb", "k", "1");
    backup(d, "prod.redb");
    ok(d, &["--db", "prod.redb", "--store", "backups", "snapshot"]);
    put(d, "prod.redb", "k", "2");
    backup(d, "prod.redb");

    let out = restore_latest(d, "copy.redb", &[]);
    assert!(out.contains("a new database"), "{out}");
    put(d, "copy.redb", "k", "copy");
    refused(
        d,
        &["--db", "copy.redb", "--store", "backups", "backup"],
        4,
        "holds backups of database",
    );
    // The copy backs up into a store of its own, from its restored point on.
    ok(
        d,
        &["--db", "copy.redb", "--store", "copy-backups", "backup"],
    );
    put(d, "copy.redb", "k2", "more");
    ok(
        d,
        &["--db", "copy.redb", "--store", "copy-backups", "backup"],
    );
    ok(
        d,
        &[
            "--store",
            "copy-backups",
            "restore",
            "--target",
            "copy2.redb",
            "--to",
            "latest",
        ],
    );
    assert_eq!(dump(d, "copy2.redb"), dump(d, "copy.redb"));

    // Production: prune, keep backing up, restore latest = production.
    ok(d, &["--store", "backups", "prune", "--keep-last", "1"]);
    put(d, "prod.redb", "k", "3");
    backup(d, "prod.redb");
    restore_latest(d, "prod-latest.redb", &[]);
    assert_eq!(dump(d, "prod-latest.redb"), dump(d, "prod.redb"));
}

/// A rebuilt server told to continue the lineage replaces its source: the source's
/// timeline is retired, so the source (had it survived) is refused; prune keeps what the
/// live timeline needs whatever the flags.
#[test]
fn continuing_the_lineage_retires_the_source_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "old.redb", "k", "1");
    backup(d, "old.redb");
    put(d, "old.redb", "k", "2");
    backup(d, "old.redb");

    restore_latest(d, "new.redb", &["--continue-lineage"]);
    put(d, "new.redb", "k", "3");
    backup(d, "new.redb");
    put(d, "old.redb", "k", "zombie");
    refused(
        d,
        &["--db", "old.redb", "--store", "backups", "backup"],
        4,
        "was continued by timeline",
    );
    ok(d, &["--store", "backups", "prune", "--keep-last", "1"]);
    put(d, "new.redb", "k", "4");
    backup(d, "new.redb");
    restore_latest(d, "check.redb", &[]);
    assert_eq!(dump(d, "check.redb"), dump(d, "new.redb"));
}

/// Two live timelines (a copy continued while its source still ships, an operator
/// mistake) make latest ambiguous: restore lists them and takes --timeline.
#[test]
fn latest_with_two_live_timelines_needs_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "a.redb", "k", "1");
    backup(d, "a.redb");
    // Two copies both continue the lineage: each opens its own timeline.
    restore_latest(d, "b.redb", &["--continue-lineage"]);
    restore_latest(d, "c.redb", &["--continue-lineage"]);
    put(d, "b.redb", "k", "b");
    backup(d, "b.redb");
    put(d, "c.redb", "k", "c");
    backup(d, "c.redb");
    let err = refused(
        d,
        &[
            "--store", "backups", "restore", "--target", "x.redb", "--to", "latest",
        ],
        2,
        "ambiguous",
    );
    assert!(
        err.contains("timeline 2") && err.contains("timeline 3"),
        "{err}"
    );
    assert!(
        !d.join("x.redb").exists(),
        "a refused restore creates nothing"
    );
    restore_latest(d, "x.redb", &["--timeline", "3"]);
    assert_eq!(dump(d, "x.redb"), dump(d, "c.redb"));
}

/// A copied database file (a cloned disk) that diverged from its source is refused
/// before it ships or trims anything; the source's backups go on.
#[test]
fn a_copied_database_file_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    put(d, "prod.redb", "a", "1");
    backup(d, "prod.redb");
    std::fs::copy(d.join("prod.redb"), d.join("clone.redb")).unwrap();
    put(d, "prod.redb", "b", "prod");
    backup(d, "prod.redb");
    put(d, "clone.redb", "b", "clone");
    let before = dump(d, "clone.redb");
    refused(
        d,
        &["--db", "clone.redb", "--store", "backups", "backup"],
        4,
        "another copy of this database",
    );
    // Nothing of the clone was trimmed: its own log still holds its write.
    assert_eq!(dump(d, "clone.redb"), before);
    put(d, "prod.redb", "c", "prod");
    backup(d, "prod.redb");
    restore_latest(d, "check.redb", &[]);
    assert_eq!(dump(d, "check.redb"), dump(d, "prod.redb"));
}
