//! `tito import-legacy` through the real binary: old backup roots written by the
//! re-implemented original writer into a local directory, imported, dumped and compared
//! with the application's state when the runs happened; then backed up by Tito.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use support::{ok, stderr, stdout, tito};
use tito_legacy::original::{Clock, Config, EventChangelogEntry, Source, Writer};
use tito_store::{LocalStore, Store};

/// The `table:` state of the original's database, as `tito dump` writes it.
fn dump_of(source: &Source) -> String {
    let table: BTreeMap<&Vec<u8>, &Vec<u8>> = source
        .map
        .iter()
        .filter(|(k, _)| k.starts_with(b"table:"))
        .collect();
    table
        .into_iter()
        .map(|(k, v)| format!("{}\n", tito_capture::jsonl::encode_line(k, v)))
        .collect()
}

/// An old root in `dir/old` after three runs; returns the dumps expected as of each run
/// and the runs' seconds.
fn write_root(dir: &Path) -> (Vec<String>, Vec<i64>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.join("old")).unwrap());
        let clock = Clock::at(1_764_000_000_000);
        let writer = Writer {
            store,
            config: Config {
                chunk_size: 3,
                full_backup_interval_secs: 3600,
                retention_secs: 86_400,
                backup_root: String::new(),
            },
            clock: clock.clone(),
        };
        let mut src = Source::default();
        let (mut dumps, mut secs) = (Vec::new(), Vec::new());
        for round in 0..3u64 {
            for i in 0..7u64 {
                clock.advance(3);
                let key = format!("table:orders:{:02}", (i * 3 + round) % 11);
                if (i + round) % 4 == 3 {
                    src.delete(&clock, &key);
                } else {
                    src.put(
                        &clock,
                        &key,
                        &json!({"round": round, "i": i, "note": "é \"q\""}),
                    );
                }
            }
            clock.advance(2);
            src.publish(
                &clock,
                &EventChangelogEntry {
                    event_id: format!("ev{round}"),
                    event_key: format!("table:orders:{round:02}"),
                    created_at: clock.now_ms(),
                    scheduled_at: clock.now_ms(),
                    max_retries: 5,
                    data: json!({"round": round}),
                },
            );
            clock.set((clock.now_secs() + 10) * 1000 + 250);
            writer.run_backup(&mut src).await.unwrap();
            dumps.push(dump_of(&src));
            secs.push(clock.now_secs());
        }
        (dumps, secs)
    })
}

#[test]
fn import_legacy_then_dump_equals_the_oracle_and_backup_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dumps, secs) = write_root(d);
    let out = ok(
        d,
        &["import-legacy", "--from", "old", "--target", "latest.redb"],
    );
    assert!(out.contains("full backups: 1"), "{out}");
    assert!(out.contains("partial chunks:"), "{out}");
    assert!(out.contains("warning: 3 archived events"), "{out}");
    assert!(out.contains("is a new Tito database"), "{out}");
    assert_eq!(ok(d, &["--db", "latest.redb", "dump"]), dumps[2]);
    // As of the second run (epoch milliseconds, inside its second).
    let to = format!("{}", secs[1] * 1000 + 999);
    ok(
        d,
        &[
            "import-legacy",
            "--from",
            "old",
            "--target",
            "second.redb",
            "--to",
            &to,
        ],
    );
    assert_eq!(ok(d, &["--db", "second.redb", "dump"]), dumps[1]);
    // An RFC 3339 time at the first run: the full backup alone.
    let first = chrono::DateTime::from_timestamp(secs[0], 0)
        .unwrap()
        .to_rfc3339();
    ok(
        d,
        &[
            "import-legacy",
            "--from",
            &format!("file://{}/old", d.display()),
            "--target",
            "first.redb",
            "--to",
            &first,
        ],
    );
    assert_eq!(ok(d, &["--db", "first.redb", "dump"]), dumps[0]);
    // An ordinary database: backed up, restored, the same.
    ok(d, &["--db", "latest.redb", "--store", "backups", "backup"]);
    ok(
        d,
        &["--store", "backups", "restore", "--target", "copy.redb"],
    );
    assert_eq!(ok(d, &["--db", "copy.redb", "dump"]), dumps[2]);
    // --json gives the report as data.
    let out = ok(
        d,
        &[
            "--json",
            "import-legacy",
            "--from",
            "old",
            "--target",
            "json.redb",
            "--dry-run",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["full_used"], secs[0]);
    assert!(!d.join("json.redb").exists(), "a dry run creates nothing");
}

#[test]
fn import_legacy_enqueues_events_with_the_stable_hash_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_root(d);
    let o = tito(
        d,
        &[
            "import-legacy",
            "--from",
            "old",
            "--target",
            "q.redb",
            "--events",
            "enqueue",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--partitions"), "{}", stderr(&o));
    assert!(!d.join("q.redb").exists());
    let out = ok(
        d,
        &[
            "import-legacy",
            "--from",
            "old",
            "--target",
            "q.redb",
            "--events",
            "enqueue",
            "--partitions",
            "4",
        ],
    );
    assert!(out.contains("3 events enqueued"), "{out}");
    let dump = ok(d, &["--db", "q.redb", "dump"]);
    let queue: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("{\"key_b64\""))
        .collect();
    assert_eq!(queue.len(), 3, "{dump}");
    for round in 0..3u32 {
        let key = format!("table:orders:{round:02}");
        let p = tito_queue::partition_for(key.as_bytes(), 4).unwrap();
        let mut prefix = tito_capture::keys::QUEUE_PREFIX.to_vec();
        prefix.extend_from_slice(&p.to_be_bytes());
        use base64::Engine as _;
        let found = queue.iter().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let k = base64::engine::general_purpose::STANDARD
                .decode(v["key_b64"].as_str().unwrap())
                .unwrap();
            k.starts_with(&prefix) && k.ends_with(format!("ev{round}").as_bytes())
        });
        assert!(found, "event ev{round} in partition {p}: {dump}");
    }
}

#[test]
fn import_legacy_refuses_a_non_empty_target_and_names_a_malformed_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_root(d);
    ok(d, &["--db", "mine.redb", "kv", "put", "a", "keep"]);
    let o = tito(
        d,
        &["import-legacy", "--from", "old", "--target", "mine.redb"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(
        ok(d, &["--db", "mine.redb", "dump"]),
        "{\"key\":\"a\",\"value\":\"keep\"}\n"
    );

    let partial = std::fs::read_dir(d.join("old/state/partial"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("chunk-0001.json.gz");
    std::fs::write(&partial, b"\x1f\x8b not really gzip").unwrap();
    let o = tito(
        d,
        &["import-legacy", "--from", "old", "--target", "new.redb"],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("chunk-0001.json.gz") && err.contains("malformed"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!d.join("new.redb").exists(), "nothing created");

    for (args, code) in [
        (vec!["--to", "lsn:4"], 2),
        (vec!["--to", "1764000000"], 2),
        (vec!["--to", "2020-01-01T00:00:00Z"], 3),
        (vec!["--partitions", "0"], 2),
    ] {
        let mut all = vec!["import-legacy", "--from", "old", "--target", "x.redb"];
        all.extend(args.iter().copied());
        let o = tito(d, &all);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(!d.join("x.redb").exists(), "{args:?}");
    }
    for (from, code) in [("ftp://x/y", 2), ("nowhere", 3)] {
        let o = tito(d, &["import-legacy", "--from", from, "--target", "x.redb"]);
        assert_eq!(o.status.code(), Some(code), "{from}: {}", stderr(&o));
    }
    std::fs::create_dir(d.join("empty")).unwrap();
    let o = tito(
        d,
        &["import-legacy", "--from", "empty", "--target", "x.redb"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no backup of the original module"),
        "{}",
        stderr(&o)
    );
}
