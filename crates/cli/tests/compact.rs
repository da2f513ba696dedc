//! `tito compact` through the real binary: small segments become fewer larger ones, a dry
//! run changes nothing, status counts levels, and every point still restores.

mod support;

use support::{ok, restore};

fn segments(status: &str) -> usize {
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("log: "))
        .unwrap_or_else(|| panic!("no log line in {status}"));
    line.trim_start()["log: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn compact_merges_small_segments_and_every_point_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let db = |args: &[&str]| {
        let mut all = vec!["--db", "app.redb", "--store", "backups"];
        all.extend_from_slice(args);
        ok(d, &all)
    };
    // Twelve one-record segments over a few 1 s windows (a run of the binary takes a while),
    // then one after them all, closing every window.
    let n = 12;
    for i in 1..=n {
        db(&["kv", "put", &format!("k{i:02}"), &format!("v{i}")]);
        db(&["backup"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(4100));
    db(&["kv", "put", "last", "x"]);
    db(&["backup"]);
    let status = |d: &std::path::Path| ok(d, &["--store", "backups", "status"]);
    let before = segments(&status(d));
    assert_eq!(before, n + 1, "one segment per backup");

    let compact = |more: &[&str]| {
        let mut args = vec!["--store", "backups", "compact", "--levels", "1s,4s"];
        args.extend_from_slice(more);
        ok(d, &args)
    };
    let dry = compact(&["--dry-run"]);
    assert!(
        dry.contains("level 1: would merge") && dry.contains("dry run"),
        "{dry}"
    );
    assert_eq!(segments(&status(d)), before, "a dry run changes nothing");

    let done = compact(&[]);
    assert!(done.contains("merged"), "{done}");
    let after_status = status(d);
    let after = segments(&after_status);
    assert!(after < before, "{before} -> {after}: {done}");
    assert!(after_status.contains("by level: "), "{after_status}");
    // Nothing left to do.
    let again = compact(&[]);
    assert!(again.contains("merged 0 segments"), "{again}");
    assert_eq!(segments(&status(d)), after);

    let verify = ok(d, &["--store", "backups", "verify"]);
    assert!(!verify.to_lowercase().contains("problem:"), "{verify}");
    // Every point: LSN i holds k01..=ki.
    for lsn in 0..=n {
        let target = format!("r{lsn}.redb");
        let to = format!("lsn:{lsn}");
        ok(d, &restore(&target, &["--to", &to]));
        let dump = ok(d, &["--db", &target, "dump"]);
        let keys = dump.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(keys, lsn, "LSN {lsn}: {dump}");
        for i in 1..=lsn {
            assert!(dump.contains(&format!("v{i}")), "LSN {lsn}: {dump}");
        }
    }
    ok(d, &restore("latest.redb", &[]));
    let latest = ok(d, &["--db", "latest.redb", "dump"]);
    assert!(latest.contains("\"x\"") || latest.contains("x"), "{latest}");
}
