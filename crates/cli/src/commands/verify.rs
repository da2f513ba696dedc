//! `tito verify [--deep]`: check every object of the repository; with `--deep`, also
//! decode each snapshot and compare its count and digest with its manifest, and restore
//! the latest state into a scratch file.

use std::time::Instant;

use tito_restore::VerifyReport;

use crate::args::VerifyArgs;
use crate::commands::open_repository;
use crate::config::Settings;
use crate::exit::{CliError, INTEGRITY, Result};
use crate::fmt;
use crate::progress::Reporter;

/// The text form of a report.
pub fn render(r: &VerifyReport, deep: bool, elapsed: std::time::Duration) -> String {
    let mut out = String::new();
    for p in &r.problems {
        out.push_str(&format!("PROBLEM {}: {}\n", p.key, p.problem));
    }
    out.push_str(&format!(
        "checked {} objects ({}) in {}: {} snapshots and {} segments intact{}; {}\n",
        r.objects_checked,
        fmt::bytes(r.bytes_read),
        fmt::duration(elapsed),
        r.snapshots_ok,
        r.segments_ok,
        if deep {
            format!(
                ", {} snapshots decoded and compared with their manifests{}",
                r.snapshots_compared,
                if r.ok() {
                    ", latest state restored"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        },
        if r.ok() {
            "no problems".to_string()
        } else {
            format!("{} problems", r.problems.len())
        }
    ));
    out
}

/// The error of a report with problems (exit code [`INTEGRITY`]).
pub fn failure(r: &VerifyReport) -> Option<CliError> {
    let first = r.problems.first()?;
    Some(CliError::new(
        INTEGRITY,
        format!(
            "the backup is damaged: {} problems, first {}: {}; restore to a point that does not need it, or take a new snapshot",
            r.problems.len(),
            first.key,
            first.problem
        ),
    ))
}

/// `tito verify`.
pub async fn run(settings: &Settings, args: &VerifyArgs, json: bool) -> Result<()> {
    let repo = open_repository(settings).await?;
    let started = Instant::now();
    let progress = Reporter::new();
    let report = tito_restore::verify_repository(&repo, args.deep, &progress).await;
    match &report {
        Ok(_) => progress.finish(),
        Err(_) => progress.abandon(),
    }
    let report = report?;
    fmt::print_report(json, &report, |r| render(r, args.deep, started.elapsed()))?;
    match failure(&report) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tito_restore::Problem;

    #[test]
    fn problems_fail_with_the_integrity_code() {
        let mut r = VerifyReport {
            objects_checked: 3,
            ..VerifyReport::default()
        };
        assert!(failure(&r).is_none());
        r.problems.push(Problem {
            key: "timelines/1/x".into(),
            problem: "checksum mismatch".into(),
        });
        let e = failure(&r).expect("damaged");
        assert_eq!(e.code, INTEGRITY);
        assert!(e.message.contains("timelines/1/x") && e.message.contains("checksum"));
        assert!(render(&r, false, std::time::Duration::ZERO).contains("PROBLEM timelines/1/x"));
    }
}
