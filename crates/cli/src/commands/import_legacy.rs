//! `tito import-legacy`: import a backup root written by the original backup module into a
//! new Tito database ([`tito_legacy`]).
//!
//! Everything that can be checked without the target is checked first (the `--to` form,
//! the flags, the target URL, the store); the library then plans from the listing and
//! reads every chunk it needs before the target is touched. A target file this command
//! created is removed again if the import fails or is a dry run.
//!
//! Exit codes: 2 bad flags, URL or time; 3 no backup of the original module, or no
//! complete full backup at or before the time; 4 a target that is not empty or holds an
//! unfinished restore or import; 5 a malformed chunk or a missing or unreadable marker;
//! 6 the store or engine failed.

use std::time::Duration;

use tito_catalog::Target;
use tito_legacy::{EventsMode, ImportOptions, ImportReport, LegacyError};

use crate::args::{EventsArg, ImportLegacyArgs};
use crate::exit::{self, CliError, Result};
use crate::fmt;
use crate::open::{CreatedFile, Mode, open_engine, open_store, parse_engine_url};
use crate::progress::Reporter;

/// The CLI error of an import error.
pub fn legacy_error(e: LegacyError) -> CliError {
    let code = match &e {
        LegacyError::Usage(_) => exit::USAGE,
        LegacyError::NotFound(_) => exit::NOT_FOUND,
        LegacyError::TargetNotEmpty { .. } | LegacyError::TargetPartial => exit::REFUSED,
        LegacyError::BadMarker { .. } | LegacyError::Damaged { .. } => exit::INTEGRITY,
        // A chunk listed a moment ago is gone.
        LegacyError::Store(s) if s.is_not_found() => exit::INTEGRITY,
        LegacyError::Store(s) => exit::store_code(s),
        LegacyError::Engine(e) => exit::engine_code(e),
        LegacyError::Capture(c) => exit::capture_code(c),
        LegacyError::Queue(_) | LegacyError::Task(_) => exit::FAILURE,
    };
    let hint = match code {
        exit::INTEGRITY => "; nothing was imported",
        _ => "",
    };
    CliError::new(code, format!("{}{hint}", exit::chain(&e)))
}

/// What was found, and the warnings, before anything is written.
pub fn found(r: &ImportReport) -> Vec<String> {
    let mut out = r.found_lines();
    for w in &r.warnings {
        out.push(format!("warning: {}", w.message));
    }
    out
}

/// The text summary of an import (or a dry run).
pub fn summary(r: &ImportReport, target: &str) -> Vec<String> {
    let mut out = Vec::new();
    let elapsed = Duration::from_millis(r.elapsed_ms);
    let used = format!(
        "full backup {} and {} partial chunks: {} state entries, state as of run {} ({})",
        r.full_used,
        r.partial_chunks_used,
        r.state_entries,
        r.state_as_of_secs,
        fmt::time_ms(r.state_as_of_secs.max(0) as u64 * 1000)
    );
    if r.dry_run {
        out.push(format!(
            "dry run: would import {used} into {target}; every chunk needed was read and decoded; nothing was written"
        ));
        return out;
    }
    out.push(format!(
        "imported {used} into {target}: {} puts, {} deletes, {} events enqueued; {} downloaded in {} ({})",
        r.puts,
        r.deletes,
        r.events_enqueued,
        fmt::bytes(r.bytes_downloaded),
        fmt::duration(elapsed),
        fmt::rate(r.state_entries + r.event_entries, elapsed, "entries"),
    ));
    out.push(format!(
        "{target} is a new Tito database: back it up with `tito --db {target} --store URL backup`"
    ));
    out
}

/// `tito import-legacy`.
pub async fn run(args: &ImportLegacyArgs, json: bool) -> Result<()> {
    let to_ms = match tito_restore::parse_target(&args.to)? {
        Target::Latest => None,
        Target::Time(ms) => Some(ms),
        _ => {
            return Err(CliError::usage(format!(
                "--to {:?}: backups of the original module are addressed by time only (latest, an RFC 3339 time or epoch milliseconds)",
                args.to
            )));
        }
    };
    if args.partitions == Some(0) {
        return Err(CliError::usage("--partitions must be at least 1"));
    }
    let events = match args.events {
        EventsArg::Skip => EventsMode::Skip,
        EventsArg::Enqueue => EventsMode::Enqueue,
    };
    if events == EventsMode::Enqueue && args.partitions.is_none() {
        return Err(CliError::usage(
            "--events enqueue needs --partitions N, the partition count your application pulls from",
        ));
    }
    let url = parse_engine_url(&args.target)?;
    let created_file = CreatedFile::before_open(&url);
    let store = open_store(&args.from, Mode::Existing).await?;
    let engine = open_engine(&args.target, Mode::Create).await?;
    let opts = ImportOptions {
        to_ms,
        events,
        partitions: args.partitions,
        dry_run: args.dry_run,
        ..ImportOptions::default()
    };
    let progress = Reporter::new();
    // What was found and the warnings come first: a long import shows them at once.
    let result = match tito_legacy::prepare(store, engine.as_ref(), &opts, &progress).await {
        Ok(prepared) => {
            if !json {
                for line in found(prepared.report()) {
                    crate::outln!("{line}")?;
                }
            }
            tito_legacy::apply(prepared, engine.clone(), &opts, &progress).await
        }
        Err(e) => Err(e),
    };
    match &result {
        Ok(_) => progress.finish(),
        Err(_) => progress.abandon(),
    }
    let closed = engine.close().await;
    drop(engine);
    if result.is_err() || args.dry_run {
        created_file.remove("import");
    }
    let report = result.map_err(legacy_error)?;
    closed?;
    crate::fmt::print_report(json, &report, |r| {
        summary(r, &args.target)
            .into_iter()
            .map(|line| line + "\n")
            .collect()
    })
}
