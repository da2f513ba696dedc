//! Log segments: a dense run of log records `first..=last` of one timeline.
//!
//! ```text
//! header   "TITO-SEG" version:u32=1 timeline:u64 crc32c:u32
//! frame*   see the container (crate::frame); entries: lsn:u64 time_ms:u64 body_len:u32 body
//! trailer  'T' frames:u64 count:u64 first:u64 last:u64 t0:u64 t1:u64 blake3[32]
//! ```
//!
//! The summary lives in the trailer because it is known only at the end; the writer streams.
//! Records are opaque here: `body` is the encoded record body of [`crate::record`].

use std::io::{Read, Write};

use crate::error::{FormatError, Result};
use crate::frame::{
    FrameReader, FrameWriter, Next, Progress, frame_writer_options, len_u32, put_checked,
};
use crate::layout;

/// Magic bytes opening every log segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TITO-SEG";
/// Log segment format version written and read by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

/// The trailer's fields, in order, as errors name them.
const TRAILER_FIELDS: [&str; 6] = [
    "frame count",
    "record count",
    "first LSN",
    "last LSN",
    "first time",
    "last time",
];

/// One log record as a segment holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// Its LSN.
    pub lsn: u64,
    /// Commit time (ms since the epoch).
    pub time_ms: u64,
    /// The encoded record body (see [`crate::record`]).
    pub body: Vec<u8>,
}

impl RawRecord {
    /// Split an engine log value (`be_u64(time_ms) ++ body`) stored under `lsn`.
    pub fn from_engine_value(lsn: u64, value: &[u8]) -> Result<Self> {
        if value.len() < 8 {
            return Err(FormatError::corrupt(
                &format!("log record {lsn}"),
                format!(
                    "engine value of {} bytes is shorter than its 8-byte commit time",
                    value.len()
                ),
            ));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&value[..8]);
        Ok(RawRecord {
            lsn,
            time_ms: u64::from_be_bytes(t),
            body: value[8..].to_vec(),
        })
    }

    /// The engine log value of this record: `be_u64(time_ms) ++ body`.
    pub fn engine_value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.body.len());
        v.extend_from_slice(&self.time_ms.to_be_bytes());
        v.extend_from_slice(&self.body);
        v
    }
}

/// What a segment holds, known once it is fully written or fully read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Timeline of the records.
    pub timeline: u64,
    /// First LSN (0 when `count` is 0).
    pub first: u64,
    /// Last LSN (0 when `count` is 0).
    pub last: u64,
    /// Commit time of the first record (ms; 0 when empty).
    pub t0: u64,
    /// Commit time of the last record (ms; 0 when empty).
    pub t1: u64,
    /// Number of records.
    pub count: u64,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// Hex blake3 of the complete object as stored (`b3sum` of the object gives the same).
    pub checksum: String,
}

impl SegmentSummary {
    /// Check that a segment read back from `object` holds what its store key says
    /// (timeline, LSN range and time range of [`layout::parse`]).
    pub fn check_name(&self, object: &str) -> Result<()> {
        let expected = match layout::parse(object) {
            layout::ObjectName::Segment {
                timeline,
                first,
                last,
                t0,
                t1,
            } => Some((timeline, first, last, t0, t1)),
            _ => None,
        };
        let found = (self.timeline, self.first, self.last, self.t0, self.t1);
        if self.count == 0 || expected != Some(found) {
            return Err(FormatError::corrupt(
                object,
                format!(
                    "content (timeline {}, LSNs {}..={}, times {}..={}, {} records) does not match the object name",
                    self.timeline, self.first, self.last, self.t0, self.t1, self.count
                ),
            ));
        }
        Ok(())
    }

    /// The store key of this segment ([`layout::segment`]), `None` for an empty segment
    /// (nothing to ship).
    pub fn object_key(&self) -> Option<String> {
        (self.count > 0)
            .then(|| layout::segment(self.timeline, self.first, self.last, self.t0, self.t1))
    }
}

/// The first/last/time bookkeeping shared by writer and reader.
#[derive(Default)]
struct Run {
    count: u64,
    first: u64,
    last: u64,
    t0: u64,
    t1: u64,
}

impl Run {
    /// Accept the next record or say why it does not follow.
    fn accept(&mut self, object: &str, lsn: u64, time_ms: u64) -> Result<()> {
        if self.count > 0 {
            let expected = self.last.checked_add(1).ok_or_else(|| {
                FormatError::corrupt(
                    object,
                    format!("LSN {lsn} follows LSN {}, the largest possible", self.last),
                )
            })?;
            if lsn != expected {
                return Err(FormatError::UnexpectedLsn {
                    object: object.to_string(),
                    expected,
                    found: lsn,
                });
            }
            if time_ms < self.t1 {
                return Err(FormatError::TimeWentBackwards {
                    object: object.to_string(),
                    lsn,
                    time_ms,
                    previous_ms: self.t1,
                });
            }
        } else {
            self.first = lsn;
            self.t0 = time_ms;
        }
        self.count += 1;
        self.last = lsn;
        self.t1 = time_ms;
        Ok(())
    }
}

/// Streams log records into a segment object.
///
/// Records must have strictly increasing, dense LSNs (`next = previous + 1`) and
/// non-decreasing commit times. Memory holds one frame (see [`Self::buffered_bytes`]).
pub struct SegmentWriter<W: Write> {
    frames: FrameWriter<W>,
    timeline: u64,
    run: Run,
}

impl<W: Write> SegmentWriter<W> {
    /// A writer of a segment of `timeline` onto `w`. Nothing is written before the first
    /// frame is full or [`Self::finish`] is called.
    pub fn new(w: W, timeline: u64) -> Self {
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&timeline.to_le_bytes());
        SegmentWriter {
            frames: FrameWriter::new(w, format!("log segment of timeline {timeline}"), header),
            timeline,
            run: Run::default(),
        }
    }

    frame_writer_options!();

    /// Append one record.
    pub fn push(&mut self, record: &RawRecord) -> Result<()> {
        self.frames.check()?;
        // Refused before the record counts as pushed.
        let body_len = len_u32(self.frames.name(), "record body", record.body.len())?;
        self.run
            .accept(self.frames.name(), record.lsn, record.time_ms)?;
        let raw = self.frames.raw_mut();
        raw.extend_from_slice(&record.lsn.to_le_bytes());
        raw.extend_from_slice(&record.time_ms.to_le_bytes());
        put_checked(raw, body_len, &record.body);
        self.frames.entry_done()
    }

    /// Records pushed so far.
    pub fn count(&self) -> u64 {
        self.run.count
    }

    /// Bytes held in the writer's buffers: about one frame.
    pub fn buffered_bytes(&self) -> usize {
        self.frames.buffered_bytes()
    }

    /// Write the last frame and the trailer; returns the summary and the inner writer.
    pub fn finish_into_inner(self) -> Result<(SegmentSummary, W)> {
        let mut fields = Vec::with_capacity(48);
        for v in [
            self.frames.frames_after_flush(),
            self.run.count,
            self.run.first,
            self.run.last,
            self.run.t0,
            self.run.t1,
        ] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        let (bytes, checksum, w) = self.frames.finish(&fields)?;
        let r = &self.run;
        let summary = SegmentSummary {
            timeline: self.timeline,
            first: r.first,
            last: r.last,
            t0: r.t0,
            t1: r.t1,
            count: r.count,
            bytes,
            checksum,
        };
        Ok((summary, w))
    }

    /// Write the last frame and the trailer; returns the summary.
    pub fn finish(self) -> Result<SegmentSummary> {
        self.finish_into_inner().map(|(s, _)| s)
    }
}

/// Reads a segment record by record, verifying as it goes.
///
/// Yields `Err` (and then ends) on any damage: a bad frame checksum, a truncated or
/// extended object, LSNs out of order, a trailer that disagrees, a bad object checksum.
/// Records already yielded before a late error must be discarded by the caller; the
/// iteration only ends with `None` after the whole object has been verified.
pub struct SegmentReader<R: Read> {
    frames: FrameReader<R>,
    timeline: u64,
    run: Run,
    progress: Progress<SegmentSummary>,
}

impl<R: Read> SegmentReader<R> {
    /// Open the segment `name` (used in error messages) and check its header.
    pub fn new(r: R, name: impl Into<String>) -> Result<Self> {
        let (frames, fields) = FrameReader::open(
            r,
            name.into(),
            "log segment",
            SEGMENT_MAGIC,
            SEGMENT_FORMAT_VERSION..=SEGMENT_FORMAT_VERSION,
            8,
        )?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&fields);
        Ok(SegmentReader {
            frames,
            timeline: u64::from_le_bytes(t),
            run: Run::default(),
            progress: Progress::Reading,
        })
    }

    /// The timeline in the header.
    pub fn timeline(&self) -> u64 {
        self.timeline
    }

    /// The summary, once the iteration has ended successfully.
    pub fn summary(&self) -> Option<&SegmentSummary> {
        self.progress.summary()
    }

    /// Bytes held in the reader's frame buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.frames.buffered_bytes()
    }

    /// Read and verify the rest of the object, dropping the records; returns the summary.
    pub fn verify(mut self) -> Result<SegmentSummary> {
        for rec in &mut self {
            rec?;
        }
        self.progress.into_summary(&self.frames.name)
    }

    fn next_record(&mut self) -> Result<Option<RawRecord>> {
        match self.frames.advance()? {
            Next::Entry => {
                let lsn = self.frames.take_u64()?;
                let time_ms = self.frames.take_u64()?;
                let body = self.frames.take_bytes()?;
                self.run.accept(&self.frames.name, lsn, time_ms)?;
                Ok(Some(RawRecord { lsn, time_ms, body }))
            }
            Next::Trailer => {
                let mut said = [0u64; 6];
                for (field, what) in said.iter_mut().zip(TRAILER_FIELDS) {
                    *field = self.frames.read_u64(what)?;
                }
                let (bytes, checksum) = self.frames.finish()?;
                let r = &self.run;
                let seen = [self.frames.frames(), r.count, r.first, r.last, r.t0, r.t1];
                for ((s, d), w) in seen.iter().zip(said).zip(TRAILER_FIELDS) {
                    if *s != d {
                        return Err(FormatError::corrupt(
                            &self.frames.name,
                            format!("trailer {w} is {d} but the frames hold {s}"),
                        ));
                    }
                }
                let [_, count, first, last, t0, t1] = said;
                self.progress = Progress::Done(SegmentSummary {
                    timeline: self.timeline,
                    first,
                    last,
                    t0,
                    t1,
                    count,
                    bytes,
                    checksum,
                });
                Ok(None)
            }
        }
    }
}

impl<R: Read> Iterator for SegmentReader<R> {
    type Item = Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.progress.is_reading() {
            return None;
        }
        let step = self.next_record();
        self.progress.yield_step(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object whose checksums are all right but whose trailer lies about its content.
    fn forged(trailer: [u64; 6], version: u32) -> Vec<u8> {
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&version.to_le_bytes());
        header.extend_from_slice(&1u64.to_le_bytes());
        let mut w = FrameWriter::new(Vec::new(), "forged".into(), header);
        for lsn in 1..=2u64 {
            let raw = w.raw_mut();
            raw.extend_from_slice(&lsn.to_le_bytes());
            raw.extend_from_slice(&10u64.to_le_bytes());
            put_checked(raw, 1, b"x");
            w.entry_done().expect("entry");
        }
        let fields: Vec<u8> = trailer.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.finish(&fields).expect("finish").2
    }

    #[test]
    fn honest_forgery_reads() {
        let bytes = forged([1, 2, 1, 2, 10, 10], SEGMENT_FORMAT_VERSION);
        let s = SegmentReader::new(bytes.as_slice(), "s")
            .expect("open")
            .verify()
            .expect("verify");
        assert_eq!((s.first, s.last, s.count), (1, 2, 2));
    }

    #[test]
    fn trailer_that_disagrees_with_frames_is_refused() {
        for (i, want) in TRAILER_FIELDS.iter().enumerate() {
            let mut t = [1, 2, 1, 2, 10, 10];
            t[i] += 1;
            let bytes = forged(t, SEGMENT_FORMAT_VERSION);
            let err = SegmentReader::new(bytes.as_slice(), "seg-x")
                .expect("open")
                .verify()
                .expect_err(want);
            let msg = err.to_string();
            assert!(msg.contains(want) && msg.contains("seg-x"), "{msg}");
        }
    }

    #[test]
    fn future_version_is_refused_by_number() {
        let bytes = forged([1, 2, 1, 2, 10, 10], 2);
        let err = SegmentReader::new(bytes.as_slice(), "seg-v2")
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                FormatError::UnsupportedVersion {
                    version: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("seg-v2"), "{err}");
    }
}
