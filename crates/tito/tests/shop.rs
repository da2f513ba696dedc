//! The example program's body, run on a redb file and a store directory, with the control
//! socket asked while it runs; then restores prove what it backed up.

#[allow(dead_code)]
#[path = "../examples/shop.rs"]
mod shop;

use std::sync::Arc;

use tito::control::protocol::{B64, Reply, Request};
use tito::control::{Client, Probe};
use tito::restore::{NoProgress, RestoreOptions, parse_target, restore};
use tito::{KeyRange, Repository, Tito};

async fn restored(store: &str, to: &str) -> Tito {
    let store = tito::open::open_store(store, tito::Mode::Existing)
        .await
        .expect("store");
    let repo = Repository::open(store).await.expect("repo");
    let app = Tito::open("memory://").await.expect("target");
    let opts = RestoreOptions::new(parse_target(to).expect("target"));
    restore(&repo, app.db().engine().clone(), &opts, &NoProgress)
        .await
        .expect("restore");
    app
}

async fn orders(app: &Tito) -> Vec<(Vec<u8>, Vec<u8>)> {
    let txn = app.begin().await.expect("txn");
    let pairs = txn
        .scan(&KeyRange::prefix(b"order:"), usize::MAX)
        .await
        .expect("scan");
    txn.rollback().await.expect("rollback");
    pairs
}

async fn pending(app: &Tito) -> usize {
    let mut n = 0;
    for p in 0..shop::PARTITIONS {
        n += tito::queue::pull(app.db(), p, u64::MAX, usize::MAX)
            .await
            .expect("pull")
            .len();
    }
    n
}

#[tokio::test]
async fn the_shop_backs_up_what_it_writes_and_answers_on_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("shop.redb");
    let store = dir.path().join("backups");
    let (db_url, store_url) = (db.to_str().expect("utf8"), store.to_str().expect("utf8"));
    let seen = Arc::new(std::sync::Mutex::new(None));
    let ready = |s: &shop::Summary| *seen.lock().expect("seen") = Some(s.clone());
    let db_file = db.clone();
    let until = async move {
        // Beside the running shop: its socket answers, with its data.
        let Probe::Held {
            client,
            backup_store,
            ..
        } = Client::probe(&db_file).await.expect("probe")
        else {
            panic!("the shop holds its database")
        };
        assert_eq!(backup_store.as_deref(), Some(store_url));
        let get = Request::Get {
            key: B64(b"order:0001".to_vec()),
        };
        let reply = client.call(get, |_| Ok(())).await.expect("get");
        assert_eq!(
            reply,
            Reply::Value {
                value: Some(B64(b"paid".to_vec()))
            }
        );
        let put = Request::Put {
            key: B64(b"note".to_vec()),
            value: B64(b"written through the socket".to_vec()),
        };
        client.call(put, |_| Ok(())).await.expect("put");
        let mut dumped = 0;
        let reply = client
            .call(Request::Dump, |page| {
                dumped += page.len();
                Ok(())
            })
            .await
            .expect("dump");
        assert_eq!(
            reply,
            Reply::Done {
                count: dumped as u64
            }
        );
        // 8 orders + the note + 4 pending events.
        assert_eq!(dumped, 8 + 1 + 4);
    };
    let summary = shop::run(db_url, store_url, 8, ready, until)
        .await
        .expect("shop");
    assert_eq!(seen.lock().expect("seen").clone().map(|s| s.acked), Some(4));
    assert_eq!((summary.orders, summary.acked), (8, 4));
    assert!(!tito::control::socket_path(&db).exists(), "socket removed");

    // Latest: every order, the note, the unacknowledged events.
    let latest = restored(store_url, "latest").await;
    assert_eq!(orders(&latest).await.len(), 8);
    assert_eq!(pending(&latest).await, 4);
    let txn = latest.begin().await.expect("txn");
    assert!(txn.get(b"note").await.expect("get").is_some());
    txn.rollback().await.expect("rollback");
    // The label was set before the note.
    let labelled = restored(store_url, "label:orders-written").await;
    assert_eq!(orders(&labelled).await.len(), 8);
    let txn = labelled.begin().await.expect("txn");
    assert!(txn.get(b"note").await.expect("get").is_none());
    txn.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_dropped_holders_socket_is_removed_by_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.redb");
    let url = db.to_str().expect("utf8");
    let app = Tito::open(url).await.expect("open");
    let sock = tito::control::socket_path(&db);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only");
    app.close().await.expect("close");
    // A stale socket (as a killed process leaves): a plain bound-then-dropped listener.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
    assert!(matches!(
        Client::probe(&db).await.expect("probe"),
        Probe::NotHeld
    ));
    let app = Tito::open(url).await.expect("reopen");
    assert!(matches!(
        Client::probe(&db).await.expect("probe"),
        Probe::Held { .. }
    ));
    app.close().await.expect("close");
}
