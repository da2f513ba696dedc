//! `tito load` through the real binary: `dump | load | dump` is identical on a database with
//! binary keys and queue state (from a file, from stdin, streamed), the loaded pairs are
//! captured (a backup of the loaded database restores them), a bad line is named by its
//! number with nothing committed, and a non-empty database is refused without `--force`.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use support::{command, ok, stderr, stdout, tito};

const USAGE: i32 = 2;
const REFUSED: i32 = 4;

/// `tito args` with `input` on its stdin.
fn with_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tito");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn dump(dir: &Path, db: &str) -> String {
    ok(dir, &["--db", db, "dump"])
}

/// The demo's live database (queue state, binary keys) plus binary user keys and values
/// loaded on top, and its dump.
fn source(d: &Path) -> String {
    ok(d, &["demo", "--dir", "demo"]);
    let mut extra = String::new();
    for i in 0u8..50 {
        extra.push_str(&format!(
            "{{\"key_b64\":\"{}\",\"value_b64\":\"{}\"}}\n",
            STANDARD.encode([0x80, i, 0xff]),
            STANDARD.encode([0xc3, i])
        ));
    }
    extra.push_str("{\"key\":\"\",\"value\":\"empty key\"}\n");
    std::fs::write(d.join("extra.jsonl"), &extra).expect("write");
    ok(
        d,
        &["--db", "demo/live.redb", "load", "--force", "extra.jsonl"],
    );
    let text = dump(d, "demo/live.redb");
    let queue = text
        .lines()
        .filter(|l| l.starts_with("{\"key_b64\":\"/3RpdG8AcS8"))
        .count();
    assert!(queue > 0, "the source holds queue state");
    assert!(
        text.contains(&STANDARD.encode([0x80, 7, 0xff])),
        "binary keys"
    );
    text
}

#[test]
fn dump_load_dump_is_identical_with_binary_keys_and_queue_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let text = source(d);
    std::fs::write(d.join("dump.jsonl"), &text).expect("write");

    // From a file, with small batches so several transactions commit.
    let out = ok(
        d,
        &[
            "--db",
            "file.redb",
            "load",
            "--batch-pairs",
            "100",
            "dump.jsonl",
        ],
    );
    let pairs = text.lines().count();
    assert!(out.contains(&format!("loaded {pairs} pairs")), "{out}");
    assert_eq!(dump(d, "file.redb"), text);

    // From stdin, checked first and streamed.
    for (db, stream) in [("stdin.redb", false), ("stream.redb", true)] {
        let mut args = vec!["--db", db, "load", "-"];
        if stream {
            args.insert(3, "--stream");
        }
        let o = with_stdin(d, &args, text.as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(dump(d, db), text, "{db}");
    }

    // The load is captured: a backup of the loaded database restores it exactly.
    ok(d, &["--db", "file.redb", "--store", "backups", "backup"]);
    ok(
        d,
        &[
            "--store",
            "backups",
            "restore",
            "--target",
            "restored.redb",
            "--to",
            "latest",
        ],
    );
    assert_eq!(dump(d, "restored.redb"), text);
}

/// 2,500 good lines with a bad one at `bad_at` (1-based).
fn input_with_bad_line(bad_at: usize, bad: &str) -> String {
    let mut s = String::new();
    for i in 1..=2500 {
        if i == bad_at {
            s.push_str(bad);
        } else {
            s.push_str(&format!("{{\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}"));
        }
        s.push('\n');
    }
    s
}

fn assert_one_line(o: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{:?} does not mention {n:?}",
            lines[0]
        );
    }
    assert!(stdout(o).is_empty(), "{}", stdout(o));
    lines[0].to_string()
}

#[test]
fn a_bad_line_is_named_and_nothing_of_it_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bad_cases = [
        (2001, "{\"key\":\"k\",\"valeu\":\"v\"}", "unknown field"),
        (2001, "{\"key\":\"k\"}", "missing \"value\""),
        (1, "not json", "not a dump line"),
        (2500, "{\"key_b64\":\"%%%\",\"value\":\"v\"}", "base64"),
        (
            1700,
            // A metadata key: a dump never holds one, and a load must not write it.
            "{\"key_b64\":\"/3RpdG8AbWV0YS90aW1lbGluZQ==\",\"value\":\"x\"}",
            "reserved prefix",
        ),
    ];
    // An existing, empty database: it must stay empty.
    ok(d, &["--db", "empty.redb", "kv", "put", "x", "1"]);
    ok(d, &["--db", "empty.redb", "kv", "del", "x"]);
    for (i, (at, bad, why)) in bad_cases.into_iter().enumerate() {
        let text = input_with_bad_line(at, bad);
        let file = format!("bad{i}.jsonl");
        std::fs::write(d.join(&file), &text).expect("write");
        let line = format!("line {at}:");
        let needles = [line.as_str(), why, "nothing was loaded"];
        // A new database is not even created.
        let new_db = format!("new{i}.redb");
        let o = tito(
            d,
            &["--db", &new_db, "load", "--batch-pairs", "1000", &file],
        );
        assert_one_line(&o, USAGE, &needles);
        assert!(!d.join(&new_db).exists(), "{new_db} was created");
        let o = tito(
            d,
            &["--db", "empty.redb", "load", "--batch-pairs", "1000", &file],
        );
        assert_one_line(&o, USAGE, &needles);
        assert_eq!(dump(d, "empty.redb"), "");
        // Standard input is checked whole before the first commit, too.
        let o = with_stdin(
            d,
            &["--db", "empty.redb", "load", "--batch-pairs", "1000", "-"],
            text.as_bytes(),
        );
        assert_one_line(&o, USAGE, &needles);
        assert_eq!(dump(d, "empty.redb"), "");
    }

    // Streamed: the batches before the bad line's batch are committed, exactly as said.
    let text = input_with_bad_line(2001, "{\"key\":\"k\"}");
    let o = with_stdin(
        d,
        &[
            "--db",
            "stream.redb",
            "load",
            "--stream",
            "--batch-pairs",
            "1000",
            "-",
        ],
        text.as_bytes(),
    );
    assert_one_line(
        &o,
        USAGE,
        &["line 2001:", "lines 1-2000 are committed", "2 transactions"],
    );
    let expected: String = text.lines().take(2000).map(|l| format!("{l}\n")).collect();
    assert_eq!(dump(d, "stream.redb"), expected);
    // Fixing the input and loading again with --force completes it.
    let fixed = input_with_bad_line(2001, "{\"key\":\"k02001\",\"value\":\"v2001\"}");
    let o = with_stdin(
        d,
        &["--db", "stream.redb", "load", "--force", "-"],
        fixed.as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(dump(d, "stream.redb"), fixed);
}

#[test]
fn a_non_empty_database_is_refused_without_force_and_merged_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "db.redb", "kv", "put", "a", "old"]);
    ok(d, &["--db", "db.redb", "kv", "put", "c", "kept"]);
    std::fs::write(
        d.join("in.jsonl"),
        "{\"key\":\"a\",\"value\":\"new\"}\n\n{\"key\":\"b\",\"value\":\"added\"}\n",
    )
    .expect("write");
    let before = dump(d, "db.redb");
    let o = tito(d, &["--db", "db.redb", "load", "in.jsonl"]);
    assert_one_line(&o, REFUSED, &["not empty", "--force"]);
    assert_eq!(dump(d, "db.redb"), before);
    let out = ok(d, &["--db", "db.redb", "load", "--force", "in.jsonl"]);
    assert!(out.contains("loaded 2 pairs (lines 1-3)"), "{out}");
    assert_eq!(
        dump(d, "db.redb"),
        "{\"key\":\"a\",\"value\":\"new\"}\n{\"key\":\"b\",\"value\":\"added\"}\n{\"key\":\"c\",\"value\":\"kept\"}\n"
    );
    // A missing input file is "not found" and touches nothing.
    let o = tito(d, &["--db", "db.redb", "load", "--force", "missing.jsonl"]);
    assert_one_line(&o, 3, &["missing.jsonl"]);
}

#[test]
fn a_load_of_large_batches_is_captured_and_restores_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // 30,000 pairs of JSON rows, about 3 MiB in one batch: its log record is stored in
    // several compressed frames.
    let mut text = String::new();
    for i in 0..30_000 {
        let value = format!(
            "{{\"id\":{i},\"note\":\"row {} of the load\"}}",
            i * 31 % 977
        );
        text.push_str(&tito_capture::jsonl::encode_line(
            format!("user/{i:06}").as_bytes(),
            value.as_bytes(),
        ));
        text.push('\n');
    }
    std::fs::write(d.join("big.jsonl"), &text).expect("write");
    let out = ok(d, &["--db", "big.redb", "load", "big.jsonl"]);
    assert!(out.contains("in 1 transactions"), "{out}");
    assert_eq!(dump(d, "big.redb"), text);
    ok(d, &["--db", "big.redb", "--store", "backups", "backup"]);
    ok(
        d,
        &[
            "--store",
            "backups",
            "restore",
            "--target",
            "restored.redb",
            "--to",
            "latest",
        ],
    );
    assert_eq!(dump(d, "restored.redb"), text);
}

#[test]
fn the_missing_database_message_names_the_commands_that_create_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let o = tito(d, &["--db", "none.redb", "dump"]);
    let line = assert_one_line(&o, 3, &["none.redb", "does not exist"]);
    let named = line.split("(only ").nth(1).expect("a list of commands");
    for creator in ["kv put", "kv del", "load", "restore", "demo"] {
        assert!(named.contains(creator), "{creator} is not named: {line}");
    }
    // Each named command that takes --db does create it.
    std::fs::write(d.join("one.jsonl"), "{\"key\":\"a\",\"value\":\"1\"}\n").expect("write");
    for (db, args) in [
        ("put.redb", vec!["kv", "put", "a", "1"]),
        ("del.redb", vec!["kv", "del", "a"]),
        ("load.redb", vec!["load", "one.jsonl"]),
    ] {
        let mut all = vec!["--db", db];
        all.extend(args);
        let _ = tito(d, &all);
        assert!(d.join(db).exists(), "{all:?} did not create {db}");
    }
}
