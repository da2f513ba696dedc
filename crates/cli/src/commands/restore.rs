//! `tito restore`: plan, verify, and restore into a target database.
//!
//! Everything that can be checked without the target is checked first (the `--to` form,
//! the target URL, the plan), so bad input never creates or touches the target. A target
//! file this command created is removed again if the restore fails or is a dry run.

use std::path::PathBuf;
use std::time::Duration;

use tito_restore::{RestoreError, RestoreOptions, RestoreResult, parse_target};

use crate::args::RestoreArgs;
use crate::commands::open_repository;
use crate::config::Settings;
use crate::exit::{CliError, Result};
use crate::fmt;
use crate::open::{CreatedFile, EngineUrl, Mode, open_engine, parse_engine_url};
use crate::progress::Reporter;

/// The text summary of a restore.
pub fn summary(r: &RestoreResult, target: &str) -> String {
    let plan = &r.plan;
    let base = if plan.snapshot.implicit_empty {
        "the empty database".to_string()
    } else {
        format!("snapshot at LSN {}", plan.snapshot.lsn)
    };
    let elapsed = Duration::from_millis(r.elapsed_ms);
    if r.dry_run {
        return format!(
            "dry run: would restore timeline {} into {target} from {base} ({} pairs) and {} segments, \
             up to LSN {}; all {} objects needed were verified ({} read); nothing was written",
            plan.timeline,
            plan.snapshot.total_count,
            plan.segments.len(),
            plan.stop_lsn,
            plan.objects().len(),
            fmt::bytes(r.bytes_downloaded)
        );
    }
    format!(
        "restored timeline {} into {target} up to LSN {} ({}): {} pairs from {base}, {} log records replayed, \
         {} pending queue events ({} re-partitioned); {} downloaded in {} ({})",
        plan.timeline,
        r.restored_lsn,
        fmt::time_ms(r.restored_time_ms),
        r.state_entries_restored,
        r.records_replayed,
        r.events_pending,
        r.events_repartitioned,
        fmt::bytes(r.bytes_downloaded),
        fmt::duration(elapsed),
        fmt::rate(
            r.state_entries_restored + r.records_replayed,
            elapsed,
            "entries"
        )
    )
}

/// `tito restore`.
pub async fn run(settings: &Settings, args: &RestoreArgs, json: bool) -> Result<()> {
    let target = parse_target(&args.to)?;
    if args.partitions == Some(0) {
        return Err(CliError::usage("--partitions must be at least 1"));
    }
    let url = parse_engine_url(&args.target)?;
    let created_file = CreatedFile::before_open(&url);
    // A forced restore stages verified objects beside a redb file (the disk that must
    // hold the restored database anyway), elsewhere in the temp dir.
    let spool_dir = match &url {
        EngineUrl::Redb(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from),
        _ => None,
    };
    let repo = open_repository(settings).await?;
    // Plan before opening the target, so an unreachable point creates nothing; the
    // restore reuses this catalog (its documents are read once).
    let catalog = repo.catalog().await?;
    catalog
        .plan(&target, args.timeline)
        .map_err(RestoreError::from)?;

    let engine = open_engine(&args.target, Mode::Create).await?;
    let opts = RestoreOptions {
        timeline: args.timeline,
        partitions: args.partitions,
        force: args.force,
        continue_lineage: args.continue_lineage,
        dry_run: args.dry_run,
        spool_dir,
        ..RestoreOptions::new(target)
    };
    let progress = Reporter::new();
    let result =
        tito_restore::restore_with_catalog(&repo, &catalog, engine.clone(), &opts, &progress).await;
    match &result {
        Ok(_) => progress.finish(),
        Err(_) => progress.abandon(),
    }
    let closed = engine.close().await;
    drop(engine);
    if result.is_err() || args.dry_run {
        created_file.remove("restore");
    }
    let result = result?;
    closed?;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        )?;
    } else {
        crate::outln!("{}", summary(&result, &args.target))?;
        if !args.dry_run {
            crate::outln!("the restored database {}", result.lineage)?;
        }
    }
    Ok(())
}
