//! Write a generated backup root of the original module into a directory, with the
//! re-implemented original writer: `KEYS` application writes, one full backup, then `RUNS`
//! shipping runs that each change and delete 1% of the keys.
//!
//! ```sh
//! cargo run --release -p tito-legacy --example write_root -- /tmp/old 1000000 10
//! tito import-legacy --from /tmp/old --target /tmp/imported.redb
//! ```

use std::sync::Arc;

use serde_json::json;
use tito_legacy::original::{Clock, Config, Source, Writer};
use tito_store::{LocalStore, Store};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: write_root DIR KEYS [RUNS]";
    let dir = args.get(1).expect(usage);
    let keys: u64 = args.get(2).expect(usage).parse().expect(usage);
    let runs: u64 = args.get(3).map_or(0, |r| r.parse().expect(usage));
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir).expect("store directory"));
    let clock = Clock::at(1_764_000_000_000);
    let writer = Writer {
        store,
        config: Config {
            full_backup_interval_secs: 1_000_000_000,
            ..Config::default()
        },
        clock: clock.clone(),
    };
    let mut src = Source::default();
    let value = |i: u64, round: u64| json!({"id": i, "round": round, "name": format!("item {i}"), "tags": ["a", "b"], "price": i as f64 / 100.0});
    for i in 0..keys {
        src.put_raw(
            format!("table:items:{i:010}").as_bytes(),
            &serde_json::to_vec(&value(i, 0)).expect("json"),
        );
    }
    clock.advance(1000);
    writer.run_backup(&mut src).await.expect("full backup");
    for round in 1..=runs {
        for j in 0..keys / 100 {
            clock.advance(1);
            let i = (j * 97 + round * 13) % keys;
            let key = format!("table:items:{i:010}");
            if j % 5 == 0 {
                src.delete(&clock, &key);
            } else {
                src.put(&clock, &key, &value(i, round));
            }
        }
        clock.set((clock.now_secs() + 60) * 1000);
        writer.run_backup(&mut src).await.expect("shipping run");
    }
    let table = src.map.keys().filter(|k| k.starts_with(b"table:")).count();
    println!("wrote a root of {keys} keys and {runs} runs to {dir}: {table} keys at the end");
}
