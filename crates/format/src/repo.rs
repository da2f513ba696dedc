//! Repository-level documents: the config at the root, timeline histories, restore points.

use serde::{Deserialize, Serialize};

use crate::doc::{decode, encode, now_ms, random_id};
use crate::error::FormatError;

/// The repository config (`tito.repo`), written once when a repository is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Repository format version.
    pub format_version: u32,
    /// Unique id of this repository.
    pub repository_id: String,
    /// Id of the database whose backups this repository holds; another database is refused.
    pub database_id: String,
    /// Compression of segments and chunks (`zstd`).
    pub compression: String,
    /// Creation time (ms since the epoch).
    pub created_ms: u64,
    /// How every other object is encrypted (format version 3); `None`: not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<RepoEncryption>,
}

/// The encryption of a repository's objects, as recorded in its config: the scheme and
/// the ids of the keys objects are sealed with, never a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEncryption {
    /// The envelope scheme (`xchacha20poly1305-64k-v1`).
    pub scheme: String,
    /// Ids of the keys that seal the repository's objects (16 hex digits each); a keyring
    /// must hold one of them. `tito rekey` leaves only the newest.
    pub key_ids: Vec<String>,
}

/// Where a timeline branched off (`timelines/<tl>/TIMELINE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineHistory {
    /// This timeline.
    pub timeline: u64,
    /// The timeline it was restored from, if any.
    pub parent: Option<u64>,
    /// The last LSN of the parent included in this timeline's starting state (for a new
    /// root timeline, `parent: None`, the LSN its database's log starts after).
    pub branch_lsn: u64,
    /// Commit time of record `branch_lsn` (ms; 0 if unknown, as in documents written
    /// before this field).
    #[serde(default)]
    pub branch_time_ms: u64,
    /// Id of the restore that made this timeline (empty in documents written before this
    /// field): a backup interrupted while opening the timeline finds it again by this id
    /// instead of opening a second one.
    #[serde(default)]
    pub branch_id: String,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
}

/// A named restore point (`restore-points/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Its label.
    pub name: String,
    /// Timeline of the labelled position.
    pub timeline: u64,
    /// The labelled LSN: restore to this point replays through it.
    pub lsn: u64,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
}

/// Repository format version: the layout of the store ([`crate::layout`]) and of this config.
/// Version 2 added writer claims (`timelines/<tl>/writers/`); version 1 repositories are
/// read and written as they are (their config is never rewritten), claims included.
pub const REPO_FORMAT_VERSION: u32 = 2;
/// Repository format version of encrypted repositories: every object but the config is an
/// encrypted envelope, which older builds would misread, so they must refuse the version.
pub const REPO_FORMAT_ENCRYPTED: u32 = 3;
/// The oldest repository format version this build reads.
pub const REPO_FORMAT_OLDEST: u32 = 1;
/// Timeline history document version.
pub const TIMELINE_FORMAT_VERSION: u32 = 1;
/// Restore point document version.
pub const RESTORE_POINT_FORMAT_VERSION: u32 = 1;
/// The only compression this build writes and reads.
pub const COMPRESSION_ZSTD: &str = "zstd";

pub(crate) const REPO_KIND: &str = "tito-repo";
pub(crate) const TIMELINE_KIND: &str = "tito-timeline";
pub(crate) const RESTORE_POINT_KIND: &str = "tito-restore-point";

impl RepoConfig {
    /// A config for a new repository holding `database_id`'s backups: a fresh random
    /// repository id (32 hex digits), zstd, created now.
    pub fn new(database_id: impl Into<String>) -> Self {
        RepoConfig {
            format_version: REPO_FORMAT_VERSION,
            repository_id: random_id(16),
            database_id: database_id.into(),
            compression: COMPRESSION_ZSTD.to_string(),
            created_ms: now_ms(),
            encryption: None,
        }
    }

    /// A config for a new encrypted repository (format version 3).
    pub fn new_encrypted(database_id: impl Into<String>, encryption: RepoEncryption) -> Self {
        RepoConfig {
            format_version: REPO_FORMAT_ENCRYPTED,
            encryption: Some(encryption),
            ..RepoConfig::new(database_id)
        }
    }

    /// The version of the config document: 3 for an encrypted repository, else 2.
    fn doc_version(&self) -> u32 {
        if self.encryption.is_some() {
            REPO_FORMAT_ENCRYPTED
        } else {
            REPO_FORMAT_VERSION
        }
    }

    /// Check the config's rules: supported version, non-empty ids, known compression.
    pub fn validate(&self, object: &str) -> Result<(), FormatError> {
        let bad = |problem: String| FormatError::Invalid {
            object: object.to_string(),
            kind: "repository config",
            problem,
        };
        if !(REPO_FORMAT_OLDEST..=REPO_FORMAT_ENCRYPTED).contains(&self.format_version) {
            return Err(FormatError::UnsupportedVersion {
                object: object.to_string(),
                kind: "repository",
                version: self.format_version,
                supported: REPO_FORMAT_ENCRYPTED,
            });
        }
        match (
            &self.encryption,
            self.format_version == REPO_FORMAT_ENCRYPTED,
        ) {
            (Some(e), true) => {
                if e.scheme.is_empty() || e.key_ids.is_empty() {
                    return Err(bad(
                        "an encrypted repository names its scheme and key ids".into()
                    ));
                }
            }
            (None, false) => {}
            _ => {
                return Err(bad(format!(
                    "format version {} and encryption {} disagree (version {REPO_FORMAT_ENCRYPTED} means encrypted)",
                    self.format_version,
                    if self.encryption.is_some() {
                        "recorded"
                    } else {
                        "absent"
                    }
                )));
            }
        }
        if self.repository_id.is_empty() || self.database_id.is_empty() {
            return Err(bad("repository id and database id must not be empty".into()));
        }
        if self.compression != COMPRESSION_ZSTD {
            return Err(bad(format!(
                "unknown compression {:?} (this build knows zstd)",
                self.compression
            )));
        }
        Ok(())
    }

    /// Refuse a repository that holds another database's backups.
    pub fn check_database(&self, object: &str, database_id: &str) -> Result<(), FormatError> {
        if self.database_id != database_id {
            return Err(FormatError::WrongDatabase {
                object: object.to_string(),
                repository_id: self.repository_id.clone(),
                found: self.database_id.clone(),
                expected: database_id.to_string(),
            });
        }
        Ok(())
    }

    /// Encode as a checksummed JSON document (after validating).
    pub fn encode(&self, object: &str) -> Result<Vec<u8>, FormatError> {
        self.validate(object)?;
        encode(object, REPO_KIND, self.doc_version(), self)
    }

    /// Decode and validate a config read from `object` (document version 2, or 3 for an
    /// encrypted repository).
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self, FormatError> {
        let (c, version): (RepoConfig, u32) =
            match decode(bytes, object, REPO_KIND, REPO_FORMAT_VERSION) {
                Err(FormatError::UnsupportedVersion {
                    version: REPO_FORMAT_ENCRYPTED,
                    ..
                }) => (
                    decode(bytes, object, REPO_KIND, REPO_FORMAT_ENCRYPTED)?,
                    REPO_FORMAT_ENCRYPTED,
                ),
                other => (other?, REPO_FORMAT_VERSION),
            };
        c.validate(object)?;
        if c.doc_version() != version {
            return Err(FormatError::Invalid {
                object: object.to_string(),
                kind: "repository config",
                problem: format!("document version {version} does not match its encryption"),
            });
        }
        Ok(c)
    }
}

impl TimelineHistory {
    /// Check the rules: a timeline is not its own parent.
    pub fn validate(&self, object: &str) -> Result<(), FormatError> {
        if self.parent == Some(self.timeline) {
            return Err(FormatError::Invalid {
                object: object.to_string(),
                kind: "timeline history",
                problem: format!("timeline {} names itself as its parent", self.timeline),
            });
        }
        Ok(())
    }

    /// Encode as a checksummed JSON document (after validating).
    pub fn encode(&self, object: &str) -> Result<Vec<u8>, FormatError> {
        self.validate(object)?;
        encode(object, TIMELINE_KIND, TIMELINE_FORMAT_VERSION, self)
    }

    /// Decode and validate a timeline history read from `object`.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self, FormatError> {
        let t: TimelineHistory = decode(bytes, object, TIMELINE_KIND, TIMELINE_FORMAT_VERSION)?;
        t.validate(object)?;
        Ok(t)
    }
}

/// Check a restore point label: 1 to 128 characters from `A-Z a-z 0-9 - _ . : @ +`, not
/// starting with `.` (so it is a single, safe object name).
pub fn validate_restore_point_name(name: &str) -> Result<(), FormatError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.:@+".contains(c);
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(FormatError::Invalid {
            object: format!("restore point {name:?}"),
            kind: "restore point",
            problem: "labels are 1 to 128 characters from A-Z a-z 0-9 - _ . : @ + and do not start with '.'".into(),
        });
    }
    Ok(())
}

impl RestorePoint {
    /// Check the rules: a valid label ([`validate_restore_point_name`]).
    pub fn validate(&self, _object: &str) -> Result<(), FormatError> {
        validate_restore_point_name(&self.name)
    }

    /// Encode as a checksummed JSON document (after validating).
    pub fn encode(&self, object: &str) -> Result<Vec<u8>, FormatError> {
        self.validate(object)?;
        encode(
            object,
            RESTORE_POINT_KIND,
            RESTORE_POINT_FORMAT_VERSION,
            self,
        )
    }

    /// Decode and validate a restore point read from `object`.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self, FormatError> {
        let p: RestorePoint = decode(
            bytes,
            object,
            RESTORE_POINT_KIND,
            RESTORE_POINT_FORMAT_VERSION,
        )?;
        p.validate(object)?;
        Ok(p)
    }
}
