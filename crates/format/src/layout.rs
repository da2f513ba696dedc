//! Where each object lives in a backup store, relative to the repository root.
//!
//! ```text
//! tito.repo                                      repository config (written once, create-only)
//! timelines/<tl>/TIMELINE                        timeline history: parent timeline and branch LSN
//! timelines/<tl>/log/<first>-<last>_<t0>-<t1>.seg log segment holding records first..=last,
//!                                                whose commit times span t0..=t1 (ms)
//! timelines/<tl>/snapshots/<lsn>-<id>/<n>.chunk  snapshot chunk n
//! timelines/<tl>/snapshots/<lsn>-<id>/MANIFEST   snapshot manifest, written last
//! timelines/<tl>/writers/<epoch>-<writer>.claim  writer claim (repository format 2): the
//!                                                newest one names who may ship on the
//!                                                timeline: a shipper's token, or
//!                                                `retired-by-<tl>` once a restore continued it
//! restore-points/<name>                          restore point: label -> (timeline, lsn, time)
//! chunks/<hash>.chunk                            shared snapshot chunk (manifest v2), named
//!                                                by its content hash, referenced by any
//!                                                number of manifests of any timeline
//! ```
//!
//! Numbers are zero-padded decimal (timelines 8 digits, LSNs 20 digits, chunk numbers
//! 6 digits) so that lexicographic listing order is numeric order. A segment's name is
//! its LSN range, so shipping the same records again writes the same object.

/// Name of the repository config object.
pub const REPO_CONFIG: &str = "tito.repo";
/// Prefix of all timelines.
pub const TIMELINES: &str = "timelines/";
/// Prefix of all restore points.
pub const RESTORE_POINTS: &str = "restore-points/";
/// Prefix of the shared, content-named snapshot chunks (manifest v2, FORMAT.md §7.3).
pub const SHARED_CHUNKS: &str = "chunks/";
/// blake3 `derive_key` context of the content hash naming a shared chunk of an
/// unencrypted repository.
pub const CHUNK_HASH_CONTEXT: &str = "tito chunk v1";
/// File name of a snapshot manifest inside its snapshot folder.
pub const MANIFEST: &str = "MANIFEST";

/// Prefix of everything on timeline `tl`.
pub fn timeline_prefix(tl: u64) -> String {
    format!("{TIMELINES}{tl:08}/")
}

/// The history object of timeline `tl`.
pub fn timeline_history(tl: u64) -> String {
    format!("{}TIMELINE", timeline_prefix(tl))
}

/// Prefix of the log segments of timeline `tl`.
pub fn log_prefix(tl: u64) -> String {
    format!("{}log/", timeline_prefix(tl))
}

/// The log segment of timeline `tl` holding records `first..=last` with commit times
/// `t0..=t1` (milliseconds). Times are in the name so that planning a restore to a time
/// needs only a listing.
pub fn segment(tl: u64, first: u64, last: u64, t0: u64, t1: u64) -> String {
    format!(
        "{}{first:020}-{last:020}_{t0:013}-{t1:013}.seg",
        log_prefix(tl)
    )
}

/// Prefix of the writer claims of timeline `tl`.
pub fn writers_prefix(tl: u64) -> String {
    format!("{}writers/", timeline_prefix(tl))
}

/// Who a writer claim names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// A shipper, by its random token (lowercase hex).
    Shipper(String),
    /// Nobody may ship any more: a restore continued this timeline's database on the
    /// given timeline.
    RetiredBy(u64),
}

/// The writer claim `epoch` of timeline `tl` (epochs 10 digits, so listing order is
/// claim order). Claims are written create-only: one epoch has one writer.
pub fn writer_claim(tl: u64, epoch: u64, writer: &Writer) -> String {
    let who = match writer {
        Writer::Shipper(token) => token.clone(),
        Writer::RetiredBy(child) => format!("retired-by-{child:08}"),
    };
    format!("{}{epoch:010}-{who}.claim", writers_prefix(tl))
}

/// Prefix of the snapshots of timeline `tl`.
pub fn snapshots_prefix(tl: u64) -> String {
    format!("{}snapshots/", timeline_prefix(tl))
}

/// Folder of one snapshot taken at `lsn` with unique `id` (so two snapshots at one LSN never collide).
pub fn snapshot_dir(tl: u64, lsn: u64, id: &str) -> String {
    format!("{}{lsn:020}-{id}/", snapshots_prefix(tl))
}

/// Chunk `n` of a snapshot folder.
pub fn snapshot_chunk(dir: &str, n: u32) -> String {
    format!("{dir}{n:06}.chunk")
}

/// The shared chunk whose content hash is `hash` (64 lowercase hex digits): its name
/// depends only on the pairs it holds (and, in an encrypted repository, a key), so
/// snapshots holding the same pairs share one object.
pub fn shared_chunk(hash: &str) -> String {
    format!("{SHARED_CHUNKS}{hash}.chunk")
}

/// Manifest of a snapshot folder.
pub fn snapshot_manifest(dir: &str) -> String {
    format!("{dir}{MANIFEST}")
}

/// The restore point called `name`.
pub fn restore_point(name: &str) -> String {
    format!("{RESTORE_POINTS}{name}")
}

/// What a key in the repository is, parsed back from its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectName {
    /// The repository config.
    RepoConfig,
    /// A timeline's history object.
    TimelineHistory {
        /// Timeline number.
        timeline: u64,
    },
    /// A log segment.
    Segment {
        /// Timeline number.
        timeline: u64,
        /// First LSN held.
        first: u64,
        /// Last LSN held.
        last: u64,
        /// Commit time of the first record (ms).
        t0: u64,
        /// Commit time of the last record (ms).
        t1: u64,
    },
    /// A snapshot chunk.
    SnapshotChunk {
        /// Timeline number.
        timeline: u64,
        /// Snapshot LSN.
        lsn: u64,
        /// Snapshot id.
        id: String,
        /// Chunk number.
        n: u32,
    },
    /// A shared, content-named snapshot chunk (`chunks/<hash>.chunk`).
    SharedChunk {
        /// Its content hash (64 lowercase hex digits).
        hash: String,
    },
    /// A snapshot manifest.
    SnapshotManifest {
        /// Timeline number.
        timeline: u64,
        /// Snapshot LSN.
        lsn: u64,
        /// Snapshot id.
        id: String,
    },
    /// A writer claim.
    WriterClaim {
        /// Timeline number.
        timeline: u64,
        /// Claim epoch (the newest claim is in force).
        epoch: u64,
        /// Who it names.
        writer: Writer,
    },
    /// A restore point.
    RestorePoint {
        /// Its label.
        name: String,
    },
    /// Anything else (left alone by Tito).
    Other,
}

/// Parse a repository key back into what it names.
pub fn parse(key: &str) -> ObjectName {
    if key == REPO_CONFIG {
        return ObjectName::RepoConfig;
    }
    if let Some(name) = key.strip_prefix(RESTORE_POINTS) {
        return ObjectName::RestorePoint {
            name: name.to_string(),
        };
    }
    if let Some(hash) = key
        .strip_prefix(SHARED_CHUNKS)
        .and_then(|s| s.strip_suffix(".chunk"))
    {
        if is_hash(hash) {
            return ObjectName::SharedChunk {
                hash: hash.to_string(),
            };
        }
        return ObjectName::Other;
    }
    let Some(rest) = key.strip_prefix(TIMELINES) else {
        return ObjectName::Other;
    };
    let Some((tl, rest)) = rest.split_once('/') else {
        return ObjectName::Other;
    };
    let Some(timeline) = parse_num(tl, 8) else {
        return ObjectName::Other;
    };
    if rest == "TIMELINE" {
        return ObjectName::TimelineHistory { timeline };
    }
    if let Some(seg) = rest
        .strip_prefix("log/")
        .and_then(|s| s.strip_suffix(".seg"))
    {
        let parsed = seg.split_once('_').and_then(|(lsns, times)| {
            let (a, b) = lsns.split_once('-')?;
            let (c, d) = times.split_once('-')?;
            Some(ObjectName::Segment {
                timeline,
                first: parse_num(a, 20)?,
                last: parse_num(b, 20)?,
                t0: parse_num(c, 13)?,
                t1: parse_num(d, 13)?,
            })
        });
        return parsed.unwrap_or(ObjectName::Other);
    }
    if let Some(claim) = rest
        .strip_prefix("writers/")
        .and_then(|s| s.strip_suffix(".claim"))
    {
        let parsed = claim.split_once('-').and_then(|(epoch, who)| {
            let epoch = parse_num(epoch, 10)?;
            let writer = match who.strip_prefix("retired-by-") {
                Some(child) => Writer::RetiredBy(parse_num(child, 8)?),
                None if !who.is_empty()
                    && who
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
                {
                    Writer::Shipper(who.to_string())
                }
                None => return None,
            };
            Some(ObjectName::WriterClaim {
                timeline,
                epoch,
                writer,
            })
        });
        return parsed.unwrap_or(ObjectName::Other);
    }
    if let Some(snap) = rest.strip_prefix("snapshots/") {
        let Some((dir, file)) = snap.split_once('/') else {
            return ObjectName::Other;
        };
        let Some((lsn, id)) = dir.split_once('-') else {
            return ObjectName::Other;
        };
        let Some(lsn) = parse_num(lsn, 20) else {
            return ObjectName::Other;
        };
        if id.is_empty() {
            return ObjectName::Other;
        }
        let id = id.to_string();
        if file == MANIFEST {
            return ObjectName::SnapshotManifest { timeline, lsn, id };
        }
        if let Some(n) = file
            .strip_suffix(".chunk")
            .and_then(|n| parse_num(n, 6))
            .and_then(|n| u32::try_from(n).ok())
        {
            return ObjectName::SnapshotChunk {
                timeline,
                lsn,
                id,
                n,
            };
        }
    }
    ObjectName::Other
}

/// True for a content hash as chunk names carry it: 64 lowercase hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A number as the writers format it (`{:0width$}`): exactly `width` digits, or more
/// digits without a leading zero for a value of `10^width` or more (a timeline, time or
/// chunk number past its padding must still name an object Tito lists).
fn parse_num(s: &str, width: usize) -> Option<u64> {
    let canonical = s.len() == width || (s.len() > width && !s.starts_with('0'));
    if !canonical || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse(&segment(3, 10, 20, 1_700_000_000_000, 1_700_000_000_005)),
            ObjectName::Segment {
                timeline: 3,
                first: 10,
                last: 20,
                t0: 1_700_000_000_000,
                t1: 1_700_000_000_005
            }
        );
        let dir = snapshot_dir(2, 99, "ab12");
        assert_eq!(
            parse(&snapshot_chunk(&dir, 7)),
            ObjectName::SnapshotChunk {
                timeline: 2,
                lsn: 99,
                id: "ab12".into(),
                n: 7
            }
        );
        assert_eq!(
            parse(&snapshot_manifest(&dir)),
            ObjectName::SnapshotManifest {
                timeline: 2,
                lsn: 99,
                id: "ab12".into()
            }
        );
        assert_eq!(
            parse(&timeline_history(4)),
            ObjectName::TimelineHistory { timeline: 4 }
        );
        assert_eq!(parse(REPO_CONFIG), ObjectName::RepoConfig);
        assert_eq!(
            parse(&restore_point("before-deploy")),
            ObjectName::RestorePoint {
                name: "before-deploy".into()
            }
        );
        assert_eq!(parse("timelines/x/log/1-2.seg"), ObjectName::Other);
        let hash = "ab".repeat(32);
        assert_eq!(
            parse(&shared_chunk(&hash)),
            ObjectName::SharedChunk { hash: hash.clone() }
        );
        assert_eq!(parse("chunks/AB.chunk"), ObjectName::Other);
        assert_eq!(
            parse(&shared_chunk(&hash.to_uppercase())),
            ObjectName::Other
        );
        for writer in [Writer::Shipper("00ff12ab".into()), Writer::RetiredBy(12)] {
            assert_eq!(
                parse(&writer_claim(3, 42, &writer)),
                ObjectName::WriterClaim {
                    timeline: 3,
                    epoch: 42,
                    writer
                }
            );
        }
        assert_eq!(
            parse("timelines/00000003/writers/0000000042-XY.claim"),
            ObjectName::Other
        );
    }

    /// Regression (fuzz target `documents`): numbers wider than their padding named
    /// objects that `parse` listed as foreign.
    #[test]
    fn numbers_past_their_padding_round_trip() {
        let (tl, t) = (1_426_063_363, 99_999_999_999_999);
        assert_eq!(
            parse(&segment(tl, 1, 2, t, t)),
            ObjectName::Segment {
                timeline: tl,
                first: 1,
                last: 2,
                t0: t,
                t1: t
            }
        );
        let dir = snapshot_dir(tl, 5, "ab");
        assert_eq!(
            parse(&snapshot_chunk(&dir, u32::MAX)),
            ObjectName::SnapshotChunk {
                timeline: tl,
                lsn: 5,
                id: "ab".into(),
                n: u32::MAX
            }
        );
        // Not canonical (a leading zero past the width), or too large for a chunk number.
        assert_eq!(parse("timelines/012345678/TIMELINE"), ObjectName::Other);
        assert_eq!(
            parse(&format!("{dir}/{}.chunk", u64::from(u32::MAX) + 1)),
            ObjectName::Other
        );
    }

    #[test]
    fn listing_order_is_numeric_order() {
        assert!(segment(1, 9, 9, 5, 5) < segment(1, 10, 10, 5, 5));
        assert!(timeline_prefix(9) < timeline_prefix(10));
    }
}
