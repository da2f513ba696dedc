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

/// The keys `k000`.. a dump holds, in order, or a panic naming what else it holds.
fn numbered_keys(dump: &str) -> Vec<usize> {
    dump.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("dump line");
            let key = v["key"].as_str().expect("key").to_string();
            key.strip_prefix('k')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected key {key} in {dump}"))
        })
        .collect()
}

/// What operators do: a continuous backup ships a writing application's commits while, from
/// other terminals, `tito compact` merges the log and `tito restore` makes copies. Every copy
/// restores, and holds exactly the first keys written (a whole prefix of the history, however
/// the segments it planned were merged under it); once the holder stops, a restore equals it.
#[test]
fn restores_beside_a_running_backup_and_compactions_each_hold_a_prefix_of_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "k000", "0"]);
    let mut child = support::continuous_backup(d, "app.redb", &[]);
    // Its first shipping round makes the store restorable.
    while !support::stdout(&support::tito(d, &["--store", "backups", "status"]))
        .contains("restorable: from")
    {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the holder exited before its first backup: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::sync::atomic::AtomicUsize::new(1);
    std::thread::scope(|s| {
        // The application: one key per commit, through the holder's control socket.
        s.spawn(|| {
            let mut i = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 1000 {
                let o = support::tito(
                    d,
                    &[
                        "--db",
                        "app.redb",
                        "kv",
                        "put",
                        &format!("k{i:03}"),
                        &i.to_string(),
                    ],
                );
                if o.status.success() {
                    written.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                    i += 1;
                } else {
                    // The holder's socket appears once it is up.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        });
        // The operator's compactions, on 1 s windows, over and over.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let o = support::tito(d, &["--store", "backups", "compact", "--levels", "1s,2s"]);
                assert!(o.status.success(), "compact: {}", support::stderr(&o));
            }
        });
        let mut copies = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(12) {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the holder exited: {status}");
            }
            let target = format!("copy{copies}.redb");
            let o = support::tito(d, &restore(&target, &["--to", "latest"]));
            assert!(
                o.status.success(),
                "restore {copies}: {}",
                support::stderr(&o)
            );
            let keys = numbered_keys(&ok(d, &["--db", &target, "dump"]));
            let acked = written.load(std::sync::atomic::Ordering::SeqCst);
            assert!(
                keys.iter().copied().eq(0..keys.len()) && keys.len() <= acked,
                "copy {copies} holds {keys:?}, not a prefix of the {acked} keys written"
            );
            copies += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(copies >= 3, "only {copies} restores ran");
    });
    support::terminate(child);
    let live = ok(d, &["--db", "app.redb", "dump"]);
    let merged = ok(d, &["--store", "backups", "status"]);
    assert!(
        merged.contains("by level: "),
        "nothing was merged: {merged}"
    );
    ok(d, &restore("last.redb", &["--to", "latest"]));
    assert_eq!(ok(d, &["--db", "last.redb", "dump"]), live);
    let verify = ok(d, &["--store", "backups", "verify"]);
    assert!(!verify.to_lowercase().contains("problem:"), "{verify}");
}
