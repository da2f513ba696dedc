//! The control protocol, version [`VERSION`]: one request per connection, as one JSON line;
//! the answer is zero or more `pairs` lines then one `ok` or `error` line. Specified in
//! docs/CONTROL.md.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tito_backup::{BackupResult, ShipResult, SnapshotResult};
use tito_format::RestorePoint;

use crate::backup::BackupStatus;
use crate::error::ErrorKind;
use crate::lag::Lag;

/// The protocol version this library speaks. A holder answers a request of another version
/// with a `usage` error naming both.
pub const VERSION: u32 = 1;

/// The longest request line a holder reads.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Bytes, as standard base64 (with padding) in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

/// A request line: `{"v":1,"request":{"op":"get","key":"aw=="}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestLine {
    /// Protocol version.
    pub v: u32,
    /// The request.
    pub request: Request,
}

/// What a client asks the holder of a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you: answered with [`Reply::Hello`].
    Hello,
    /// The value of a user key ([`Reply::Value`]).
    Get {
        /// The key.
        key: B64,
    },
    /// Set a user key, captured ([`Reply::Put`]).
    Put {
        /// The key.
        key: B64,
        /// The value.
        value: B64,
    },
    /// Delete a user key, captured ([`Reply::Deleted`]).
    Delete {
        /// The key.
        key: B64,
    },
    /// User keys with a prefix, in order: `pairs` lines, then [`Reply::Done`].
    Scan {
        /// The prefix.
        prefix: B64,
        /// At most this many pairs.
        limit: usize,
    },
    /// The backed-up keyspace from one read view: `pairs` lines, then [`Reply::Done`].
    Dump,
    /// Database id, timeline and unshipped records ([`Reply::Live`]).
    Live,
    /// The holder's running backup ([`Reply::Status`]; `null` if it runs none).
    Status,
    /// One backup round: ship the log, snapshot if due ([`Reply::Backup`]).
    Backup(Target),
    /// A snapshot now, incremental ([`Reply::Snapshot`]).
    Snapshot(Target),
    /// A snapshot now that uploads every chunk afresh, sharing nothing with earlier ones
    /// (`tito snapshot --full`; [`Reply::Snapshot`]).
    SnapshotFull(Target),
    /// Ship, then label the position ([`Reply::RestorePoint`]).
    RestorePoint {
        /// The label.
        name: String,
        /// Which store.
        #[serde(flatten)]
        target: Target,
    },
    /// Ship the running backup now ([`Reply::Synced`]).
    Sync,
}

/// Which store a backup verb works on: the holder's running backup when `store` is absent
/// or names the store it ships to, otherwise a one-shot backup service on `store` (refused
/// if the running backup holds the database's shipper lease).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// A store URL, local paths absolute.
    #[serde(default)]
    pub store: Option<String>,
    /// zstd level for a one-shot service.
    #[serde(default)]
    pub compression_level: Option<i32>,
}

/// A line of an answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyLine {
    /// Some pairs of a scan or dump (more may follow).
    Pairs(Vec<(B64, B64)>),
    /// The final answer.
    Ok(Reply),
    /// The final answer: a failure.
    Error(RemoteError),
}

/// A failure, as the holder classified it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Its kind (the CLI's exit code follows from it).
    pub kind: ErrorKind,
    /// Its message with its causes, one line.
    pub message: String,
}

/// Successful answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The holder.
    Hello {
        /// Its protocol version.
        protocol: u32,
        /// Its process id.
        pid: u32,
        /// The database file it holds.
        database: String,
        /// The store its running backup ships to.
        backup_store: Option<String>,
    },
    /// A value, or none.
    Value {
        /// The value.
        value: Option<B64>,
    },
    /// Written at this LSN.
    Put {
        /// The commit's LSN.
        lsn: Option<u64>,
    },
    /// Deleted.
    Deleted {
        /// Whether the key was there.
        existed: bool,
    },
    /// The end of a scan or dump.
    Done {
        /// Pairs sent.
        count: u64,
    },
    /// The live database.
    Live {
        /// Its database id.
        database_id: Option<String>,
        /// Its timeline.
        timeline: u64,
        /// Unshipped records.
        lag: Lag,
    },
    /// The running backup.
    Status {
        /// Its status, if one runs.
        backup: Option<BackupStatus>,
    },
    /// A backup round.
    Backup(BackupResult),
    /// A snapshot.
    Snapshot(SnapshotResult),
    /// A restore point.
    RestorePoint(RestorePoint),
    /// A sync.
    Synced(ShipResult),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stable_json() {
        let line = RequestLine {
            v: VERSION,
            request: Request::Get {
                key: B64(b"k\xff".to_vec()),
            },
        };
        let text = serde_json::to_string(&line).expect("json");
        assert_eq!(text, r#"{"v":1,"request":{"op":"get","key":"a/8="}}"#);
        let back: RequestLine = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.request, line.request);
        let rp = Request::RestorePoint {
            name: "x".into(),
            target: Target {
                store: Some("/s".into()),
                compression_level: None,
            },
        };
        let text = serde_json::to_string(&rp).expect("json");
        assert_eq!(
            text,
            r#"{"op":"restore_point","name":"x","store":"/s","compression_level":null}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).expect("parse"), rp);
        let reply = ReplyLine::Ok(Reply::Done { count: 3 });
        assert_eq!(
            serde_json::to_string(&reply).expect("json"),
            r#"{"ok":{"reply":"done","count":3}}"#
        );
    }
}
