//! The real `tito` binary backing up a key prefix of the shared etcd test cluster that Tito
//! did not write (`etcd+watch://`): written with `etcdctl`, backed up with
//! `backup --continuous` for a few seconds, then restored to `rev:N` into redb, whose
//! `dump` must equal `etcdctl get --prefix --rev=N`.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use support::{continuous_backup, free_addr, metric, ok, restore, scrape, stderr, terminate, tito};

fn endpoints() -> String {
    support::etcd_endpoints()
}

/// `etcdctl args -w json`, parsed.
fn etcdctl(hosts: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={hosts}"))
        .args(args)
        .args(["-w", "json"])
        .output()
        .expect("etcdctl (scripts/start-etcd.sh installs it)");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("etcdctl json")
}

fn revision(v: &serde_json::Value) -> u64 {
    v["header"]["revision"].as_u64().expect("revision")
}

/// `etcdctl get --prefix --rev=N`, as `tito dump` would print it.
fn source_dump(hosts: &str, prefix: &str, rev: u64) -> String {
    let v = etcdctl(hosts, &["get", "--prefix", prefix, &format!("--rev={rev}")]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for kv in v["kvs"].as_array().cloned().unwrap_or_default() {
        let key = String::from_utf8(b64.decode(kv["key"].as_str().unwrap()).unwrap()).unwrap();
        let value = String::from_utf8(b64.decode(kv["value"].as_str().unwrap()).unwrap()).unwrap();
        out.push_str(&serde_json::json!({ "key": key, "value": value }).to_string());
        out.push('\n');
    }
    out
}

#[test]
fn backup_by_watch_restores_to_a_revision() {
    let hosts = endpoints();
    let run = format!("{:016x}", rand::random::<u64>());
    let prefix = format!("tito-cli-watch-{run}/");
    let url = format!("etcd+watch://{hosts}/{prefix}");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for i in 0..5 {
        etcdctl(
            &hosts,
            &["put", &format!("{prefix}k{i}"), &format!("before-{i}")],
        );
    }
    let addr = free_addr();
    let child = continuous_backup(d, &url, &["--metrics", &addr]);
    std::thread::sleep(Duration::from_millis(800));
    let mut revs = Vec::new();
    for i in 0..20 {
        let r = etcdctl(
            &hosts,
            &[
                "put",
                &format!("{prefix}k{}", i % 7),
                &format!("during-{i}"),
            ],
        );
        revs.push(revision(&r));
        if i % 6 == 5 {
            let r = etcdctl(&hosts, &["del", &format!("{prefix}k{}", i % 4)]);
            revs.push(revision(&r));
        }
        // Outside the prefix: an empty record.
        etcdctl(
            &hosts,
            &["put", &format!("tito-cli-watch-other-{run}"), "x"],
        );
    }
    let r = etcdctl(&hosts, &["del", "--prefix", &format!("{prefix}k1")]);
    revs.push(revision(&r));
    // The metrics endpoint follows the watch: the store's log reaches the last revision
    // (other tests may write to the shared cluster meanwhile: their revisions are shipped
    // as empty records, so the log may be further on).
    let last = revs.last().copied().expect("revisions") as f64;
    let shipped = |b: &str| metric(b, "tito_backup_shipped_lsn").unwrap_or(0.0);
    let body = scrape(&addr, |b| shipped(b) >= last);
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(shipped(&body) >= last, "shipped through {last}: {body}");
    let lag = metric(&body, "tito_backup_lag_seconds").expect("lag_seconds");
    assert!((0.0..5.0).contains(&lag), "{body}");
    assert!(metric(&body, "tito_backup_lag_records").is_some(), "{body}");
    assert_eq!(
        metric(&body, "tito_backup_errors_total"),
        Some(0.0),
        "{body}"
    );
    assert!(
        metric(&body, "tito_backup_snapshots_total") >= Some(1.0),
        "{body}"
    );
    let log = terminate(child);
    assert!(log.contains("continuous backup of"), "{log}");

    // A database command refuses the watched cluster: it is not a database.
    let o = tito(d, &["--db", &url, "kv", "get", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("backs up by watching"),
        "{}",
        stderr(&o)
    );

    for (n, rev) in [revs[3], revs[revs.len() / 2], *revs.last().unwrap()]
        .into_iter()
        .enumerate()
    {
        let target = format!("at-{n}.redb");
        let to = format!("rev:{rev}");
        ok(d, &restore(&target, &["--to", &to]));
        let dump = ok(d, &["--db", &target, "dump"]);
        assert_eq!(dump, source_dump(&hosts, &prefix, rev), "rev:{rev}");
        assert!(!dump.is_empty() || n == 2, "rev:{rev}: nothing restored");
    }

    // The backup set is an ordinary one: verify checks every object.
    ok(d, &["--store", "backups", "verify"]);
    // A typo in the scheme is refused with the URL meant.
    let o = tito(
        d,
        &["--db", "etcd+watch:/h:1/p/", "--store", "backups", "backup"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean etcd+watch://h:1/p/?"),
        "{}",
        stderr(&o)
    );
    // So is restoring into it.
    let o = tito(d, &restore(&url, &["--to", "latest"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // An unreachable cluster is exit 6, and no repository is created.
    let o = tito(
        d,
        &[
            "--db",
            "etcd+watch://127.0.0.1:1/x/",
            "--store",
            "other",
            "backup",
        ],
    );
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(!d.join("other/tito.repo").exists());

    // A one-shot backup later resumes after the last shipped revision (no new snapshot).
    let mut last = 0;
    for i in 0..5 {
        last = revision(&etcdctl(
            &hosts,
            &["put", &format!("{prefix}k{i}"), &format!("after-{i}")],
        ));
    }
    let out = ok(d, &["--db", &url, "backup", "--to", "backups"]);
    assert!(out.contains(&format!("through revision {last}")), "{out}");
    assert!(!out.contains("snapshot at"), "{out}");
    ok(d, &restore("later.redb", &["--to", &format!("rev:{last}")]));
    assert_eq!(
        ok(d, &["--db", "later.redb", "dump"]),
        source_dump(&hosts, &prefix, last)
    );
}

/// Every key of the cluster at `hosts` (base64-decoded) with its value, less the raw
/// engine's bookkeeping (its stamp counter and the pins of read views, which a refused
/// restore's check may leave until their lease expires).
fn all_keys(hosts: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let v = etcdctl(hosts, &["get", "", "--from-key"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let field = |f: &str| b64.decode(kv[f].as_str().unwrap_or("")).unwrap();
            (field("key"), field("value"))
        })
        .filter(|(k, _)| !k.starts_with(b"\xff\xff\xfftito-etcd\x00"))
        .collect()
}

/// A watched prefix restored into a new cluster through the API: the applications' keys
/// come back as `etcdctl get --prefix --rev=N` of the source showed them; a second restore
/// into it is refused and changes nothing; `--force` replaces it with another revision;
/// and a watch backup of the restored cluster takes only the applications' keys, none of
/// what the restore left for Tito.
#[test]
fn restores_a_watched_prefix_into_a_new_cluster() {
    let hosts = endpoints();
    let run = format!("{:016x}", rand::random::<u64>());
    let prefix = format!("tito-cli-raw-{run}/");
    let url = format!("etcd+watch://{hosts}/{prefix}");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for i in 0..30 {
        etcdctl(
            &hosts,
            &["put", &format!("{prefix}k{i:02}"), &format!("v{i}")],
        );
    }
    ok(d, &["--db", &url, "backup", "--to", "backups"]);
    let mut revs = Vec::new();
    for i in 0..12 {
        let key = format!("{prefix}k{:02}", (i * 7) % 30);
        let r = if i % 3 == 2 {
            etcdctl(&hosts, &["del", &key])
        } else {
            etcdctl(&hosts, &["put", &key, &format!("changed-{i}")])
        };
        revs.push(revision(&r));
    }
    revs.push(revision(&etcdctl(
        &hosts,
        &["del", "--prefix", &format!("{prefix}k1")],
    )));
    ok(d, &["--db", &url, "backup", "--to", "backups"]);

    let new = support::PrivateEtcd::start();
    let target = format!("etcd+watch://{}", new.endpoint);
    let (mid, last) = (revs[5], *revs.last().unwrap());
    ok(d, &restore(&target, &["--to", &format!("rev:{mid}")]));
    assert_eq!(
        source_dump(&new.endpoint, &prefix, current(&new.endpoint)),
        source_dump(&hosts, &prefix, mid),
        "the new cluster's keys are the source's at rev:{mid}"
    );
    // Besides them, only what Tito keeps for itself, in keys no application reads.
    let before = all_keys(&new.endpoint);
    for (k, _) in &before {
        assert!(
            k.starts_with(prefix.as_bytes()) || k.starts_with(b"\xfftito\x00"),
            "restore left {:?} in the cluster",
            String::from_utf8_lossy(k)
        );
    }
    assert!(
        !before
            .iter()
            .any(|(k, _)| k.ends_with(b"restore-in-progress")),
        "the restore marker is gone once the restore is done"
    );

    // Restoring again over it is refused, and nothing is changed.
    let o = tito(d, &restore(&target, &["--to", "latest"]));
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&prefix),
        "names a key it holds: {}",
        stderr(&o)
    );
    assert!(
        all_keys(&new.endpoint) == before,
        "a refused restore changed the cluster"
    );
    // A prefix in the target is refused: the restored keys carry theirs.
    let o = tito(
        d,
        &restore(&format!("{target}/{prefix}"), &["--to", "latest"]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        all_keys(&new.endpoint) == before,
        "a refused restore changed the cluster"
    );

    // --force replaces it with the latest state.
    ok(
        d,
        &restore(&target, &["--to", &format!("rev:{last}"), "--force"]),
    );
    let restored = source_dump(&new.endpoint, &prefix, current(&new.endpoint));
    assert_eq!(restored, source_dump(&hosts, &prefix, last));
    assert_eq!(ok(d, &["--db", &target, "dump"]), restored);

    // The restored cluster backed up by a watch: its keys, none of Tito's.
    ok(d, &["--db", &target, "--store", "again", "backup"]);
    ok(
        d,
        &[
            "--store",
            "again",
            "restore",
            "--target",
            "again.redb",
            "--to",
            "latest",
        ],
    );
    assert_eq!(ok(d, &["--db", "again.redb", "dump"]), restored);
}

/// The current revision of the cluster at `hosts`.
fn current(hosts: &str) -> u64 {
    revision(&etcdctl(hosts, &["get", "x", "--keys-only"]))
}
