//! The engine conformance suite against the etcd test cluster, one fresh namespace per test.

mod common;

tito_engine::conformance_tests!(common::engine());

/// Data and the stamp counter survive closing and reopening the same namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_durable_reopen() {
    let config = common::config();
    tito_engine::conformance::check_durable_reopen(|| {
        let config = config.clone();
        async move {
            std::sync::Arc::new(common::engine_with(config).await)
                as std::sync::Arc<dyn tito_engine::Engine>
        }
    })
    .await;
}
