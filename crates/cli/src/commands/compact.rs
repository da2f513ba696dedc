//! `tito compact`: merge runs of small log segments into larger ones, level by level (a
//! minute, an hour, a day of records by default), keeping every record; `--dry-run` lists the
//! merges and changes nothing. Works on the store alone, beside a running backup: deletes are
//! safe by construction (see `tito_backup::compactor`).

use std::time::Duration;

use tito_backup::{CompactResult, CompactionConfig, compact_repository};
use tito_catalog::CompactionPolicy;

use crate::args::CompactArgs;
use crate::commands::open_repository;
use crate::config::Settings;
use crate::exit::{CliError, Result};
use crate::fmt;
use crate::progress::Reporter;

/// The compaction settings of the flags.
pub fn config(settings: &Settings, args: &CompactArgs) -> Result<CompactionConfig> {
    let mut policy = CompactionPolicy::default();
    if !args.levels.is_empty() {
        policy.windows_ms = args.levels.iter().map(|d| d.as_millis() as u64).collect();
    }
    policy.validate().map_err(CliError::usage)?;
    Ok(CompactionConfig {
        policy,
        max_inputs: None,
        max_duration: None,
        compression_level: settings.compression_level()?,
        ..CompactionConfig::default()
    })
}

/// The text form of a result.
pub fn render(r: &CompactResult) -> String {
    let mut out = String::new();
    for line in &r.lines {
        out.push_str(line);
        out.push('\n');
    }
    let per_level: Vec<String> = r
        .merges_per_level
        .iter()
        .enumerate()
        .map(|(i, n)| format!("level {}: {n}", i + 1))
        .collect();
    out.push_str(&format!(
        "{} {} segments ({}) into {} ({}), {} {} segments; the log has {} segments{} ({}){}\n",
        if r.dry_run { "would merge" } else { "merged" },
        r.read,
        fmt::bytes(r.bytes_read),
        r.written,
        fmt::bytes(r.bytes_written),
        if r.dry_run { "would delete" } else { "deleted" },
        r.deleted,
        r.segments_after,
        if r.segments_after == r.segments_before {
            String::new()
        } else {
            format!(", {} before", r.segments_before)
        },
        per_level.join(", "),
        if r.dry_run {
            " (dry run: nothing written or deleted)"
        } else {
            ""
        }
    ));
    out
}

/// `tito compact`.
pub async fn run(settings: &Settings, args: &CompactArgs, json: bool) -> Result<()> {
    let config = config(settings, args)?;
    let repo = open_repository(settings).await?;
    let progress = Reporter::new();
    progress.phase("compacting the log (merges)", 0);
    let result = compact_repository(&repo, &config, args.dry_run, &Merges(&progress)).await;
    match &result {
        Ok(_) => progress.finish(),
        Err(_) => progress.abandon(),
    }
    let result = result?;
    fmt::print_report(json, &result, render)
}

/// Progress: one step per merge.
struct Merges<'a>(&'a Reporter);

impl tito_backup::CompactProgress for Merges<'_> {
    fn merged(&self, _: &tito_catalog::Merge, _: &CompactResult) {
        self.0.advance(1);
    }
}

/// Parse one level window (`1m`, `1h`, ...).
pub fn parse_window(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.as_millis() == 0 {
        return Err("a level window must be at least 1ms".into());
    }
    Ok(d)
}
