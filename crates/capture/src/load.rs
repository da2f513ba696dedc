//! Bulk import of the [`crate::jsonl`] dump format into a database, in large captured
//! transactions (the log records every batch like any other write, so the backup ships
//! it).
//!
//! Each batch is a [`PreparedPuts`]: user keys are written as [`crate::Txn::put`] writes
//! them, queue state (keys under [`keys::QUEUE_PREFIX`]) as [`crate::Txn::put_queue`],
//! with the same capture as the application's own writes; the batch's log record is
//! encoded and compressed on the reading thread while the previous batch commits. A key
//! under the reserved prefix outside the queue subspace (the log, metadata) is a bad
//! line: a dump never holds one.
//!
//! A batch is one transaction: it commits whole or not at all. [`load`] commits batches
//! in input order and stops at the first bad line or failed commit; the error says through
//! which input line everything before it is committed ([`Committed`]). [`check`] reads an
//! input without writing, so a caller that can read its input twice (a file) validates it
//! all before the first commit; [`check_file`] checks a file's two halves on two threads.
//! Checking decodes into two reused buffers: no allocation per line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

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
            .then_some((self.line, (key, value))))
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
    check_lines(input, progress).0
}

/// [`check`], and the number of lines read (blank ones too) whatever the outcome.
fn check_lines(
    input: impl BufRead,
    progress: &mut dyn FnMut(u64),
) -> (Result<u64, LoadError>, u64) {
    let mut lines = Lines::new(input);
    let mut pairs = 0u64;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        match lines.next_into(&mut key, &mut value, Committed::default()) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return (Err(e), lines.line),
        }
        pairs += 1;
        if pairs % 10_000 == 0 {
            progress(10_000);
        }
    }
    progress(pairs % 10_000);
    (Ok(pairs), lines.line)
}

/// Files shorter than this are checked on one thread.
const SPLIT_MIN: u64 = 1 << 20;
/// Read buffer of each checking thread.
const CHECK_BUFFER: usize = 1 << 20;

/// [`check`] the whole of `file` (from its start, whatever its offset; the offset is left
/// as it is). On a machine with two cores or more, the two halves of a file of
/// [`SPLIT_MIN`] bytes or more, cut at a line boundary, are checked at once on two
/// threads, with the same answer: the pairs, or the first bad line in input order with
/// its number.
pub fn check_file(file: &File, progress: &mut dyn FnMut(u64)) -> Result<u64, LoadError> {
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    check_file_from(file, if parallel { SPLIT_MIN } else { u64::MAX }, progress)
}

fn check_file_from(
    file: &File,
    split_min: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, LoadError> {
    let read = |source| LoadError::Read {
        line: 0,
        source,
        committed: Committed::default(),
    };
    let len = file.metadata().map_err(read)?.len();
    let split = if len >= split_min && len >= 2 {
        line_start_after(file, len / 2).map_err(read)?
    } else {
        None
    };
    let part = |start, end| {
        BufReader::with_capacity(
            CHECK_BUFFER,
            At {
                file,
                pos: start,
                end,
            },
        )
    };
    let Some(split) = split else {
        return check_lines(part(0, u64::MAX), progress).0;
    };
    std::thread::scope(|scope| {
        let second = scope.spawn(move || check_lines(part(split, u64::MAX), &mut |_| {}));
        let (first, first_lines) = check_lines(part(0, split), progress);
        let (second, _) = second.join().unwrap_or_else(|_| {
            let e = std::io::Error::other("the checking thread panicked");
            (Err(read(e)), 0)
        });
        // The first bad line in input order: the first half's, if it has one.
        let first = first?;
        let second = second.map_err(|e| e.after_lines(first_lines))?;
        progress(second);
        Ok(first + second)
    })
}

/// The offset just after the first newline at or after `at`, if it is before the end.
fn line_start_after(file: &File, at: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0; 64 << 10];
    let mut pos = at;
    loop {
        let got = read_at(file, &mut buf, pos)?;
        if got == 0 {
            return Ok(None);
        }
        if let Some(i) = buf[..got].iter().position(|&b| b == b'\n') {
            let start = pos + i as u64 + 1;
            return Ok((start < file.metadata()?.len()).then_some(start));
        }
        pos += got as u64;
    }
}

/// A reader of `file` from `pos` to `end` that leaves the file's offset alone, so two
/// threads can read one file.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        let got = read_at(self.file, &mut buf[..room], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, pos)
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
    /// The error of a part of the input that starts after `lines` lines, numbered in the
    /// whole input.
    fn after_lines(mut self, lines: u64) -> LoadError {
        match &mut self {
            LoadError::BadLine { line, .. } | LoadError::Read { line, .. } => *line += lines,
            LoadError::Commit { first, last, .. } => {
                *first += lines;
                *last += lines;
            }
        }
        self
    }

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

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use proptest::prelude::*;

    use super::*;

    /// What a line of a generated input is.
    #[derive(Clone, Debug)]
    enum Kind {
        Good,
        Blank,
        Bad,
    }

    fn text(kinds: &[Kind]) -> String {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| match k {
                Kind::Good => format!("{{\"key\":\"k{i}\",\"value\":\"v \\\"{i}\\\"\"}}\n"),
                Kind::Blank => "\n".to_string(),
                Kind::Bad => format!("{{\"key\":\"k{i}\"}}\n"),
            })
            .collect()
    }

    /// The outcome, as comparable values.
    fn outcome(r: Result<u64, LoadError>) -> Result<u64, String> {
        r.map_err(|e| e.to_string())
    }

    proptest! {
        /// Split in two at any size, a file checks as one sequential reader checks it:
        /// the same pairs, or the same first bad line with the same number.
        #[test]
        fn a_file_checked_in_two_halves_answers_as_one_reader(
            kinds in proptest::collection::vec(
                prop_oneof![8 => Just(Kind::Good), 1 => Just(Kind::Blank), 1 => Just(Kind::Bad)],
                0..60,
            ),
            offset in 0u64..3,
        ) {
            let input = text(&kinds);
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(input.as_bytes()).unwrap();
            // The offset is the caller's: the check reads from the start and leaves it.
            file.seek(SeekFrom::Start(offset)).unwrap();
            let expected = outcome(check(input.as_bytes(), &mut |_| {}));
            let mut reported = 0;
            let split = outcome(check_file_from(&file, 0, &mut |n| reported += n));
            prop_assert_eq!(&split, &expected);
            if let Ok(pairs) = split {
                prop_assert_eq!(reported, pairs, "progress adds up");
            }
            prop_assert_eq!(file.stream_position().unwrap(), offset);
            prop_assert_eq!(outcome(check_file_from(&file, u64::MAX, &mut |_| {})), expected);
        }
    }

    #[test]
    fn a_bad_line_in_the_second_half_is_numbered_in_the_whole_file() {
        let mut kinds = vec![Kind::Good; 1000];
        kinds[10] = Kind::Blank;
        kinds[900] = Kind::Bad;
        let input = text(&kinds);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(input.as_bytes()).unwrap();
        let split = line_start_after(&file, input.len() as u64 / 2).unwrap();
        let before = input[..split.expect("a split") as usize]
            .matches('\n')
            .count();
        assert!(
            before < 900,
            "the bad line is in the second half ({before})"
        );
        let err = check_file_from(&file, 0, &mut |_| {}).unwrap_err();
        assert!(matches!(err, LoadError::BadLine { line: 901, .. }), "{err}");
    }
}
