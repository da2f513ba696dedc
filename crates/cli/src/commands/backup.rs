//! `tito backup`: one round (for cron), or `--continuous` shipping every interval with
//! snapshots when due, optional Prometheus metrics, until interrupted (Ctrl-C / SIGTERM).

use std::time::Instant;

use tito_backup::{BackupConfig, BackupResult};
use tokio::sync::watch;

use crate::args::BackupArgs;
use crate::commands::{metrics, open_service};
use crate::config::Settings;
use crate::exit::Result;
use crate::fmt;

/// The backup config from flags and the config file.
pub fn config(settings: &Settings, args: &BackupArgs) -> Result<BackupConfig> {
    Ok(BackupConfig {
        ship_interval: settings.interval(args.interval)?,
        snapshot_every: settings.snapshot_every(args.snapshot_every)?,
        snapshot_every_records: args
            .snapshot_every_records
            .or(settings.file.backup.snapshot_every_records),
        wait_for_lease: args.wait_for_lease || settings.file.backup.wait_for_lease.unwrap_or(false),
        compression_level: settings.compression_level()?,
        ..BackupConfig::default()
    })
}

/// One line about a round.
pub fn summary(r: &BackupResult, elapsed: std::time::Duration) -> String {
    let mut s = format!(
        "shipped {} records in {} segments ({}) on timeline {}; the store holds the log through LSN {}",
        r.shipped.records,
        r.shipped.segments,
        fmt::bytes(r.shipped.bytes),
        r.shipped.timeline,
        r.shipped.shipped_lsn
    );
    if let Some(snap) = &r.snapshot {
        s.push_str(&format!(
            "; snapshot at LSN {}: {} pairs, {} chunks, {}",
            snap.lsn,
            snap.pairs,
            snap.chunks,
            fmt::bytes(snap.bytes)
        ));
    }
    s.push_str(&format!(" ({})", fmt::duration(elapsed)));
    s
}

/// `tito backup`.
pub async fn run(settings: &Settings, args: &BackupArgs) -> Result<()> {
    let config = config(settings, args)?;
    let metrics_addr = settings.metrics(args.metrics)?;
    let service = open_service(settings, config.clone()).await?;
    if !args.continuous {
        let started = Instant::now();
        let round = service.run_backup().await;
        // Give the lease up even after a failed round, so the next run need not wait.
        let released = service.release_lease().await;
        let round = round?;
        released?;
        println!("{}", summary(&round, started.elapsed()));
        return Ok(());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_task = match metrics_addr {
        Some(addr) => {
            let (local, task) = metrics::serve(addr, service.clone(), stop_rx.clone()).await?;
            eprintln!("serving Prometheus metrics on http://{local}/metrics");
            Some(task)
        }
        None => None,
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("stopping: shipping what is committed, then releasing the lease");
        let _ = stop_tx.send(true);
    });
    eprintln!(
        "continuous backup: shipping every {}, snapshots {}; Ctrl-C to stop",
        fmt::duration(config.ship_interval),
        config
            .snapshot_every
            .map_or("only when none exists".to_string(), |d| format!(
                "every {}",
                fmt::duration(d)
            ))
    );
    let started = Instant::now();
    let result = service.run_continuous(stop_rx).await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    result?;
    let s = service.stats().snapshot();
    println!(
        "shipped {} records in {} segments, {} snapshots, {} uploaded, {} failed rounds; log shipped through LSN {} ({})",
        s.records_shipped,
        s.segments,
        s.snapshots,
        fmt::bytes(s.bytes_uploaded),
        s.errors,
        s.shipped_lsn,
        fmt::duration(started.elapsed())
    );
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[test]
    fn flags_and_file_make_the_config() {
        let cli = crate::args::Cli::try_parse_from([
            "tito",
            "backup",
            "--continuous",
            "--interval",
            "200ms",
            "--snapshot-every",
            "6h",
        ])
        .expect("args");
        let crate::args::Command::Backup(args) = &cli.command else {
            panic!("backup")
        };
        let settings = Settings {
            file: crate::config::parse(
                "[backup]\ninterval = \"5s\"\nsnapshot_every_records = 10\ncompression_level = 9\n",
            )
            .expect("file"),
            ..Settings::default()
        };
        let c = config(&settings, args).expect("config");
        assert_eq!(c.ship_interval, Duration::from_millis(200));
        assert_eq!(c.snapshot_every, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(c.snapshot_every_records, Some(10));
        assert!(!c.wait_for_lease);
        assert_eq!(c.compression_level, 9);
    }
}
