//! The peers phase with no peer on `PATH`: each peer is skipped with a message naming the
//! missing tool and the install script, the run still succeeds with Tito's side measured.
//! (Alone in its test binary: it changes the process's `PATH`.)

use tito_bench::{BenchOptions, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_peer_is_skipped_with_a_message() {
    let empty = tempfile::tempdir().expect("temp dir");
    // SAFETY: set before the runtime's work starts any thread that reads the environment;
    // this binary holds this one test.
    unsafe { std::env::set_var("PATH", empty.path()) };
    assert!(tito_bench::peers::find_tool("litestream").is_none());

    let opts = BenchOptions {
        keys: 500,
        phases: vec![Phase::Peers],
        ..BenchOptions::tiny()
    };
    let report = tito_bench::run(opts)
        .await
        .expect("a skipped peer is no failure");
    assert!(report.snapshot.is_some(), "Tito's side still runs");
    let p = report.peers.as_ref().expect("peers figures");
    assert!(p.litestream.is_none() && p.pgbackrest.is_none());
    let names: Vec<&str> = p.skipped.iter().map(|s| s.peer.as_str()).collect();
    assert_eq!(names, ["litestream", "pgbackrest"], "{:?}", p.skipped);
    for s in &p.skipped {
        assert!(
            s.reason.contains("not found on PATH") && s.reason.contains("scripts/install-peers.sh"),
            "{}",
            s.reason
        );
    }
    let table = report.render_table();
    for peer in ["litestream", "pgbackrest"] {
        assert!(table.contains(&format!("{peer} (peer) ")), "{table}");
    }
    assert!(table.contains("skipped"), "{table}");
}
