//! Encryption at rest through the real `tito` binary: keyring files, an encrypted
//! repository's round trip, missing and wrong keys, encrypted and plain repositories never
//! mixing, key rotation with `tito rekey`, and `verify` naming a flipped byte. Every refusal
//! is one line with its exit code and leaves every file as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

mod support;

use support::{command, ok, stderr, stdout};

const USAGE: i32 = 2;
const REFUSED: i32 = 4;
const INTEGRITY: i32 = 5;
const SECRET: &str = "very-secret-value-7f3a";

/// `tito args` in `dir` with the keyring `key` (none: no key).
fn run(dir: &Path, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = command(dir, args);
    if let Some(k) = key {
        cmd.env("TITO_ENCRYPTION_KEY_FILE", dir.join(k));
    }
    cmd.output().expect("run tito")
}

fn run_ok(dir: &Path, key: Option<&str>, args: &[&str]) -> String {
    let o = run(dir, key, args);
    assert!(
        o.status.success(),
        "tito {args:?} ({key:?}) failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// Every file under `dir` (databases by their dump).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "redb") {
                let db = path.to_str().expect("utf8");
                out.insert(path.clone(), run(dir, None, &["--db", db, "dump"]).stdout);
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// A refusal: exit `code`, one stderr line holding every needle, nothing changed.
fn refuses(dir: &Path, key: Option<&str>, args: &[&str], code: i32, needles: &[&str]) {
    let before = tree(dir);
    let o = run(dir, key, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "tito {args:?} ({key:?}): {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "tito {args:?}: one line expected: {err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "tito {args:?}: {:?} lacks {n:?}",
            lines[0]
        );
    }
    assert!(before == tree(dir), "tito {args:?} ({key:?}) changed files");
}

fn store_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    tree(&dir.join("backups")).into_iter().collect()
}

/// An encrypted repository `backups` of `app.redb` (snapshot + log), key in `k1.key`.
fn encrypted() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run_ok(d, None, &["key", "new", "k1.key"]);
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "a", SECRET]);
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "b", "2"]);
    run_ok(
        d,
        Some("k1.key"),
        &["--db", "app.redb", "--store", "backups", "backup"],
    );
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "c", SECRET]);
    run_ok(
        d,
        Some("k1.key"),
        &["--db", "app.redb", "--store", "backups", "backup"],
    );
    dir
}

fn dump(dir: &Path, db: &str) -> String {
    ok(dir, &["--db", db, "dump"])
}

fn key_ids(dir: &Path, ring: &str) -> Vec<String> {
    ok(dir, &["key", "list", ring])
        .lines()
        .map(|l| l.split_whitespace().next().expect("id").to_string())
        .collect()
}

#[test]
fn key_files_are_owner_only_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = ok(d, &["key", "new", "k.key"]);
    let ids = key_ids(d, "k.key");
    assert_eq!(ids.len(), 1);
    assert!(out.contains(&ids[0]), "{out}");
    let text = std::fs::read_to_string(d.join("k.key")).expect("read");
    let key_hex = text
        .lines()
        .last()
        .expect("line")
        .split(' ')
        .nth(2)
        .expect("key");
    assert!(!out.contains(key_hex), "the key itself is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("k.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    refuses(
        d,
        None,
        &["key", "new", "k.key"],
        REFUSED,
        &["k.key", "already exists"],
    );
    ok(d, &["key", "add", "k.key"]);
    let two = key_ids(d, "k.key");
    assert_eq!(
        (two.len(), &two[0]),
        (2, &ids[0]),
        "the old key stays, first"
    );
    assert!(
        ok(d, &["key", "list", "k.key"])
            .lines()
            .last()
            .expect("l")
            .contains("encrypts new")
    );
}

#[test]
fn encrypted_backup_restores_and_every_command_works_on_it() {
    let dir = encrypted();
    let d = dir.path();
    let k = Some("k1.key");
    let id = &key_ids(d, "k1.key")[0];
    // The bucket holds no plaintext value; the config says encrypted, names the key id
    // and is format 3; every other object is an envelope.
    let files = store_files(d);
    assert!(files.len() > 3, "{files:?}");
    for (path, bytes) in &files {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{path:?}"
        );
        if path.ends_with("tito.repo") {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                text.contains("\"format_version\": 3") && text.contains(id.as_str()),
                "{text}"
            );
            assert!(text.contains("xchacha20poly1305"), "{text}");
        } else {
            assert_eq!(&bytes[..4], b"TENC", "{path:?} is an envelope");
        }
    }
    run_ok(
        d,
        k,
        &["--db", "app.redb", "--store", "backups", "snapshot"],
    );
    run_ok(
        d,
        k,
        &[
            "--db",
            "app.redb",
            "--store",
            "backups",
            "restore-point",
            "before",
        ],
    );
    assert!(run_ok(d, k, &["--store", "backups", "status"]).contains("snapshot"));
    assert!(run_ok(d, k, &["--store", "backups", "verify", "--deep"]).contains("no problems"));
    run_ok(d, k, &["--store", "backups", "prune", "--keep-last", "1"]);
    run_ok(
        d,
        k,
        &["--store", "backups", "restore", "--target", "new.redb"],
    );
    assert_eq!(dump(d, "new.redb"), dump(d, "app.redb"));
    // The key from the config file works the same.
    std::fs::write(d.join("tito.toml"), "[encryption]\nkey_file = \"k1.key\"\n").expect("config");
    run_ok(
        d,
        None,
        &[
            "--config",
            "tito.toml",
            "--store",
            "backups",
            "restore",
            "--target",
            "cfg.redb",
            "--to",
            "label:before",
        ],
    );
    assert_eq!(dump(d, "cfg.redb"), dump(d, "app.redb"));
}

#[test]
fn missing_and_wrong_keys_are_refused_and_nothing_is_modified() {
    let dir = encrypted();
    let d = dir.path();
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "d", "4"]);
    for args in [
        &["--store", "backups", "status"][..],
        &["--db", "app.redb", "--store", "backups", "backup"],
        &["--store", "backups", "restore", "--target", "new.redb"],
        &["--store", "backups", "verify"],
    ] {
        refuses(
            d,
            None,
            args,
            USAGE,
            &["encrypted", "TITO_ENCRYPTION_KEY_FILE"],
        );
    }
    run_ok(d, None, &["key", "new", "other.key"]);
    for args in [
        &["--store", "backups", "status"][..],
        &["--db", "app.redb", "--store", "backups", "backup"],
        &["--store", "backups", "restore", "--target", "new.redb"],
    ] {
        refuses(d, Some("other.key"), args, USAGE, &["wrong encryption key"]);
    }
    refuses(
        d,
        Some("absent.key"),
        &["--store", "backups", "status"],
        USAGE,
        &["absent.key"],
    );
    // A key file others may read is refused, naming the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy(d.join("k1.key"), d.join("open.key")).expect("copy");
        std::fs::set_permissions(d.join("open.key"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        refuses(
            d,
            Some("open.key"),
            &["--store", "backups", "status"],
            USAGE,
            &["chmod 600"],
        );
    }
}

#[test]
fn encrypted_and_plain_repositories_never_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run_ok(d, None, &["key", "new", "k.key"]);
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "a", "1"]);
    run_ok(
        d,
        None,
        &["--db", "app.redb", "--store", "backups", "backup"],
    );
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "b", "2"]);
    refuses(
        d,
        Some("k.key"),
        &["--db", "app.redb", "--store", "backups", "backup"],
        USAGE,
        &["not encrypted"],
    );
    refuses(
        d,
        Some("k.key"),
        &["--store", "backups", "status"],
        USAGE,
        &["not encrypted"],
    );
    // And the other way: an encrypted repository refuses a plain write (above as "no key").
    run_ok(
        d,
        None,
        &["--store", "backups", "restore", "--target", "plain.redb"],
    );
}

#[test]
fn rotation_keeps_old_objects_readable_and_rekey_leaves_only_the_new_key_needed() {
    let dir = encrypted();
    let d = dir.path();
    std::fs::copy(d.join("k1.key"), d.join("ring.key")).expect("copy");
    ok(d, &["key", "add", "ring.key"]);
    let ids = key_ids(d, "ring.key");
    // A keyring of only the new key (the last line of the ring).
    let text = std::fs::read_to_string(d.join("ring.key")).expect("ring");
    let last = text.lines().last().expect("line");
    std::fs::write(d.join("new-only.key"), format!("{last}\n")).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.join("new-only.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
    }
    assert_eq!(key_ids(d, "new-only.key"), [ids[1].clone()]);

    // New objects go out under the new key; the old ones still read with the ring.
    run_ok(d, None, &["--db", "app.redb", "kv", "put", "e", "5"]);
    run_ok(
        d,
        Some("ring.key"),
        &["--db", "app.redb", "--store", "backups", "backup"],
    );
    run_ok(
        d,
        Some("ring.key"),
        &["--store", "backups", "restore", "--target", "r1.redb"],
    );
    assert_eq!(dump(d, "r1.redb"), dump(d, "app.redb"));
    // The old key alone cannot read the newest segment, and says which key it needs.
    let o = run(
        d,
        Some("k1.key"),
        &["--store", "backups", "restore", "--target", "r0.redb"],
    );
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    assert!(stderr(&o).contains(&ids[1]), "{}", stderr(&o));
    // The new key alone cannot read the old objects yet: refused before anything is read.
    refuses(
        d,
        Some("new-only.key"),
        &["--store", "backups", "status"],
        USAGE,
        &["wrong encryption key", &ids[0]],
    );

    let out = run_ok(
        d,
        Some("ring.key"),
        &["--json", "--store", "backups", "rekey"],
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(report["reencrypted"].as_u64().expect("n") > 0, "{report}");
    assert_eq!(report["key_id"], ids[1].as_str());
    // Again: nothing left to do.
    let again: serde_json::Value = serde_json::from_str(&run_ok(
        d,
        Some("ring.key"),
        &["--json", "--store", "backups", "rekey"],
    ))
    .expect("json");
    assert_eq!(again["reencrypted"], 0);
    // Now only the new key is needed, and the old one alone is refused.
    assert!(
        run_ok(
            d,
            Some("new-only.key"),
            &["--store", "backups", "verify", "--deep"]
        )
        .contains("no problems")
    );
    run_ok(
        d,
        Some("new-only.key"),
        &["--store", "backups", "restore", "--target", "r2.redb"],
    );
    assert_eq!(dump(d, "r2.redb"), dump(d, "app.redb"));
    refuses(
        d,
        Some("k1.key"),
        &["--store", "backups", "status"],
        USAGE,
        &["wrong encryption key"],
    );
    run_ok(
        d,
        Some("new-only.key"),
        &["--db", "app.redb", "--store", "backups", "backup"],
    );
}

#[test]
fn verify_names_an_object_with_a_flipped_byte() {
    let dir = encrypted();
    let d = dir.path();
    // Objects restore never reads (writer claims) are authenticated too.
    let files = store_files(d);
    for needle in ["/writers/", ".seg"] {
        let (path, bytes) = files
            .iter()
            .find(|(p, _)| p.to_string_lossy().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} object in {files:?}"));
        let mut bytes = bytes.clone();
        let i = bytes.len() - 3;
        bytes[i] ^= 0x10;
        std::fs::write(path, &bytes).expect("flip");
        let name = path
            .strip_prefix(d.join("backups"))
            .expect("under")
            .to_string_lossy()
            .into_owned();
        let o = run(d, Some("k1.key"), &["--store", "backups", "verify"]);
        assert_eq!(o.status.code(), Some(INTEGRITY), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("PROBLEM {name}")),
            "{}",
            stdout(&o)
        );
        assert!(
            stdout(&o).contains("failed authentication"),
            "{}",
            stdout(&o)
        );
    }
}
