//! A small shop on Tito: each order and its "paid" event are written in one captured
//! transaction, a worker pulls due events and acknowledges some of them, and continuous
//! backup runs in the same process. While it runs, the `tito` CLI works beside it
//! (`tito --db shop.redb kv get order:0001`, `dump`, `status`, `restore-point`...).
//!
//! ```text
//! cargo run -p tito --example shop -- shop.redb backups 20
//! ```
//!
//! Prints `ready ORDERS ACKED SHIPPED_LSN` once the orders are written and shipped, then
//! serves until stdin closes or Ctrl-C, then stops gracefully (ships what is committed)
//! and prints `stopped SHIPPED_LSN`. Its body, [`run`], is also run by the crate's tests.

use std::future::Future;
use std::time::Duration;

use tito::queue::{self, Event};
use tito::{BackupConfig, Tito};

/// Queue partitions of the shop's events.
pub const PARTITIONS: u32 = 4;

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Orders written (`order:NNNN` = `paid`).
    pub orders: u32,
    /// Events acknowledged by the worker (the first half of the orders).
    pub acked: u32,
    /// The last LSN durable in the store after the graceful stop.
    pub shipped_lsn: u64,
}

/// Write `orders` orders into `db_url` while backing up continuously to `store_url`, have
/// the worker acknowledge the first half of the events, label `orders-written`, call
/// `ready`, wait for `until`, then close gracefully.
pub async fn run(
    db_url: &str,
    store_url: &str,
    orders: u32,
    ready: impl FnOnce(&Summary),
    until: impl Future<Output = ()>,
) -> tito::Result<Summary> {
    let app = Tito::open(db_url).await?;
    let config = BackupConfig {
        ship_interval: Duration::from_millis(100),
        ..BackupConfig::default()
    };
    let backup = app.start_backup(store_url, config).await?;
    for i in 1..=orders {
        let key = format!("order:{i:04}");
        app.transaction(|txn| {
            let key = key.clone();
            async move {
                txn.put(key.clone().into_bytes(), b"paid".to_vec())?;
                let event = Event::new(format!("paid-{i:04}"), key, "paid", 0, 0);
                queue::publish(&txn, PARTITIONS, event)?;
                Ok::<_, tito::Error>(())
            }
        })
        .await?;
    }
    // The worker: every due event of every partition; the first half are handled.
    let mut acked = 0;
    for partition in 0..PARTITIONS {
        for event in queue::pull(app.db(), partition, u64::MAX, usize::MAX).await? {
            let n: u32 = String::from_utf8_lossy(&event.event.id[5..])
                .parse()
                .unwrap_or(u32::MAX);
            if n > orders / 2 {
                continue;
            }
            let done = app
                .transaction(|txn| {
                    let event = event.clone();
                    async move { Ok::<_, tito::Error>(queue::ack(&txn, &event).await?) }
                })
                .await?;
            acked += u32::from(done);
        }
    }
    backup.sync().await?;
    backup.restore_point("orders-written").await?;
    let status = backup.status().await?;
    ready(&Summary {
        orders,
        acked,
        shipped_lsn: status.stats.shipped_lsn,
    });
    until.await;
    let service = backup.service().clone();
    app.close().await?;
    Ok(Summary {
        orders,
        acked,
        shipped_lsn: service.stats().snapshot().shipped_lsn,
    })
}

#[allow(dead_code)] // the crate's tests include this file for `run`
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(db), Some(store)) = (args.first(), args.get(1)) else {
        eprintln!("usage: shop DB STORE [ORDERS]");
        return std::process::ExitCode::from(2);
    };
    let orders = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20);
    let until = async {
        // Until stdin closes (a test or a shell pipeline ends) or Ctrl-C.
        let stdin = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        });
        tokio::select! {
            _ = stdin => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let ready = |s: &Summary| {
        println!("ready {} {} {}", s.orders, s.acked, s.shipped_lsn);
        use std::io::Write;
        let _ = std::io::stdout().flush();
    };
    match run(db, store, orders, ready, until).await {
        Ok(s) => {
            println!("stopped {}", s.shipped_lsn);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shop: {}", tito::error::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
