//! End-to-end tests of the real `tito` binary in temporary directories: the kv round trip,
//! the dump format, the metrics endpoint, and every bad-input case of the issue. Each bad
//! input must give exactly one line on stderr naming the problem, the documented exit
//! code, and leave every file exactly as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod support;

use support::{
    command, continuous_backup, free_addr, ok, restore, scrape, stderr, stdout, terminate, tito,
};

const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;
const REFUSED: i32 = 4;
const INTEGRITY: i32 = 5;

/// Every file under `dir` with its contents; for a database file, its logical contents
/// (`tito dump`), since opening a redb file rewrites its header even for a read.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "redb") {
                let db = path.to_str().expect("utf8");
                out.insert(path.clone(), tito(dir, &["--db", db, "dump"]).stdout);
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// Run a bad input: the exit code, one stderr line containing every `needles`, no change
/// to any file under `dir`.
fn refuses(dir: &Path, args: &[&str], code: i32, needles: &[&str]) -> String {
    let before = tree(dir);
    let o = tito(dir, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "tito {args:?}: {err}");
    // A restore streaming into a new target reports the phases it finished before the
    // failure (plain progress lines): they are not part of the error.
    let progress = |l: &str| {
        ["verify: ", "load snapshot: ", "replay log: "]
            .iter()
            .any(|p| l.starts_with(p))
    };
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !progress(l))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "tito {args:?}: expected one line on stderr, got: {err}"
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "tito {args:?}: {:?} does not mention {n:?}",
            lines[0]
        );
    }
    assert!(
        stdout(&o).is_empty(),
        "tito {args:?} printed: {}",
        stdout(&o)
    );
    let after = tree(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "tito {args:?} created or removed files"
    );
    assert!(before == after, "tito {args:?} modified a file");
    lines[0].to_string()
}

/// A database with a few keys, backed up to `backups` (log + snapshot), then one more
/// write shipped.
fn backed_up() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "app.redb", "kv", "put", "a", "1"]);
    ok(d, &["--db", "app.redb", "kv", "put", "b", "2"]);
    ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    ok(d, &["--db", "app.redb", "kv", "put", "c", "3"]);
    ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    dir
}

#[test]
fn kv_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "kv.redb", "kv", "put", "user:1", "alice"]);
    ok(d, &["--db", "kv.redb", "kv", "put", "user:2", "bob smith"]);
    ok(d, &["--db", "kv.redb", "kv", "put", "other", "x"]);
    assert_eq!(
        ok(d, &["--db", "kv.redb", "kv", "get", "user:2"]),
        "bob smith\n"
    );
    assert_eq!(
        ok(d, &["--db", "kv.redb", "kv", "scan", "--prefix", "user:"]),
        "user:1\talice\nuser:2\tbob smith\n"
    );
    assert_eq!(
        ok(d, &["--db", "kv.redb", "kv", "scan", "--limit", "1"]),
        "other\tx\n"
    );
    ok(d, &["--db", "kv.redb", "kv", "del", "user:1"]);
    refuses(
        d,
        &["--db", "kv.redb", "kv", "get", "user:1"],
        NOT_FOUND,
        &["user:1", "not found"],
    );
    // The environment variable works like the flag.
    let o = command(d, &["kv", "get", "other"])
        .env("TITO_DB", "kv.redb")
        .output()
        .expect("run");
    assert_eq!(stdout(&o), "x\n");
}

#[test]
fn dump_is_sorted_json_lines_with_base64_for_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "d.redb", "kv", "put", "b", "two"]);
    ok(d, &["--db", "d.redb", "kv", "put", "a", "é \"quoted\""]);
    assert_eq!(
        ok(d, &["--db", "d.redb", "dump"]),
        "{\"key\":\"a\",\"value\":\"é \\\"quoted\\\"\"}\n{\"key\":\"b\",\"value\":\"two\"}\n"
    );
    // The demo leaves binary keys and queue state: they come out as base64, sorted.
    ok(d, &["demo", "--dir", "demo"]);
    let text = ok(d, &["--db", "demo/restored.redb", "dump"]);
    let mut keys = Vec::new();
    let mut binary = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let key = match (v.get("key"), v.get("key_b64")) {
            (Some(k), None) => k.as_str().expect("string").as_bytes().to_vec(),
            (None, Some(k)) => {
                binary += 1;
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(k.as_str().expect("string"))
                    .expect("base64")
            }
            other => panic!("line {line} has {other:?}"),
        };
        assert!(
            v.get("value").is_some() != v.get("value_b64").is_some(),
            "{line}"
        );
        keys.push(key);
    }
    assert!(binary > 0, "queue and binary keys are base64");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted by key bytes");
    // Dumping twice gives the same bytes.
    let again = ok(d, &["--db", "demo/restored.redb", "dump"]);
    assert_eq!(text, again);
    // The demo's backup restores with another partition count: every pending event is
    // kept, moved by the stable hash.
    let r: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "--json",
            "--store",
            "demo/backups",
            "restore",
            "--target",
            "p8.redb",
            "--partitions",
            "8",
        ],
    ))
    .expect("restore json");
    let pending = r["events_pending"].as_u64().expect("pending");
    assert!(pending > 0, "{r}");
    assert!(
        r["events_repartitioned"].as_u64().expect("moved") > 0,
        "{r}"
    );
    let queue_lines = |db: &str| {
        ok(d, &["--db", db, "dump"])
            .lines()
            .filter(|l| l.starts_with("{\"key_b64\":\"/3RpdG8AcS8"))
            .count() as u64
    };
    assert_eq!(queue_lines("p8.redb"), pending);
    assert_eq!(queue_lines("demo/live.redb"), pending);
}

#[test]
fn malformed_urls_are_usage_errors() {
    let dir = backed_up();
    let d = dir.path();
    refuses(
        d,
        &["--db", "ftp://host/x", "kv", "get", "a"],
        USAGE,
        &["malformed database URL", "ftp://host/x"],
    );
    refuses(
        d,
        &["--db", "redb://relative.redb", "dump"],
        USAGE,
        &["redb:///abs/path"],
    );
    refuses(d, &["--db", "etcd://", "dump"], USAGE, &["etcd://"]);
    refuses(
        d,
        &["--store", "s3:///nobucket", "status"],
        USAGE,
        &["s3:///nobucket", "missing bucket"],
    );
    refuses(
        d,
        &["--store", "gopher://x", "status"],
        USAGE,
        &["gopher://x"],
    );
    refuses(
        d,
        &restore("mysql://x", &["--to", "latest"]),
        USAGE,
        &["mysql://x"],
    );
    refuses(d, &["status"], USAGE, &["--store", "TITO_STORE"]);
}

#[test]
fn malformed_time_and_label_are_usage_errors() {
    let dir = backed_up();
    let d = dir.path();
    for to in ["2026-13-45T00:00:00Z", "yesterday", "1700000000", "lsn:x"] {
        refuses(
            d,
            &restore("new.redb", &["--to", to]),
            USAGE,
            &["invalid restore target", to],
        );
    }
    refuses(
        d,
        &restore("new.redb", &["--to", "label:a/b"]),
        USAGE,
        &["label:a/b"],
    );
    refuses(
        d,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "no spaces",
        ],
        USAGE,
        &["no spaces"],
    );
}

#[test]
fn unknown_label_is_not_found() {
    let dir = backed_up();
    refuses(
        dir.path(),
        &restore("new.redb", &["--to", "label:nope"]),
        NOT_FOUND,
        &["nope", "tito status"],
    );
}

#[test]
fn missing_store_is_not_found_and_not_created() {
    let dir = backed_up();
    let d = dir.path();
    for cmd in [
        vec!["status"],
        vec!["verify"],
        vec!["prune", "--keep-last", "1"],
    ] {
        let mut args = vec!["--store", "nowhere"];
        args.extend(cmd);
        refuses(d, &args, NOT_FOUND, &["nowhere", "does not exist"]);
    }
    refuses(
        d,
        &["--store", "nowhere", "restore", "--target", "new.redb"],
        NOT_FOUND,
        &["nowhere"],
    );
    // A directory that is not a repository.
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    refuses(
        d,
        &["--store", "empty", "status"],
        NOT_FOUND,
        &["no Tito backup repository"],
    );
    assert!(!d.join("nowhere").exists());
}

#[test]
fn store_of_another_database_is_refused() {
    let dir = backed_up();
    let d = dir.path();
    ok(d, &["--db", "other.redb", "kv", "put", "x", "y"]);
    refuses(
        d,
        &["--db", "other.redb", "--store", "backups", "backup"],
        REFUSED,
        &["holds backups of database", "another store"],
    );
    refuses(
        d,
        &["--db", "other.redb", "--store", "backups", "snapshot"],
        REFUSED,
        &["holds backups of database"],
    );
}

#[test]
fn non_empty_target_needs_force() {
    let dir = backed_up();
    let d = dir.path();
    ok(d, &["--db", "busy.redb", "kv", "put", "keep", "me"]);
    refuses(
        d,
        &restore("busy.redb", &[]),
        REFUSED,
        &["not empty", "--force"],
    );
    assert_eq!(ok(d, &["--db", "busy.redb", "kv", "get", "keep"]), "me\n");
    // With --force it replaces the contents.
    ok(d, &restore("busy.redb", &["--force"]));
    assert_eq!(ok(d, &["--db", "busy.redb", "kv", "get", "c"]), "3\n");
    let o = tito(d, &["--db", "busy.redb", "kv", "get", "keep"]);
    assert_eq!(o.status.code(), Some(NOT_FOUND));
}

#[test]
fn time_before_the_first_snapshot_is_not_found() {
    let dir = backed_up();
    let d = dir.path();
    // A second snapshot, then prune everything before it: the log no longer starts at 1.
    ok(d, &["--db", "app.redb", "--store", "backups", "snapshot"]);
    ok(d, &["--db", "app.redb", "kv", "put", "d", "4"]);
    ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    ok(d, &["--store", "backups", "prune", "--keep-last", "1"]);
    let line = refuses(
        d,
        &restore("new.redb", &["--to", "2001-09-09T01:46:40Z"]),
        NOT_FOUND,
        &["before the earliest restorable point", "tito status"],
    );
    assert!(line.starts_with("tito: "), "{line}");
    // Epoch milliseconds work the same.
    refuses(
        d,
        &restore("new.redb", &["--to", "1000000000000"]),
        NOT_FOUND,
        &["earliest restorable"],
    );
    // And the latest state still restores.
    ok(d, &restore("new.redb", &[]));
    assert_eq!(ok(d, &["--db", "new.redb", "kv", "get", "d"]), "4\n");
}

/// Flip one byte in the middle of every file under `dir` whose name ends with `suffix`.
fn corrupt(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut hit = Vec::new();
    for (path, bytes) in tree(dir) {
        if path.to_string_lossy().ends_with(suffix) && !bytes.is_empty() {
            let mut bytes = bytes;
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(&path, bytes).expect("write");
            hit.push(path);
        }
    }
    assert!(!hit.is_empty(), "no {suffix} file to corrupt");
    hit
}

#[test]
fn corrupted_chunk_is_an_integrity_error_before_anything_is_written() {
    let dir = backed_up();
    let d = dir.path();
    corrupt(&d.join("backups"), ".chunk");
    refuses(
        d,
        &restore("new.redb", &[]),
        INTEGRITY,
        &[".chunk", "tito verify"],
    );
    // verify reports the same object, with the same exit code.
    let o = tito(d, &["--store", "backups", "verify"]);
    assert_eq!(o.status.code(), Some(INTEGRITY), "{}", stderr(&o));
    assert!(stdout(&o).contains("PROBLEM"), "{}", stdout(&o));
    assert!(stderr(&o).contains(".chunk"), "{}", stderr(&o));
    let o = tito(d, &["--json", "--store", "backups", "verify"]);
    assert_eq!(o.status.code(), Some(INTEGRITY));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json report");
    assert!(!report["problems"].as_array().expect("problems").is_empty());
}

#[test]
fn corrupted_segment_is_an_integrity_error() {
    let dir = backed_up();
    let d = dir.path();
    corrupt(&d.join("backups"), ".seg");
    refuses(
        d,
        &restore("new.redb", &["--to", "latest"]),
        INTEGRITY,
        &[".seg"],
    );
}

#[test]
fn status_list_and_restore_speak_json() {
    let dir = backed_up();
    let d = dir.path();
    let status: serde_json::Value = serde_json::from_str(&ok(
        d,
        &["--json", "--db", "app.redb", "--store", "backups", "status"],
    ))
    .expect("status json");
    let tl = &status["timelines"][0];
    assert_eq!(tl["window"]["latest_lsn"], 3);
    assert_eq!(status["live"]["lag"]["records"], 0);
    let list: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "--store", "backups", "list"])).expect("list json");
    assert_eq!(
        list["timelines"][0]["snapshots"].as_array().map(Vec::len),
        Some(1)
    );
    // Unshipped writes show as lag.
    ok(d, &["--db", "app.redb", "kv", "put", "late", "x"]);
    let text = ok(d, &["--db", "app.redb", "--store", "backups", "status"]);
    assert!(text.contains("1 records not shipped yet"), "{text}");
    let restored: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "--json", "--store", "backups", "restore", "--target", "r.redb", "--to", "lsn:2",
        ],
    ))
    .expect("restore json");
    assert_eq!(restored["restored_lsn"], 2);
    assert_eq!(ok(d, &["--db", "r.redb", "kv", "scan"]), "a\t1\nb\t2\n");
    // A dry run creates nothing.
    let before = tree(d);
    let plan = ok(d, &restore("dry.redb", &["--dry-run"]));
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(before, tree(d));
}

#[test]
fn continuous_backup_serves_metrics_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "m.redb", "kv", "put", "k", "v"]);
    let addr = free_addr();
    let child = continuous_backup(d, "m.redb", &["--metrics", &addr]);
    let body = scrape(&addr, |b| b.contains("tito_backup_shipped_lsn 1"));
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for name in [
        "tito_backup_shipped_lsn 1",
        "tito_backup_lag_records 0",
        "tito_backup_lag_seconds",
        "tito_backup_bytes_uploaded_total",
        "tito_backup_snapshot_age_seconds",
        "tito_backup_errors_total 0",
    ] {
        assert!(body.contains(name), "{name} missing: {body}");
    }
    // SIGTERM: ship, release the lease, exit 0.
    terminate(child);
    // The lease was released: a one-shot backup right away is not refused.
    ok(d, &["--db", "m.redb", "--store", "backups", "backup"]);
}

#[test]
fn config_file_supplies_settings_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "c.redb", "kv", "put", "k", "v"]);
    // One-shot runs release their shipper lease: two in a row both work.
    ok(d, &["--db", "c.redb", "--store", "backups", "backup"]);
    ok(d, &["--db", "c.redb", "--store", "backups", "backup"]);
    std::fs::write(
        d.join("tito.toml"),
        "db = \"c.redb\"\nstore = \"backups\"\n[retention]\nkeep_last = 1\n",
    )
    .expect("write");
    assert_eq!(ok(d, &["--config", "tito.toml", "kv", "get", "k"]), "v\n");
    assert!(ok(d, &["--config", "tito.toml", "prune", "--dry-run"]).contains("kept 1 snapshots"));
    // The flag wins over the file.
    refuses(
        d,
        &["--config", "tito.toml", "--store", "elsewhere", "status"],
        NOT_FOUND,
        &["elsewhere"],
    );
    refuses(
        d,
        &["--config", "missing.toml", "status"],
        NOT_FOUND,
        &["missing.toml"],
    );
    std::fs::write(d.join("bad.toml"), "stor = \"x\"\n").expect("write");
    refuses(
        d,
        &["--config", "bad.toml", "status"],
        USAGE,
        &["bad.toml", "stor"],
    );
    refuses(d, &["--store", "backups", "prune"], USAGE, &["--keep-last"]);
}

#[test]
fn prune_warns_of_labels_it_makes_unrestorable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let db = |args: &[&str]| {
        let mut all = vec!["--db", "app.redb", "--store", "backups"];
        all.extend_from_slice(args);
        ok(d, &all)
    };
    db(&["kv", "put", "a", "1"]);
    db(&["backup"]);
    db(&["kv", "put", "b", "2"]);
    db(&["backup"]);
    db(&["restore-point", "before"]);
    db(&["kv", "put", "c", "3"]);
    db(&["backup"]);
    db(&["snapshot"]);
    // keep-last 1 lets the first snapshot and the log up to the second go: "before" sits
    // between them.
    let dry = ok(
        d,
        &[
            "--store",
            "backups",
            "prune",
            "--keep-last",
            "1",
            "--dry-run",
        ],
    );
    assert!(
        dry.contains("warning: restore point \"before\"")
            && dry.contains("would no longer be restorable"),
        "{dry}"
    );
    assert!(!dry.contains("keep: keep"), "{dry}");
    ok(d, &restore("dry.redb", &["--to", "label:before"]));
    let done = ok(d, &["--store", "backups", "prune", "--keep-last", "1"]);
    assert!(
        done.contains("restore point \"before\"") && done.contains("is no longer restorable"),
        "{done}"
    );
    let o = tito(d, &restore("gone.redb", &["--to", "label:before"]));
    assert_ne!(o.status.code(), Some(0), "the label was lost: {o:?}");
    // Nothing left to lose: no warning the second time.
    let again = ok(d, &["--store", "backups", "prune", "--keep-last", "1"]);
    assert!(!again.contains("warning"), "{again}");
}

/// `tito ... | head`: the reader goes away before tito writes. Each command ends quietly
/// with exit 0 instead of panicking in `println!` or failing with "Broken pipe" (exit 6).
#[test]
fn a_closed_stdout_pipe_ends_commands_quietly() {
    let dir = backed_up();
    let d = dir.path();
    // More than a pipe buffer (64 KiB) of dump, so the write must meet the closed pipe.
    let lines: String = (0..4000)
        .map(|i| format!("{{\"key\":\"k{i:05}\",\"value\":\"{}\"}}\n", "v".repeat(40)))
        .collect();
    std::fs::write(d.join("many.jsonl"), lines).expect("write");
    ok(d, &["--db", "app.redb", "load", "--force", "many.jsonl"]);
    for args in [
        &["--db", "app.redb", "dump"][..],
        &["--db", "app.redb", "kv", "scan", "--limit", "100000"],
        &["--store", "backups", "--json", "status"],
        &["--store", "backups", "verify"],
    ] {
        let mut child = command(d, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tito");
        drop(child.stdout.take()); // the reader is gone before tito prints anything
        let out = child.wait_with_output().expect("wait");
        let err = stderr(&out);
        assert!(
            out.status.code() == Some(0) && !err.contains("panicked") && !err.contains("pipe"),
            "tito {args:?} with a closed stdout: {:?}, stderr: {err}",
            out.status.code()
        );
    }
}
