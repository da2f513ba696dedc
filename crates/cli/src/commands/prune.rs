//! `tito prune`: apply the retention rules (flags, else the config file's `[retention]`)
//! and delete only what the planner selected; `--dry-run` lists it and deletes nothing.

use tito_backup::prune::DEFAULT_GRACE;
use tito_backup::{PruneResult, prune_repository};
use tito_catalog::RetentionPolicy;

use crate::args::PruneArgs;
use crate::commands::open_repository;
use crate::config::{Retention, Settings};
use crate::exit::{CliError, Result};
use crate::fmt;

/// The planner's policy from the resolved rules.
pub fn policy(r: &Retention) -> RetentionPolicy {
    RetentionPolicy {
        keep_last: r.keep_last,
        keep_within_ms: r.keep_within.map(|d| d.as_millis() as u64),
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
    }
}

/// The text form of a result.
pub fn render(r: &PruneResult) -> String {
    let mut out = String::new();
    // Each reason starts with its verb ("keep ...", "delete damaged snapshot ...").
    for reason in &r.reasons {
        out.push_str(&format!("{reason}\n"));
    }
    for key in &r.deleted {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        out.push_str(&format!("{verb}: {key}\n"));
    }
    for p in &r.lost_restore_points {
        out.push_str(&format!(
            "warning: restore point {:?} (timeline {}, LSN {}) {} restorable: {}; keep it with --keep-within covering its creation\n",
            p.name,
            p.timeline,
            p.lsn,
            if r.dry_run { "would no longer be" } else { "is no longer" },
            p.why
        ));
    }
    let oldest = r
        .oldest_kept_lsn
        .map_or("no snapshot kept".to_string(), |l| {
            format!("everything from LSN {l} on stays restorable")
        });
    out.push_str(&format!(
        "{} {} objects ({}), kept {} snapshots; {oldest}{}\n",
        if r.dry_run { "would delete" } else { "deleted" },
        r.deleted.len(),
        fmt::bytes(r.bytes_freed),
        r.kept_snapshots,
        if r.dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        }
    ));
    out
}

/// `tito prune`.
pub async fn run(settings: &Settings, args: &PruneArgs, json: bool) -> Result<()> {
    let rules = settings.retention(args)?;
    if rules.is_empty() {
        return Err(CliError::usage(
            "no retention rule given: pass --keep-last N, --keep-within 7d, --keep-daily N, \
             --keep-weekly N or --keep-monthly N, or set [retention] in the --config file",
        ));
    }
    let repo = open_repository(settings).await?;
    let result = prune_repository(&repo, &policy(&rules), DEFAULT_GRACE, args.dry_run).await?;
    fmt::print_report(json, &result, render)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_a_policy() {
        let r = Retention {
            keep_last: Some(2),
            keep_within: Some(std::time::Duration::from_secs(60)),
            ..Retention::default()
        };
        let p = policy(&r);
        assert_eq!(p.keep_last, Some(2));
        assert_eq!(p.keep_within_ms, Some(60_000));
        assert!(policy(&Retention::default()).is_empty());
    }
}
