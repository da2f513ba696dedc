//! The local transaction manager under commit faults that only a blocking store shows:
//! a commit future dropped while its blocking commit runs, and a commit that lands but
//! reports an error while the counters cannot be read back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tito_engine::local::{Batch, LocalEngine, LocalStore, StoreMeta};
use tito_engine::memory::{MemorySnapshot, MemoryStore};
use tito_engine::{Engine, EngineError, Result};

/// A memory store that blocks like a disk, with switches for the faults under test.
#[derive(Default)]
struct FaultyStore {
    inner: MemoryStore,
    /// While true, `apply` waits (after announcing it entered) until it is cleared.
    hold: Gate,
    /// The next `apply` lands, then reports an unknown outcome.
    land_then_fail: AtomicBool,
    /// `snapshot` fails while set.
    snapshot_fails: AtomicBool,
    /// Number of `apply` calls that finished.
    applied: Mutex<u64>,
}

#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>, // (closed, someone is waiting)
    changed: Condvar,
}

impl Gate {
    fn close(&self) {
        self.state.lock().unwrap().0 = true;
    }
    fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        if s.0 {
            s.1 = true;
            self.changed.notify_all();
            while s.0 {
                s = self.changed.wait(s).unwrap();
            }
        }
    }
    fn waiting(&self) -> bool {
        self.state.lock().unwrap().1
    }
}

impl LocalStore for FaultyStore {
    type Snapshot = MemorySnapshot;
    const KIND: &'static str = "faulty";
    const BLOCKING: bool = true;
    const PROCESS_EXCLUSIVE: bool = true;

    fn snapshot(&self) -> Result<MemorySnapshot> {
        if self.snapshot_fails.load(Ordering::SeqCst) {
            return Err(EngineError::Backend("injected: snapshot failed".into()));
        }
        self.inner.snapshot()
    }

    fn apply(&self, batch: &Batch, meta: StoreMeta) -> Result<()> {
        self.hold.pass();
        self.inner.apply(batch, meta)?;
        *self.applied.lock().unwrap() += 1;
        if self.land_then_fail.swap(false, Ordering::SeqCst) {
            return Err(EngineError::CommitUnknown(
                "injected: applied, outcome lost".into(),
            ));
        }
        Ok(())
    }
}

fn engine() -> Arc<LocalEngine<FaultyStore>> {
    Arc::new(LocalEngine::with_meta(
        FaultyStore::default(),
        StoreMeta::default(),
    ))
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("condition never became true");
}

/// A writer whose commit future is dropped (a `select!` that took another branch) while
/// its blocking commit is still running must still conflict a reader that began before
/// it: its write set has to be recorded although its future is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_commit_future_keeps_conflict_tracking() {
    let e = engine();
    let reader = e.begin().await.unwrap();
    assert_eq!(reader.get(b"k").await.unwrap(), None);
    let writer = e.begin().await.unwrap();
    writer.put(b"k".to_vec(), b"v".to_vec()).unwrap();

    e.store().hold.close();
    let store = e.clone();
    tokio::select! {
        r = writer.commit() => panic!("the commit cannot finish while held: {r:?}"),
        () = wait_until(|| store.store().hold.waiting()) => {}
    }
    // The commit future is dropped now; its blocking commit waits inside `apply`.
    e.store().hold.open();
    wait_until(|| *e.store().applied.lock().unwrap() == 1).await;
    // Let the blocking commit record its write set.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    reader.put(b"other".to_vec(), b"x".to_vec()).unwrap();
    match reader.commit().await {
        Err(EngineError::Conflict(_)) => {}
        other => {
            panic!("the reader read k, which a later commit wrote: must conflict, got {other:?}")
        }
    }
}

/// A stamped commit that lands but reports an error, while the counters cannot be read
/// back, must not let the next commit reuse its stamp (its LSN).
#[tokio::test]
async fn a_landed_commit_with_unknown_counters_never_reuses_its_stamp() {
    let e = engine();
    let first = e.begin().await.unwrap();
    first
        .put_stamped(b"log/".to_vec(), b"one".to_vec())
        .unwrap();
    e.store().land_then_fail.store(true, Ordering::SeqCst);
    e.store().snapshot_fails.store(true, Ordering::SeqCst);
    assert!(first.commit().await.is_err());

    // While the counters cannot be read, a stamped commit must fail rather than guess.
    let blind = e.begin().await;
    if let Ok(tx) = blind {
        tx.put_stamped(b"log/".to_vec(), b"blind".to_vec()).unwrap();
        assert!(
            tx.commit().await.is_err(),
            "a commit with unknown counters must fail"
        );
    }

    e.store().snapshot_fails.store(false, Ordering::SeqCst);
    let second = e.begin().await.unwrap();
    second
        .put_stamped(b"log/".to_vec(), b"two".to_vec())
        .unwrap();
    let info = second.commit().await.unwrap();
    assert_eq!(
        info.stamp.expect("stamped").version,
        2,
        "stamp 1 went to the commit that landed"
    );
    let view = e.read_view().await.unwrap();
    let one = view
        .get(&[b"log/".as_slice(), &1u64.to_be_bytes()].concat())
        .await
        .unwrap()
        .expect("record 1 kept");
    assert!(one.ends_with(b"one"), "record 1 was overwritten");
}

/// `reset_version` sets the counter down after a wipe; stamps continue densely from it.
#[tokio::test]
async fn reset_version_continues_stamps_after_the_given_version() {
    let e = engine();
    e.advance_version(40).await.unwrap();
    e.reset_version(7).await.unwrap();
    let tx = e.begin().await.unwrap();
    tx.put_stamped(b"log/".to_vec(), b"x".to_vec()).unwrap();
    assert_eq!(tx.commit().await.unwrap().stamp.unwrap().version, 8);
    assert!(e.process_exclusive());
}
