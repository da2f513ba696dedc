//! `tito backup`: one round (for cron), or `--continuous` shipping every interval with
//! snapshots when due, optional Prometheus metrics, until interrupted (Ctrl-C / SIGTERM).

use std::time::Instant;

use tito_backup::{BackupConfig, BackupResult};
use tokio::sync::watch;

use crate::args::BackupArgs;
use crate::commands::{BackupOn, backup_on, metrics, s3_hint};
use crate::config::Settings;
use crate::exit::Result;
use crate::exit::{self, CliError};
use crate::fmt;
use crate::held;
use crate::open::{Mode, engine_error, open_store};
use tito::control::protocol::{Reply, Request};

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
    if let Ok(tito::url::EngineUrl::EtcdWatch(url)) = tito::url::parse_engine_url(settings.db()?) {
        return watched(settings, args, config, &url).await;
    }
    if args.continuous {
        return continuous(settings, args, config).await;
    }
    let started = Instant::now();
    let round = match backup_on(settings, config).await? {
        BackupOn::Local(service) => {
            let round = service.run_backup().await;
            // Give the lease up even after a failed round, so the next run need not wait.
            let released = service.release_lease().await;
            let round = round?;
            released?;
            round
        }
        BackupOn::Remote(client, target) => {
            match held::call(&client, Request::Backup(target)).await? {
                Reply::Backup(round) => round,
                other => return Err(held::unexpected(other)),
            }
        }
    };
    crate::outln!("{}", summary(&round, started.elapsed()))?;
    Ok(())
}

/// `tito backup --continuous`: holds the database through the library, so the CLI (and
/// its control socket) keeps working on it while the backup runs.
async fn continuous(settings: &Settings, args: &BackupArgs, config: BackupConfig) -> Result<()> {
    let signal = stop_signal();
    let metrics_addr = settings.metrics(args.metrics)?;
    let url = settings.db()?;
    let store_url = settings.store()?;
    // A typo is refused before the database is touched.
    tito::url::parse_store_url(store_url).map_err(|e| CliError::usage(e.to_string()))?;
    let options = tito::OpenOptions {
        mode: Mode::Existing,
        control: true,
    };
    let app = hold(url, options).await?;
    let started = match start(&app, store_url, config.clone()).await {
        Ok(b) => b,
        Err(e) => {
            let _ = app.close().await;
            return Err(e);
        }
    };
    let service = started.service().clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_task = match metrics_addr {
        Some(addr) => {
            match metrics::serve(addr, metrics::of_service(service.clone()), stop_rx.clone()).await
            {
                Ok((local, task)) => {
                    eprintln!("serving Prometheus metrics on http://{local}/metrics");
                    Some(task)
                }
                Err(e) => {
                    let _ = app.close().await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
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
    let clock = Instant::now();
    tokio::select! {
        () = signal => {
            eprintln!("stopping: shipping what is committed, then releasing the lease");
        }
        // Ended on its own: a lost lease, say. `close` returns its error.
        () = started.stopped() => {}
    }
    let _ = stop_tx.send(true);
    let result = app.close().await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    result?;
    let s = service.stats().snapshot();
    crate::outln!(
        "shipped {} records in {} segments, {} snapshots, {} uploaded, {} failed rounds; log shipped through LSN {} ({})",
        s.records_shipped,
        s.segments,
        s.snapshots,
        fmt::bytes(s.bytes_uploaded),
        s.errors,
        s.shipped_lsn,
        fmt::duration(clock.elapsed())
    )?;
    Ok(())
}

/// Open the database through the library (serving its control socket). A live holder is
/// refused; a lock without a holder (a short `tito` command) is waited out briefly.
async fn hold(url: &str, options: tito::OpenOptions) -> Result<tito::Tito> {
    let file = tito::open::redb_path(url);
    let mut attempt = 0;
    loop {
        if let Some(file) = &file {
            let probe = tito::control::Client::probe(file).await?;
            if let tito::control::Probe::Held { pid, .. } = probe {
                return Err(CliError::new(
                    exit::REFUSED,
                    format!(
                        "database {url} is held by the running Tito process {pid}; run continuous backup in that process (it may already run one: see `tito --db {url} status`)"
                    ),
                ));
            }
        }
        match tito::Tito::open_with(url, options.clone()).await {
            Ok(app) => return Ok(app),
            Err(tito::Error::Open(e)) if e.is_locked() && attempt < held::LOCKED_RETRIES => {
                attempt += 1;
                tokio::time::sleep(held::LOCKED_PAUSE).await;
            }
            Err(tito::Error::Open(e)) => return Err(engine_error(url, e)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Start the in-process backup of `app` to `store_url`, with the CLI's messages.
async fn start(app: &tito::Tito, store_url: &str, config: BackupConfig) -> Result<tito::Backup> {
    let store = open_store(store_url, Mode::Create).await?;
    let absolute = tito::open::absolute_store_url(store_url);
    app.start_backup_to(store, &absolute, config)
        .await
        .map_err(|e| s3_hint(store_url, e.into()))
}

/// The CLI error for a failed etcd watch backup.
fn watch_error(e: tito_etcd_watch::WatchError) -> CliError {
    use tito_etcd_watch::WatchError as W;
    match e {
        W::Backup(e) => e.into(),
        W::BadUrl { .. } => CliError::usage(e.to_string()),
        e @ W::Compacted { .. } => CliError::new(exit::INTEGRITY, e.to_string()),
        e => CliError::new(exit::UNAVAILABLE, e.to_string()),
    }
}

/// `tito backup --db etcd+watch://...`: back up an etcd cluster (or key prefix) that Tito
/// did not write: a snapshot at one revision, then a watch (LSN = revision).
async fn watched(
    settings: &Settings,
    args: &BackupArgs,
    config: BackupConfig,
    url: &str,
) -> Result<()> {
    let watch_config =
        tito_etcd_watch::WatchConfig::from_url(url).map_err(|e| CliError::usage(e.to_string()))?;
    let metrics_addr = settings.metrics(args.metrics)?;
    let store_url = settings.store()?;
    tito::url::parse_store_url(store_url).map_err(|e| CliError::usage(e.to_string()))?;
    let store = open_store(store_url, Mode::Create).await?;
    let backup = std::sync::Arc::new(
        tito_etcd_watch::WatchBackup::open(watch_config, store, config.clone())
            .await
            .map_err(watch_error)?,
    );
    let clock = Instant::now();
    let gap_lines = |gaps: &[tito_etcd_watch::Gap]| -> Result<()> {
        for g in gaps {
            crate::outln!(
                "warning: etcd compacted revisions {}..={} before they were watched: they are a gap in the backup (restorable again from the snapshot at revision {})",
                g.from,
                g.to,
                g.to
            )?;
        }
        Ok(())
    };
    if !args.continuous {
        let round = backup.run_once().await.map_err(watch_error)?;
        gap_lines(&round.gaps)?;
        let mut line = format!(
            "shipped {} revisions in {} segments ({}); the store holds the log through revision {}",
            round.shipped.records,
            round.shipped.segments,
            fmt::bytes(round.shipped.bytes),
            round.shipped.shipped_lsn
        );
        for snap in &round.snapshots {
            line.push_str(&format!(
                "; snapshot at revision {}: {} pairs, {}",
                snap.lsn,
                snap.pairs,
                fmt::bytes(snap.bytes)
            ));
        }
        line.push_str(&format!(" ({})", fmt::duration(clock.elapsed())));
        crate::outln!("{line}")?;
        return Ok(());
    }
    let signal = stop_signal();
    eprintln!(
        "continuous backup of {url} by watching it: shipping every {}; Ctrl-C to stop",
        fmt::duration(config.ship_interval)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_task = match metrics_addr {
        Some(addr) => {
            let (local, task) =
                metrics::serve(addr, metrics::of_watch(backup.clone()), stop_rx.clone()).await?;
            eprintln!("serving Prometheus metrics on http://{local}/metrics");
            Some(task)
        }
        None => None,
    };
    let run = backup.run_continuous(stop_rx);
    tokio::pin!(run);
    let result = tokio::select! {
        () = signal => {
            eprintln!("stopping: shipping what was received");
            let _ = stop_tx.send(true);
            run.await
        }
        r = &mut run => r,
    };
    if let Some(task) = metrics_task {
        task.abort();
    }
    result.map_err(watch_error)?;
    gap_lines(&backup.gaps())?;
    let s = backup.stats().snapshot();
    crate::outln!(
        "shipped {} revisions in {} segments, {} snapshots, {} uploaded; log shipped through revision {} ({})",
        s.records_shipped,
        s.segments,
        s.snapshots,
        fmt::bytes(s.bytes_uploaded),
        s.shipped_lsn,
        fmt::duration(clock.elapsed())
    )?;
    Ok(())
}

/// Ctrl-C or SIGTERM. SIGTERM is hooked when this is called (not when first polled), so a
/// service manager's stop right after start is never the default "terminate now".
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
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
