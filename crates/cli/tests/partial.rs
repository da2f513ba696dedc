//! A database an interrupted restore left partial is refused by every command, reads
//! included: `dump`, `kv get` and `kv scan` printed its partial contents with exit 0 (found
//! by the crash harness, crates/cli/tests/crash), so they passed for a complete database.

mod support;

use support::{ok, stderr, tito};

/// Refused to protect data.
const REFUSED: i32 = 4;

#[test]
fn reads_refuse_a_partially_restored_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(d, &["--db", "part.redb", "kv", "put", "a", "1"]);
    assert_eq!(ok(d, &["--db", "part.redb", "dump"]).lines().count(), 1);
    // What an interrupted restore leaves: its marker beside some of the data.
    let url = d.join("part.redb").to_str().expect("utf8").to_string();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let engine = tito::open::open_engine(&url, tito::Mode::Existing)
                .await
                .expect("open");
            let tx = engine.begin().await.expect("begin");
            tx.put(
                tito_capture::keys::META_RESTORE_IN_PROGRESS.to_vec(),
                b"{}".to_vec(),
            )
            .expect("put");
            tx.commit().await.expect("commit");
            engine.close().await.expect("close");
        });
    for args in [
        vec!["--db", "part.redb", "dump"],
        vec!["--db", "part.redb", "kv", "get", "a"],
        vec!["--db", "part.redb", "kv", "scan"],
        vec!["--db", "part.redb", "kv", "put", "b", "2"],
    ] {
        let o = tito(d, &args);
        assert_eq!(o.status.code(), Some(REFUSED), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("unfinished restore"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?} printed data");
    }
}
