//! `tito bench`: runs [`tito_bench::run`] with the global `--db` and `--store` as the
//! engine and store (default: temp dirs), prints the table (on stderr with `--json`, which
//! puts the report on stdout), writes the report with `--out FILE` and the BENCHMARKS.md
//! section with `--markdown FILE`. Targets that are not met are results, not errors: the
//! exit code is 0 whenever the run finished and every restore it timed was exact. With
//! `--db etcd://...` and `--phases etcd` it measures Tito on that cluster next to
//! `etcdctl snapshot save`/`restore`, in fresh namespaces it deletes afterwards; with
//! `--etcd-private` on a compacted, defragmented cluster of its own instead.
//!
//! With the hidden `--child SPEC` it is the child process the benchmark starts for each of
//! the snapshot and the restore, so that each one's peak memory is its own.

use std::io::Write;

use tito_bench::{BenchError, ChildCommand};

use crate::args::BenchArgs;
use crate::config::Settings;
use crate::exit::{self, CliError, Result};

/// Run `tito bench`.
pub async fn run(settings: &Settings, args: &BenchArgs, json: bool) -> Result<()> {
    if let Some(spec) = &args.child {
        let report = tito_bench::child_main(spec).await.map_err(bench_error)?;
        crate::outln!("{}", to_json(&report, false)?)?;
        return Ok(());
    }
    let mut opts = args.opts.clone();
    opts.engine = settings.db.clone();
    opts.store = settings.store.clone();
    opts.child = std::env::current_exe().ok().map(|program| ChildCommand {
        program,
        args: vec!["bench".into(), "--child".into()],
    });
    let mut report = tito_bench::run(opts).await.map_err(bench_error)?;
    report.command = Some(command_line());

    let table = report.render_table();
    if json {
        eprint!("{table}");
        crate::outln!("{}", to_json(&report, true)?)?;
    } else {
        crate::fmt::out(&table)?;
    }
    if let Some(path) = &args.out {
        write(path, &to_json(&report, true)?)?;
    }
    if let Some(path) = &args.markdown {
        write(path, &report.render_markdown())?;
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

fn bench_error(e: BenchError) -> CliError {
    let code = match e {
        BenchError::Options(_) => exit::USAGE,
        BenchError::Mismatch { .. } => exit::CHECK_FAILED,
        _ => exit::FAILURE,
    };
    CliError::new(code, format!("bench: {}", exit::chain(&e)))
}

fn to_json<T: serde::Serialize>(v: &T, pretty: bool) -> Result<String> {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    s.map_err(|e| CliError::new(exit::FAILURE, format!("bench: encoding the report: {e}")))
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("bench: writing {}: {e}", path.display()),
        )
    })
}

/// The command line as typed, quoted for a POSIX shell where needed.
fn command_line() -> String {
    let mut words = vec!["tito".to_string()];
    words.extend(std::env::args().skip(1).map(|a| shell_quote(&a)));
    words.join(" ")
}

fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_a_shell_would_split_or_expand() {
        assert_eq!(shell_quote("--keys"), "--keys");
        assert_eq!(shell_quote("file:///tmp/x"), "file:///tmp/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
