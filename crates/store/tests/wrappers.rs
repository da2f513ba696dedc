//! Retry and fault-injection wrappers: retries only what is transient, bounded, and a
//! lost acknowledgement is recognised on retry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use tito_store::{
    Fault, FaultPlan, FaultStore, MemoryStore, RetryPolicy, RetryStore, Store, StoreError,
};

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

fn stack() -> (Arc<MemoryStore>, FaultPlan, RetryStore) {
    let mem = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let fault = Arc::new(FaultStore::new(mem.clone(), plan.clone()));
    (mem, plan, RetryStore::new(fault, fast()))
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let (mem, plan, store) = stack();
    plan.fail_call(1, Fault::Transient)
        .fail_call(2, Fault::Transient);
    store
        .put("k", Bytes::from_static(b"v"))
        .await
        .expect("third attempt succeeds");
    assert_eq!(plan.calls(), 3);
    assert_eq!(
        mem.get("k").await.expect("stored"),
        Bytes::from_static(b"v")
    );
}

#[tokio::test]
async fn permanent_failures_pass_through_at_once() {
    let (_, plan, store) = stack();
    plan.fail_call(1, Fault::Permanent);
    let err = store.get("some/key").await.expect_err("permanent");
    assert!(
        matches!(err, StoreError::Permanent { .. }) && err.to_string().contains("some/key"),
        "{err}"
    );
    assert_eq!(plan.calls(), 1, "no retry of a permanent error");
    let err = store.get("absent").await.expect_err("not found");
    assert!(err.is_not_found());
    assert_eq!(plan.calls(), 2, "NotFound is not retried");
}

#[tokio::test]
async fn retries_are_bounded() {
    let (_, plan, store) = stack();
    for n in 1..=10 {
        plan.fail_call(n, Fault::Transient);
    }
    let err = store.head("k").await.expect_err("gives up");
    assert!(err.is_transient());
    assert_eq!(plan.calls(), 4, "max_attempts calls");
}

#[tokio::test]
async fn lost_ack_on_put_if_absent_is_recognised_on_retry() {
    let (mem, plan, store) = stack();
    plan.fail_call(1, Fault::LostAck);
    assert!(
        store
            .put_if_absent("k", Bytes::from_static(b"mine"))
            .await
            .expect("created")
    );
    assert_eq!(
        mem.get("k").await.expect("stored"),
        Bytes::from_static(b"mine")
    );
    // Someone else's object is not mistaken for ours.
    plan.fail_call(plan.calls() + 1, Fault::Transient);
    assert!(
        !store
            .put_if_absent("k", Bytes::from_static(b"other"))
            .await
            .expect("exists")
    );
}

#[tokio::test]
async fn lost_ack_put_is_stored_even_though_it_failed() {
    let mem = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let fault = FaultStore::new(mem.clone(), plan.clone());
    plan.fail_call(1, Fault::LostAck);
    let err = fault
        .put("k", Bytes::from_static(b"v"))
        .await
        .expect_err("ack lost");
    assert!(err.is_transient());
    assert_eq!(
        mem.get("k").await.expect("write happened"),
        Bytes::from_static(b"v")
    );
}

#[tokio::test]
async fn crash_fails_every_later_call_and_heal_recovers() {
    let mem = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let store = FaultStore::new(mem.clone(), plan.clone());
    plan.crash_from(2);
    store
        .put("a", Bytes::from_static(b"1"))
        .await
        .expect("call 1 ok");
    for _ in 0..3 {
        assert!(store.put("b", Bytes::from_static(b"2")).await.is_err());
    }
    let mut up = store.put_multipart("c").await;
    assert!(up.is_err(), "crashed");
    plan.heal();
    up = store.put_multipart("c").await;
    up.expect("healed").finish().await.expect("finish");
    assert!(mem.head("b").await.is_err(), "crashed writes did nothing");
    let ops: Vec<_> = plan.history().iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            "put",
            "put",
            "put",
            "put",
            "put_multipart",
            "put_multipart",
            "upload_finish"
        ]
    );
}

#[tokio::test]
async fn listing_resumes_after_a_transient_failure() {
    let (mem, plan, store) = stack();
    for i in 0..5 {
        mem.put(&format!("l/{i}"), Bytes::new()).await.expect("put");
    }
    plan.fail_call(1, Fault::Transient);
    let keys: Vec<_> = store
        .list("l/")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(keys, ["l/0", "l/1", "l/2", "l/3", "l/4"]);
    assert_eq!(plan.calls(), 2);
}

#[tokio::test]
async fn upload_finish_faults() {
    let (mem, plan, _) = stack();
    let store = FaultStore::new(mem.clone(), plan.clone());
    plan.fail_call(2, Fault::Permanent);
    let mut up = store.put_multipart("u").await.expect("open");
    up.write(Bytes::from_static(b"data")).await.expect("write");
    assert!(up.finish().await.is_err());
    assert!(
        mem.head("u")
            .await
            .expect_err("nothing stored")
            .is_not_found()
    );
    plan.fail_call(4, Fault::LostAck);
    let mut up = store.put_multipart("u").await.expect("open");
    up.write(Bytes::from_static(b"data")).await.expect("write");
    assert!(up.finish().await.is_err());
    assert_eq!(
        mem.get("u").await.expect("stored"),
        Bytes::from_static(b"data")
    );
}

#[tokio::test]
async fn body_faults_damage_what_is_read_and_written() {
    let mem = Arc::new(MemoryStore::new());
    let plan = FaultPlan::new();
    let store = FaultStore::new(mem.clone(), plan.clone());
    let body = Bytes::from_static(b"0123456789");
    mem.put("k", body.clone()).await.expect("put");
    plan.fail_call(1, Fault::Truncate)
        .fail_call(2, Fault::Alter);
    assert_eq!(
        store.get("k").await.expect("get"),
        Bytes::from_static(b"01234")
    );
    let altered = store.get("k").await.expect("get");
    assert_eq!(altered.len(), body.len());
    assert_eq!(
        altered
            .iter()
            .zip(body.iter())
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    assert_eq!(store.get("k").await.expect("get"), body, "call 3 is clean");
    // Streams: truncated ends early, altered differs in one bit.
    plan.fail_call(4, Fault::Truncate)
        .fail_call(5, Fault::Alter);
    let read = |s: futures::stream::BoxStream<'static, tito_store::Result<Bytes>>| async move {
        let chunks: Vec<Bytes> = s.try_collect().await.expect("stream");
        chunks.concat()
    };
    assert!(read(store.get_stream("k").await.expect("open")).await.len() < body.len());
    let altered = read(store.get_stream("k").await.expect("open")).await;
    assert_eq!(altered.len(), body.len());
    assert_ne!(&altered[..], &body[..]);
    // A damaged write stores the damage and says it succeeded.
    plan.fail_call(6, Fault::Truncate);
    store.put("w", body.clone()).await.expect("put");
    assert_eq!(
        mem.get("w").await.expect("stored"),
        Bytes::from_static(b"01234")
    );
    // Head and list are not bodies: they pass.
    plan.fail_call(7, Fault::Alter)
        .fail_call(8, Fault::Truncate);
    assert_eq!(store.head("k").await.expect("head").size, 10);
    let keys: Vec<_> = store
        .list("")
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(keys, ["k", "w"]);
}

#[tokio::test]
async fn a_slow_call_times_out_and_is_retried() {
    let (mem, plan, _) = stack();
    let fault = Arc::new(FaultStore::new(mem.clone(), plan.clone()));
    mem.put("k", Bytes::from_static(b"v")).await.expect("put");
    plan.fail_call(1, Fault::Delay(Duration::from_secs(30)));
    let store = RetryStore::new(
        fault.clone(),
        RetryPolicy {
            attempt_timeout: Some(Duration::from_millis(50)),
            ..fast()
        },
    );
    assert_eq!(
        store.get("k").await.expect("retried"),
        Bytes::from_static(b"v")
    );
    assert_eq!(plan.calls(), 2);
    // With one attempt, the timeout is the error: transient, naming the key.
    plan.fail_call(3, Fault::Delay(Duration::from_secs(30)));
    let once = RetryStore::new(
        fault,
        RetryPolicy {
            max_attempts: 1,
            attempt_timeout: Some(Duration::from_millis(50)),
            ..fast()
        },
    );
    let err = once.get("k").await.expect_err("timed out");
    assert!(
        err.is_transient() && err.to_string().contains("\"k\""),
        "{err}"
    );
}

#[tokio::test]
async fn no_retry_starts_after_the_deadline() {
    let (_, plan, _) = stack();
    let mem = Arc::new(MemoryStore::new());
    let fault = Arc::new(FaultStore::new(mem, plan.clone()));
    for n in 1..=100 {
        plan.fail_call(n, Fault::Transient);
    }
    let store = RetryStore::new(
        fault,
        RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(20),
            deadline: Duration::from_millis(100),
            attempt_timeout: None,
        },
    );
    assert!(store.get("k").await.expect_err("gives up").is_transient());
    // Delays of 10-20 ms within 100 ms: at most 11 attempts, far fewer than 100.
    assert!(plan.calls() <= 11, "{}", plan.calls());
    assert!(plan.calls() >= 2, "{}", plan.calls());
}

#[tokio::test]
async fn every_store_opened_from_a_url_retries() {
    // open() stacks a RetryStore on every backend (its behaviour is tested above);
    // open_backend() gives the bare backend.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tito_store::open(dir.path().to_str().expect("utf8"))
        .await
        .expect("open");
    assert!(format!("{store:?}").contains("RetryStore"), "{store:?}");
    let mem = tito_store::open("memory://").await.expect("open");
    assert!(format!("{mem:?}").contains("RetryStore"), "{mem:?}");
    let raw = tito_store::open_backend("memory://").await.expect("open");
    assert!(!format!("{raw:?}").contains("RetryStore"), "{raw:?}");
}
