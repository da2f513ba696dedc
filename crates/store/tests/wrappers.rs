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
