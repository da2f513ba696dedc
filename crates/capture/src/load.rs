//! Bulk import of the [`crate::jsonl`] dump format into a database, in large captured
//! transactions (the log records every batch like any other write, so the backup ships
//! it).
//!
//! Each batch is a [`PreparedPuts`]: user keys are written as [`crate::Txn::put`] writes
//! them, queue state (keys under [`keys::QUEUE_PREFIX`]) as [`crate::Txn::put_queue`],
//! with the same capture as the application's own writes; the batch's log record is
//! encoded and compressed on the reading thread while the previous batch commits. A key under the reserved prefix outside the queue
//! subspace (the log, metadata) is a bad line: a dump never holds one.
//!
//! A batch is one transaction: it commits whole or not at all. [`load`] commits batches
//! in input order and stops at the first bad line or failed commit; the error says through
//! which input line everything before it is committed ([`Committed`]). [`check`] reads an
//! input without writing, so a caller that can read its input twice (a file) validates it
//! all before the first commit.

use std::io::BufRead;

use tito_engine::KeyValue;

use crate::jsonl::decode_line_into;
use crate::keys::{self, display_key};
use crate::{CaptureError, Db, PreparedPuts};

/// How [`load`] cuts the input into transactions; the engine's own limits
/// ([`tito_engine::Limits`]) cap both.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Most pairs per transaction.
    pub batch_pairs: usize,
    /// Most key and value bytes per transaction (the log record repeats them).
    pub batch_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            batch_pairs: 100_000,
            batch_bytes: 8 << 20,
        }
    }
}

/// What is committed when a load stops (or ends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Every input line up to and including this one is committed (0: none).
    pub through_line: u64,
    /// Pairs committed.
    pub pairs: u64,
    /// Transactions committed.
    pub batches: u64,
    /// LSN of the last committed batch's log record.
    pub last_lsn: Option<u64>,
}

/// Why a load or a check stopped. Nothing of the batch holding the failing line is
/// committed; [`LoadError::committed`] says what earlier batches committed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A line is not a valid dump line, or names a key a load may not write.
    #[error("line {line}: {problem}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
        /// What earlier batches committed.
        committed: Committed,
    },
    /// The input could not be read.
    #[error("cannot read the input after line {line}: {source}")]
    Read {
        /// The last line read whole.
        line: u64,
        /// The I/O error.
        source: std::io::Error,
        /// What earlier batches committed.
        committed: Committed,
    },
    /// The engine refused or failed the commit of a batch.
    #[error("lines {first}-{last} were not committed: {source}")]
    Commit {
        /// First line of the batch.
        first: u64,
        /// Last line of the batch.
        last: u64,
        /// The engine's error.
        source: Box<CaptureError>,
        /// What earlier batches committed.
        committed: Committed,
    },
}

impl LoadError {
    /// What was committed before the failure.
    pub fn committed(&self) -> Committed {
        match self {
            LoadError::BadLine { committed, .. }
            | LoadError::Read { committed, .. }
            | LoadError::Commit { committed, .. } => *committed,
        }
    }
}

/// A numbered line of the input, decoded and checked.
struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    line: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            buf: Vec::with_capacity(4096),
            line: 0,
        }
    }

    /// The next pair and its line number; blank lines are skipped.
    fn next_pair(&mut self, committed: Committed) -> Result<Option<(u64, KeyValue)>, LoadError> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        Ok(self
            .next_into(&mut key, &mut value, committed)?
            .then(|| (self.line, (key, value))))
    }

    /// Decode the next pair into `key` and `value` (false at the end of the input); blank
    /// lines are skipped. Checking reuses two buffers: no allocation per line.
    fn next_into(
        &mut self,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        committed: Committed,
    ) -> Result<bool, LoadError> {
        loop {
            self.buf.clear();
            let got = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| LoadError::Read {
                    line: self.line,
                    source,
                    committed,
                })?;
            if got == 0 {
                return Ok(false);
            }
            self.line += 1;
            let bad = |problem: String| LoadError::BadLine {
                line: self.line,
                problem,
                committed,
            };
            let text = std::str::from_utf8(&self.buf)
                .map_err(|e| bad(format!("not UTF-8: {e}")))?
                .trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            value.clear();
            value.reserve(text.len());
            decode_line_into(text, key, value).map_err(|e| bad(e.to_string()))?;
            if keys::is_reserved(key) && !key.starts_with(keys::QUEUE_PREFIX) {
                return Err(bad(format!(
                    "key \"{}\" is under the reserved prefix \"{}\" and is not queue state: a dump never holds it",
                    display_key(key),
                    display_key(keys::RESERVED)
                )));
            }
            return Ok(true);
        }
    }
}

/// Read and check every line of `input` without writing anything; returns the number of
/// pairs. `progress` is called with the pairs checked since its last call.
pub fn check(input: impl BufRead, progress: &mut dyn FnMut(u64)) -> Result<u64, LoadError> {
    let mut lines = Lines::new(input);
    let mut pairs = 0u64;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    while lines.next_into(&mut key, &mut value, Committed::default())? {
        pairs += 1;
        if pairs % 10_000 == 0 {
            progress(10_000);
        }
    }
    progress(pairs % 10_000);
    Ok(pairs)
}

/// What the reading thread of [`load`] hands to the committing task.
enum Msg {
    /// A batch, ready to commit.
    Batch(Ready),
    /// The input ended after this many lines.
    End(u64),
    /// A bad line or a read error (its `committed` is filled in by the receiver).
    Failed(LoadError),
}

impl LoadError {
    fn with_committed(mut self, c: Committed) -> LoadError {
        match &mut self {
            LoadError::BadLine { committed, .. }
            | LoadError::Read { committed, .. }
            | LoadError::Commit { committed, .. } => *committed = c,
        }
        self
    }
}

/// Load every pair of `input` into `db`, batch by batch (see the module docs). `progress`
/// is called with the pairs of each committed batch. Returns what was committed.
///
/// A blocking thread reads and decodes the next batch while the current one commits.
pub async fn load(
    db: &Db,
    input: impl BufRead + Send + 'static,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Committed, LoadError> {
    let limits = db.engine().limits();
    // One op and about the same bytes again go to the batch's log record.
    let max_pairs = opts
        .batch_pairs
        .min(limits.max_txn_ops.saturating_sub(1))
        .max(1);
    let max_bytes = opts.batch_bytes.min(limits.max_txn_bytes / 2).max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let reader = tokio::task::spawn_blocking(move || {
        let mut lines = Lines::new(input);
        let mut batch = Batch::default();
        loop {
            let next = match lines.next_pair(Committed::default()) {
                Ok(next) => next,
                Err(e) => {
                    let _ = tx.blocking_send(Msg::Failed(e));
                    return;
                }
            };
            let Some((line, pair)) = next else { break };
            let cost = pair.0.len() + pair.1.len() + 16;
            if !batch.pairs.is_empty()
                && batch.bytes + cost > max_bytes
                && tx
                    .blocking_send(Msg::Batch(std::mem::take(&mut batch).prepare()))
                    .is_err()
            {
                return;
            }
            batch.push(line, pair, cost);
            if batch.pairs.len() >= max_pairs
                && tx
                    .blocking_send(Msg::Batch(std::mem::take(&mut batch).prepare()))
                    .is_err()
            {
                return;
            }
        }
        if !batch.pairs.is_empty() && tx.blocking_send(Msg::Batch(batch.prepare())).is_err() {
            return;
        }
        let _ = tx.blocking_send(Msg::End(lines.line));
    });
    let mut committed = Committed::default();
    let outcome = loop {
        match rx.recv().await {
            Some(Msg::Batch(batch)) => match batch.commit(db, committed, progress).await {
                Ok(c) => committed = c,
                Err(e) => break Err(e),
            },
            // Trailing blank lines hold nothing: they count as loaded.
            Some(Msg::End(lines)) => {
                committed.through_line = lines;
                break Ok(committed);
            }
            Some(Msg::Failed(e)) => break Err(e.with_committed(committed)),
            None => {
                break Err(LoadError::Read {
                    line: committed.through_line,
                    source: std::io::Error::other("the input reader stopped"),
                    committed,
                });
            }
        }
    };
    drop(rx);
    if outcome.is_ok() {
        let _ = reader.await;
    }
    outcome
}

/// The pairs of the next transaction and the lines they came from.
#[derive(Default)]
struct Batch {
    pairs: Vec<KeyValue>,
    bytes: usize,
    first: u64,
    last: u64,
}

impl Batch {
    fn push(&mut self, line: u64, pair: KeyValue, cost: usize) {
        if self.pairs.is_empty() {
            self.first = line;
        }
        self.last = line;
        self.bytes += cost;
        self.pairs.push(pair);
    }

    /// Encode and pack its log record (on the reading thread, while the previous batch
    /// commits).
    fn prepare(self) -> Ready {
        Ready {
            puts: PreparedPuts::new(self.pairs),
            first: self.first,
            last: self.last,
        }
    }
}

/// A batch with its log record prepared.
struct Ready {
    puts: Result<PreparedPuts, CaptureError>,
    first: u64,
    last: u64,
}

impl Ready {
    /// Commit the batch as one transaction; returns the new [`Committed`].
    async fn commit(
        self,
        db: &Db,
        committed: Committed,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Committed, LoadError> {
        let failed = |source| LoadError::Commit {
            first: self.first,
            last: self.last,
            source: Box::new(source),
            committed,
        };
        let puts = self.puts.map_err(&failed)?;
        let n = puts.len() as u64;
        let lsn = puts.commit(db).await.map_err(&failed)?;
        progress(n);
        Ok(Committed {
            through_line: self.last,
            pairs: committed.pairs + n,
            batches: committed.batches + 1,
            last_lsn: lsn.or(committed.last_lsn),
        })
    }
}

/// True if the backed-up keyspace (user keys and queue state) of `db` is empty.
pub async fn is_empty(db: &Db) -> Result<bool, CaptureError> {
    let view = db.engine().read_view().await?;
    Ok(crate::scan_backed_up(view.as_ref(), None, 1)
        .await?
        .is_empty())
}
