//! The real `tito` binary backing up a key prefix of the shared etcd test cluster that Tito
//! did not write (`etcd+watch://`): written with `etcdctl`, backed up with
//! `backup --continuous` for a few seconds, then restored to `rev:N` into redb, whose
//! `dump` must equal `etcdctl get --prefix --rev=N`.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use support::{continuous_backup, ok, restore, stderr, terminate, tito};

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
    let child = continuous_backup(d, &url, &[]);
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
    std::thread::sleep(Duration::from_secs(2));
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
