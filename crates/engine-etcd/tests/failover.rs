//! Failover: with stamped read-modify-write transactions running, kill the leader, then
//! a follower, and bring each back. Commits keep succeeding through the other
//! endpoints; no acknowledged commit is lost, none applies twice, and the log of
//! stamped records stays dense.
//!
//! Members are killed and restarted with `scripts/start-etcd.sh kill|start N`, so this
//! needs the cluster that script started.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tito_engine::{Engine, EngineError, KeyRange};

fn script(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/start-etcd.sh"))
        .args(args)
        .current_dir(&root)
        .output()
        .expect("run scripts/start-etcd.sh");
    assert!(
        out.status.success(),
        "scripts/start-etcd.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One writer's step: increment its counter key and append a stamped log record.
/// Returns true once the increment is known to be committed.
async fn step(engine: &dyn Engine, key: &[u8], expect: u64) -> bool {
    let attempt = async {
        let tx = engine.begin().await?;
        let cur = tx
            .get(key)
            .await?
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
        assert_eq!(
            cur,
            expect,
            "writer {:?}: acknowledged commit lost or applied twice",
            String::from_utf8_lossy(key)
        );
        tx.put(key.to_vec(), (cur + 1).to_be_bytes().to_vec())?;
        tx.put_stamped(b"log/".to_vec(), key.to_vec())?;
        tx.commit().await
    };
    match attempt.await {
        Ok(_) => true,
        Err(EngineError::CommitUnknown(_)) => {
            // Resolve by reading the writer's own key back (reads retry across failover).
            loop {
                let Ok(tx) = engine.begin().await else {
                    continue;
                };
                match tx.get(key).await {
                    Ok(v) => {
                        let now =
                            v.map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
                        assert!(now == expect || now == expect + 1, "counter jumped");
                        return now == expect + 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        // Conflicts and transient read failures: try again.
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_member_failures() {
    let engine: Arc<dyn Engine> = common::engine().await;
    script(&[]); // the whole cluster is up (reused)
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u32 {
        let (engine, stop, acked) = (engine.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let key = format!("w/{w}").into_bytes();
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if step(engine.as_ref(), &key, done).await {
                    done += 1;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            done
        }));
    }
    let progress = |label: &'static str| {
        let acked = acked.clone();
        async move {
            let before = acked.load(Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while acked.load(Ordering::Relaxed) < before + 10 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no progress {label}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    progress("before any failure").await;
    let leader = script(&["leader"]);
    script(&["kill", &leader]);
    progress("with the old leader dead").await;
    script(&["start", &leader]);
    progress("after the old leader came back").await;
    let follower = if leader == "1" { "2" } else { "1" };
    script(&["kill", follower]);
    progress("with a follower dead").await;
    script(&["start", follower]);
    progress("after the follower came back").await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for (w, t) in writers.into_iter().enumerate() {
        let done = t.await.expect("writer");
        let tx = engine.begin().await.unwrap();
        let v = tx
            .get(format!("w/{w}").as_bytes())
            .await
            .unwrap()
            .map(|v| u64::from_be_bytes(v.try_into().unwrap()));
        assert_eq!(
            v.unwrap_or(0),
            done,
            "writer {w}: committed state differs from acknowledged commits"
        );
        total += done;
    }
    let tx = engine.begin().await.unwrap();
    let log = tx
        .scan(&KeyRange::prefix(b"log/"), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        log.len() as u64,
        total,
        "one log record per committed transaction"
    );
    for (i, (k, _)) in log.iter().enumerate() {
        let version = u64::from_be_bytes(k[4..12].try_into().unwrap());
        assert_eq!(version, i as u64 + 1, "log versions not dense");
    }
    assert_eq!(
        script(&["status"]).matches("healthy").count()
            - script(&["status"]).matches("unhealthy").count(),
        3
    );
}
