//! The real `tito` binary against the 3-node etcd test cluster (scripts/start-etcd.sh):
//! kv through an `etcd://` URL, a backup of it, and a restore of that backup into etcd
//! under another namespace. Endpoints come from `TITO_TEST_ETCD` or target/etcd.env.

mod support;

use support::{continuous_backup, ok, restore, stderr, stdout, terminate, tito};

fn endpoints() -> String {
    support::etcd_endpoints()
}

#[test]
fn kv_backup_and_restore_on_etcd() {
    let hosts = endpoints();
    let run = format!("{:016x}", rand::random::<u64>());
    let db = format!("etcd://{hosts}/tito-cli-{run}/live");
    let copy = format!("etcd://{hosts}/tito-cli-{run}/copy");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", &db, "kv", "put", "user:1", "alice"]);
    ok(d, &["--db", &db, "kv", "put", "user:2", "bob"]);
    assert_eq!(ok(d, &["--db", &db, "kv", "get", "user:1"]), "alice\n");
    ok(d, &["--db", &db, "--store", "backups", "backup"]);
    ok(d, &["--db", &db, "kv", "del", "user:1"]);
    ok(d, &["--db", &db, "--store", "backups", "backup"]);
    ok(d, &restore(&copy, &["--to", "lsn:2"]));
    assert_eq!(
        ok(d, &["--db", &copy, "dump"]),
        "{\"key\":\"user:1\",\"value\":\"alice\"}\n{\"key\":\"user:2\",\"value\":\"bob\"}\n"
    );
    // The copy is not empty any more: a second restore into it is refused.
    let o = tito(d, &restore(&copy, &[]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn a_second_shipper_is_refused_while_one_runs() {
    let hosts = endpoints();
    let run = format!("{:016x}", rand::random::<u64>());
    let db = format!("etcd://{hosts}/tito-cli-{run}/leased");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", &db, "kv", "put", "k", "v"]);
    let child = continuous_backup(d, &db, &[]);
    // Wait until the continuous shipper has shipped (and so holds the lease).
    let mut shipped = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let o = tito(d, &["--json", "--db", &db, "--store", "backups", "status"]);
        if o.status.success() && stdout(&o).contains("\"latest_lsn\": 1") {
            shipped = true;
            break;
        }
    }
    assert!(shipped, "the continuous shipper never shipped");
    let o = tito(d, &["--db", &db, "--store", "backups", "backup"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("holds this database's lease") && err.contains("--wait-for-lease"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    terminate(child);
    // Released on stop: a one-shot run now works.
    ok(d, &["--db", &db, "--store", "backups", "backup"]);
}
