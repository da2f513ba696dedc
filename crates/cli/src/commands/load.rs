//! `tito load [FILE|-]`: read the `dump` format ([`tito_capture::jsonl`]) into a database
//! in large captured transactions (the log records them, so backup ships them).
//!
//! Safety, in order:
//! - A database whose backed-up keyspace is not empty is refused (exit 4) unless
//!   `--force`, which merges: each loaded pair overwrites its key, other keys stay.
//! - The whole input is read and checked before the first commit: a bad line is reported
//!   with its number and nothing is written (exit 2). Standard input is first copied to
//!   a temporary file (under `TMPDIR`) for this; `--stream` skips the copy and commits
//!   while reading, and then a failure says exactly through which line the input is
//!   committed (each batch is one transaction: whole or not at all).
//! - A database file that does not exist is created only once the input is checked (at
//!   the start with `--stream`).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::sync::Arc;

use tito_capture::Db;
use tito_capture::load::{self, Committed, LoadError, LoadOptions};
use tito_engine::Engine;

use crate::args::LoadArgs;
use crate::config::Settings;
use crate::exit::{self, CliError, Result};
use crate::open::{Mode, open_engine};
use crate::progress::Reporter;

/// Input read buffer.
const BUFFER: usize = 1 << 20;

/// `tito load`.
pub async fn run(settings: &Settings, args: &LoadArgs) -> Result<()> {
    let url = settings.db()?;
    // An existing database is checked first (cheap), a new one created last (after the
    // input is known to be good).
    let existing = match open_engine(url, Mode::Existing).await {
        Ok(engine) => Some(engine),
        Err(e) if e.code == exit::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let outcome = load_into(url, existing.clone(), args).await;
    if let Some(engine) = existing {
        engine.close().await?;
    }
    outcome
}

async fn load_into(url: &str, existing: Option<Arc<dyn Engine>>, args: &LoadArgs) -> Result<()> {
    let db = match &existing {
        Some(engine) => Some(open_db(engine.clone(), args.force).await?),
        None => None,
    };
    let progress = Reporter::new();
    let input = if args.stream {
        Input::Stream(open_input(&args.input)?)
    } else {
        let mut file = spool(&args.input)?;
        progress.phase("check", 0);
        let checked = load::check_file(&file, &mut |n| progress.advance(n));
        let pairs = checked.map_err(|e| {
            progress.abandon();
            failure(&args.input, e, false)
        })?;
        progress.finish();
        file.rewind()
            .map_err(|e| read_error(&args.input, e.to_string()))?;
        Input::Checked(BufReader::with_capacity(BUFFER, file), pairs)
    };
    let (db, created) = match db {
        Some(db) => (db, None),
        None => {
            let engine = open_engine(url, Mode::Create).await?;
            (open_db(engine.clone(), args.force).await?, Some(engine))
        }
    };
    let opts = LoadOptions {
        batch_pairs: args
            .batch_pairs
            .unwrap_or(LoadOptions::default().batch_pairs),
        ..LoadOptions::default()
    };
    let (reader, total): (Box<dyn BufRead + Send>, u64) = match input {
        Input::Stream(r) => (r, 0),
        Input::Checked(r, n) => (Box::new(r), n),
    };
    progress.phase("load", total);
    let loaded = load::load(&db, reader, &opts, &mut |n| progress.advance(n)).await;
    let result = match loaded {
        Ok(c) => {
            progress.finish();
            crate::outln!("{}", summary(&c))?;
            Ok(())
        }
        Err(e) => {
            progress.abandon();
            Err(failure(&args.input, e, args.stream))
        }
    };
    if let Some(engine) = created {
        engine.close().await?;
    }
    result
}

enum Input {
    Stream(Box<dyn BufRead + Send>),
    Checked(BufReader<File>, u64),
}

/// Open the database, refusing a partial restore and, without `--force`, a non-empty one.
async fn open_db(engine: Arc<dyn Engine>, force: bool) -> Result<Db> {
    let db = Db::open(engine).await?;
    if !force && !load::is_empty(&db).await? {
        return Err(CliError::new(
            exit::REFUSED,
            "the database is not empty: `tito load` refuses to mix data into it; load into a new database, or pass --force to merge (loaded keys overwrite, other keys stay)",
        ));
    }
    Ok(db)
}

fn open_input(path: &str) -> Result<Box<dyn BufRead + Send>> {
    if path == "-" {
        return Ok(Box::new(BufReader::with_capacity(BUFFER, std::io::stdin())));
    }
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    Ok(Box::new(BufReader::with_capacity(BUFFER, file)))
}

/// The input as a file that can be read twice: the file itself, or standard input copied
/// to an anonymous temporary file.
fn spool(path: &str) -> Result<File> {
    if path != "-" {
        return File::open(path).map_err(|e| open_error(path, e));
    }
    let mut tmp = tempfile::tempfile()
        .map_err(|e| read_error(path, format!("cannot create a temporary file in TMPDIR to check standard input before loading it (or use --stream): {e}")))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tmp).map_err(|e| {
        read_error(
            path,
            format!("cannot copy standard input to a temporary file (or use --stream): {e}"),
        )
    })?;
    tmp.rewind()
        .map_err(|e| read_error(path, format!("cannot rewind the temporary file: {e}")))?;
    Ok(tmp)
}

fn shown(path: &str) -> String {
    if path == "-" {
        "standard input".into()
    } else {
        path.to_string()
    }
}

fn open_error(path: &str, e: std::io::Error) -> CliError {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        exit::NOT_FOUND
    } else {
        exit::UNAVAILABLE
    };
    CliError::new(code, format!("cannot open {}: {e}", shown(path)))
}

fn read_error(path: &str, problem: String) -> CliError {
    CliError::new(
        exit::UNAVAILABLE,
        format!("reading {}: {problem}", shown(path)),
    )
}

/// What was committed, in words.
fn summary(c: &Committed) -> String {
    let lsn = c
        .last_lsn
        .map(|l| format!(", last LSN {l}"))
        .unwrap_or_default();
    format!(
        "loaded {} pairs (lines 1-{}) in {} transactions{lsn}",
        c.pairs, c.through_line, c.batches
    )
}

/// The error line of a failed load, saying what is committed.
fn failure(path: &str, e: LoadError, stream: bool) -> CliError {
    let c = e.committed();
    let code = match &e {
        LoadError::BadLine { .. } => exit::USAGE,
        LoadError::Read { .. } => exit::UNAVAILABLE,
        LoadError::Commit { source, .. } => exit::capture_code(source),
    };
    let committed = if c.batches == 0 {
        "nothing was loaded".to_string()
    } else if stream {
        format!(
            "lines 1-{} are committed ({} pairs in {} transactions, last LSN {}) and nothing after them; fix the input and load it again with --force (the same pairs overwrite themselves)",
            c.through_line,
            c.pairs,
            c.batches,
            c.last_lsn.unwrap_or(0)
        )
    } else {
        format!(
            "lines 1-{} are committed ({} pairs in {} transactions) and nothing after them; load again with --force",
            c.through_line, c.pairs, c.batches
        )
    };
    let message = format!("{}: {}; {committed}", shown(path), exit::chain(&e));
    CliError::new(code, message)
}
