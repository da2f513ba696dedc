//! A `tito backup` forwarded through the control socket while the holder is still starting
//! its own continuous backup (the socket is served from the open on): the one-shot service
//! and the continuous backup must not fight over the shipper lease. Found by the crash
//! harness (crates/cli/tests/crash): the continuous backup died with "another backup
//! shipper holds this database's lease" and the forwarded command lost its connection.

use std::time::Duration;

use tito::control::protocol::{Reply, Request, Target};
use tito::control::{Client, Probe};
use tito::{BackupConfig, Tito};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_backup_while_the_holder_starts_its_backup_does_not_end_it() {
    for round in 0..10 {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.redb");
        let store = dir.path().join("backups");
        let store_url = store.to_str().expect("utf8").to_string();
        let app = Tito::open(db.to_str().expect("utf8")).await.expect("open");
        app.transaction(|txn| async move { txn.put(b"k".to_vec(), b"v".to_vec()) })
            .await
            .expect("put");
        let Probe::Held { client, .. } = Client::probe(&db).await.expect("probe") else {
            panic!("the socket is served from the open on")
        };
        let target = Target {
            store: Some(store_url.clone()),
            compression_level: None,
        };
        let forwarded =
            tokio::spawn(async move { client.call(Request::Backup(target), |_| Ok(())).await });
        // Let the forwarded request get going (either order must work).
        tokio::time::sleep(Duration::from_millis(round % 5)).await;
        let config = BackupConfig {
            ship_interval: Duration::from_millis(50),
            ..BackupConfig::default()
        };
        let backup = app
            .start_backup(&store_url, config)
            .await
            .unwrap_or_else(|e| panic!("round {round}: continuous backup did not start: {e}"));
        let reply = forwarded.await.expect("task");
        assert!(
            matches!(reply, Ok(Reply::Backup { .. })),
            "round {round}: forwarded backup: {reply:?}"
        );
        assert!(backup.is_running(), "round {round}");
        app.close().await.expect("close");
    }
}
