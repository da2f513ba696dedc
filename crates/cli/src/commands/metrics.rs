//! Live lag of a database and the Prometheus endpoint of `tito backup --continuous --metrics`
//! (of a database's backup, or of an etcd cluster's backup by watch).
//!
//! The endpoint is a minimal HTTP/1.1 responder on tokio: `GET /metrics` (or `/`) answers
//! the text exposition format, anything else 404. One request per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tito_backup::{BackupService, StatsSnapshot};
use tito_capture::Db;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::exit::{CliError, Result, UNAVAILABLE};
use crate::fmt::now_ms;

pub use tito::Lag;

/// The live lag of `db` (see [`tito::live_lag`]).
pub async fn live_lag(db: &Db) -> Result<Lag> {
    Ok(tito::live_lag(db).await?)
}

/// The Prometheus text for `stats` and `lag` at `now`.
pub fn render(stats: &StatsSnapshot, lag: &Lag, now: u64) -> String {
    let snapshot_age = if stats.last_snapshot_ms > 0 {
        now.saturating_sub(stats.last_snapshot_ms) as f64 / 1000.0
    } else {
        -1.0
    };
    let rows: [(&str, &str, &str, f64); 10] = [
        (
            "tito_backup_shipped_lsn",
            "gauge",
            "Last LSN durable in the store.",
            stats.shipped_lsn as f64,
        ),
        (
            "tito_backup_lag_records",
            "gauge",
            "Committed records not yet shipped.",
            lag.records as f64,
        ),
        (
            "tito_backup_lag_seconds",
            "gauge",
            "Age of the oldest unshipped record.",
            lag.age_ms as f64 / 1000.0,
        ),
        (
            "tito_backup_records_shipped_total",
            "counter",
            "Records shipped since start.",
            stats.records_shipped as f64,
        ),
        (
            "tito_backup_segments_total",
            "counter",
            "Segments written since start.",
            stats.segments as f64,
        ),
        (
            "tito_backup_bytes_uploaded_total",
            "counter",
            "Bytes uploaded since start.",
            stats.bytes_uploaded as f64,
        ),
        (
            "tito_backup_snapshots_total",
            "counter",
            "Snapshots taken since start.",
            stats.snapshots as f64,
        ),
        (
            "tito_backup_snapshot_age_seconds",
            "gauge",
            "Age of the newest snapshot (-1: none known).",
            snapshot_age,
        ),
        (
            "tito_backup_errors_total",
            "counter",
            "Failed backup rounds since start.",
            stats.errors as f64,
        ),
        (
            "tito_backup_last_round_timestamp_seconds",
            "gauge",
            "When the last round ended.",
            stats.last_round_ms as f64 / 1000.0,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}

/// What the endpoint reports at each request: a backup's counters and its live lag.
pub type Source = Arc<dyn Fn() -> BoxFuture<'static, (StatsSnapshot, Lag)> + Send + Sync>;

/// The metrics of a database's backup: the service's counters, and the records still in
/// the database's log.
pub fn of_service(service: Arc<BackupService>) -> Source {
    Arc::new(move || {
        let service = service.clone();
        Box::pin(async move {
            let lag = live_lag(service.db()).await.unwrap_or_default();
            (service.stats().snapshot(), lag)
        })
    })
}

/// The metrics of an etcd cluster's backup by watch: the shipper's counters, and the
/// revisions received and not yet shipped (their age from when Tito observed them).
pub fn of_watch(backup: Arc<tito_etcd_watch::WatchBackup>) -> Source {
    Arc::new(move || {
        let backup = backup.clone();
        Box::pin(async move {
            let u = backup.unshipped();
            let lag = Lag {
                records: u.records,
                oldest_lsn: u.oldest_lsn,
                newest_lsn: u.newest_lsn,
                oldest_time_ms: u.oldest_time_ms,
                age_ms: match u.oldest_time_ms {
                    0 => 0,
                    t => now_ms().saturating_sub(t),
                },
            };
            (backup.stats().snapshot(), lag)
        })
    })
}

/// Bind `addr` now (so a bad address fails before backup starts), then serve the metrics
/// `source` reports until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    source: Source,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::new(
            UNAVAILABLE,
            format!("cannot serve metrics on {addr}: {e}; pick another --metrics address"),
        )
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    let handle = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let source = source.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &source).await {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
    });
    Ok((local, handle))
}

async fn answer(mut stream: tokio::net::TcpStream, source: &Source) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head (bounded in size and time).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path == "/" {
        let (stats, lag) = source().await;
        ("200 OK", render(&stats, &lag, now_ms()))
    } else {
        ("404 Not Found", "not found: try /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_once() {
        let stats = StatsSnapshot {
            shipped_lsn: 42,
            last_snapshot_ms: 1_000,
            ..StatsSnapshot::default()
        };
        let lag = Lag {
            records: 3,
            age_ms: 1500,
            ..Lag::default()
        };
        let text = render(&stats, &lag, 11_000);
        assert!(text.contains("\ntito_backup_shipped_lsn 42\n"), "{text}");
        assert!(text.contains("\ntito_backup_lag_records 3\n"));
        assert!(text.contains("\ntito_backup_lag_seconds 1.5\n"));
        assert!(text.contains("\ntito_backup_snapshot_age_seconds 10\n"));
        assert_eq!(text.matches("# TYPE").count(), 10);
    }

    #[tokio::test]
    async fn lag_counts_unshipped_records() {
        let engine = tito_engine::open("memory://").await.expect("engine");
        let db = Db::open(engine).await.expect("db");
        assert_eq!(live_lag(&db).await.expect("lag"), Lag::default());
        for i in 0..3u8 {
            db.transaction(|txn| async move { txn.put(vec![b'k', i], vec![i]) })
                .await
                .expect("put");
        }
        let lag = live_lag(&db).await.expect("lag");
        assert_eq!((lag.records, lag.oldest_lsn, lag.newest_lsn), (3, 1, 3));
        assert!(lag.oldest_time_ms > 0 && lag.age_ms < 60_000);
    }
}
