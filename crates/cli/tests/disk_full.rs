//! A full disk, for real: the backup store's directory and the restore target on small
//! tmpfs mounts. Backup fails with exit 6 naming the full directory, nothing is lost (the
//! log is kept until shipped), and once there is room (the mount grown) the backup goes
//! on and restores exactly; a restore onto a full disk fails with exit 6 naming the
//! target, leaves nothing taken for complete, and succeeds once there is room.
//!
//! Mounting needs root (or CAP_SYS_ADMIN): where it is refused, these tests print why and
//! return; the same properties are checked without a mount, through a store that fails
//! writes with ENOSPC, by `crates/restore/tests/disk_full.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use base64::Engine as _;
use support::{ok, stderr, tito};

const UNAVAILABLE: i32 = 6;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `2m`) on `dir` (created), or say why not.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Grow it (its files stay).
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(st.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A dump of `n` pairs with 1,000 random (incompressible) bytes each.
fn random_dump(path: &Path, prefix: &str, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        let v: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
        s.push_str(&format!(
            "{{\"key\":\"{prefix}{i:05}\",\"value_b64\":\"{}\"}}\n",
            base64::engine::general_purpose::STANDARD.encode(v)
        ));
    }
    std::fs::write(path, s).expect("write dump");
}

fn fails_full(d: &Path, args: &[&str], names: &str) {
    let o = tito(d, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(UNAVAILABLE), "tito {args:?}: {err}");
    assert!(
        err.contains(names) && (err.contains("full") || err.contains("No space left")),
        "tito {args:?}: the error should name {names} and the full disk: {err}"
    );
}

#[test]
fn backup_to_a_full_disk_fails_clearly_loses_nothing_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mount = match Tmpfs::mount(&d.join("backups"), "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping: {why} (see crates/restore/tests/disk_full.rs)");
            return;
        }
    };
    // A first backup fits.
    ok(d, &["--db", "app.redb", "kv", "put", "greeting", "hello"]);
    ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    // Then 3 MB of incompressible values do not.
    random_dump(&d.join("big.jsonl"), "big", 3000);
    ok(d, &["--db", "app.redb", "load", "--force", "big.jsonl"]);
    let backup = ["--db", "app.redb", "--store", "backups", "backup"];
    let full = mount.0.canonicalize().expect("canonical");
    let full = full.to_str().expect("utf8");
    fails_full(d, &backup, full);
    // Writes go on; the backup keeps failing while the disk is full.
    ok(d, &["--db", "app.redb", "kv", "put", "after", "full"]);
    fails_full(d, &backup, full);
    // Room again: the backup ships everything, and the repository restores exactly.
    mount.resize("64m");
    ok(d, &backup);
    ok(d, &["--store", "backups", "verify"]);
    ok(
        d,
        &[
            "--store", "backups", "restore", "--target", "r.redb", "--to", "latest",
        ],
    );
    assert_eq!(
        ok(d, &["--db", "r.redb", "dump"]),
        ok(d, &["--db", "app.redb", "dump"])
    );
}

#[test]
fn restore_onto_a_full_disk_fails_clearly_and_succeeds_with_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    random_dump(&d.join("big.jsonl"), "big", 3000);
    ok(d, &["--db", "app.redb", "load", "big.jsonl"]);
    ok(d, &["--db", "app.redb", "--store", "backups", "backup"]);
    let mount = match Tmpfs::mount(&d.join("small"), "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let target = "small/r.redb";
    fails_full(
        d,
        &["--store", "backups", "restore", "--target", target],
        target,
    );
    // Whatever the failure left is not taken for a complete database.
    if d.join(target).exists() {
        let o = tito(d, &["--db", target, "dump"]);
        assert_eq!(
            o.status.code(),
            Some(4),
            "a partial target refuses: {}",
            stderr(&o)
        );
    }
    mount.resize("64m");
    ok(
        d,
        &[
            "--store", "backups", "restore", "--target", target, "--force",
        ],
    );
    assert_eq!(
        ok(d, &["--db", target, "dump"]),
        ok(d, &["--db", "app.redb", "dump"])
    );
}
