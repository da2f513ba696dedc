//! Settings: command-line flags win over environment variables (clap reads `TITO_DB`,
//! `TITO_STORE`, `TITO_CONFIG`), which win over the TOML file given with `--config`.
//!
//! ```toml
//! db = "redb:///var/lib/app/app.redb"
//! store = "s3://backups/app"
//!
//! [backup]
//! interval = "1s"           # continuous shipping interval
//! snapshot_every = "6h"     # take a snapshot when the newest is older than this
//! snapshot_every_records = 1000000
//! metrics = "127.0.0.1:9187"
//! wait_for_lease = false
//! compression_level = 3     # zstd level of segments and chunks (1 fastest … 19 smallest)
//!
//! [retention]
//! keep_last = 7
//! keep_within = "7d"
//! keep_daily = 14
//! keep_weekly = 8
//! keep_monthly = 12
//!
//! [encryption]
//! key_file = "/etc/tito/backup.key"   # keyring file (tito key new); TITO_ENCRYPTION_KEY_FILE wins
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::args::{Cli, PruneArgs};
use crate::exit::{CliError, Result};

/// The TOML config file. Unknown keys are refused so typos do not pass silently.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Database URL.
    pub db: Option<String>,
    /// Store URL.
    pub store: Option<String>,
    /// Backup settings.
    #[serde(default)]
    pub backup: BackupSection,
    /// Retention settings for `prune`.
    #[serde(default)]
    pub retention: RetentionSection,
    /// Encryption settings.
    #[serde(default)]
    pub encryption: EncryptionSection,
}

/// `[encryption]` of the config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// The keyring file (relative paths are relative to the config file's directory).
    pub key_file: Option<std::path::PathBuf>,
}

/// `[backup]` of the config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Shipping interval (humantime, e.g. "1s").
    pub interval: Option<String>,
    /// Snapshot period (humantime, e.g. "6h").
    pub snapshot_every: Option<String>,
    /// Snapshot after this many records shipped.
    pub snapshot_every_records: Option<u64>,
    /// Metrics address.
    pub metrics: Option<String>,
    /// Wait for another shipper's lease.
    pub wait_for_lease: Option<bool>,
    /// zstd level of segments and chunks.
    pub compression_level: Option<i32>,
}

/// `[retention]` of the config file.
#[derive(Debug, Default, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Keep the newest N snapshots.
    pub keep_last: Option<usize>,
    /// Keep every point within this window (humantime).
    pub keep_within: Option<String>,
    /// Daily snapshots to keep.
    pub keep_daily: Option<usize>,
    /// Weekly snapshots to keep.
    pub keep_weekly: Option<usize>,
    /// Monthly snapshots to keep.
    pub keep_monthly: Option<usize>,
}

/// The resolved retention flags.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest N snapshots.
    pub keep_last: Option<usize>,
    /// Keep every point within this window.
    pub keep_within: Option<Duration>,
    /// Daily snapshots to keep.
    pub keep_daily: Option<usize>,
    /// Weekly snapshots to keep.
    pub keep_weekly: Option<usize>,
    /// Monthly snapshots to keep.
    pub keep_monthly: Option<usize>,
}

impl Retention {
    /// True if no rule is set (prune would then keep only what restore needs for latest).
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// Everything resolved from flags, environment and file.
#[derive(Debug, Default)]
pub struct Settings {
    /// Database URL, if given anywhere.
    pub db: Option<String>,
    /// Store URL, if given anywhere.
    pub store: Option<String>,
    /// The config file's contents (empty without `--config`).
    pub file: FileConfig,
}

impl Settings {
    /// Resolve from the parsed command line (which already folded in the environment).
    pub fn resolve(cli: &Cli) -> Result<Settings> {
        let mut file = match &cli.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        if let (Some(key), Some(config)) = (&file.encryption.key_file, &cli.config) {
            if key.is_relative() {
                let dir = config.parent().unwrap_or(Path::new(""));
                file.encryption.key_file = Some(dir.join(key));
            }
        }
        Ok(Settings {
            db: cli.db.clone().or_else(|| file.db.clone()),
            // `backup --to URL` names the store like `--store` (and wins over it).
            store: match &cli.command {
                crate::args::Command::Backup(b) if b.to.is_some() => b.to.clone(),
                _ => None,
            }
            .or_else(|| cli.store.clone())
            .or_else(|| file.store.clone()),
            file,
        })
    }

    /// The encryption keyring file: `TITO_ENCRYPTION_KEY_FILE`, else the file's
    /// `[encryption] key_file`, else none (no encryption).
    pub fn key_file(&self) -> Option<std::path::PathBuf> {
        tito::open::key_file_from_env().or_else(|| self.file.encryption.key_file.clone())
    }

    /// The database URL, or a usage error saying how to give one.
    pub fn db(&self) -> Result<&str> {
        self.db.as_deref().ok_or_else(|| {
            CliError::usage(
                "no database given: pass --db URL, set TITO_DB, or set db in the --config file",
            )
        })
    }

    /// The store URL, or a usage error saying how to give one.
    pub fn store(&self) -> Result<&str> {
        self.store.as_deref().ok_or_else(|| {
            CliError::usage(
                "no backup store given: pass --store URL, set TITO_STORE, or set store in the --config file",
            )
        })
    }

    /// The shipping interval: flag, else file, else 1 s.
    pub fn interval(&self, flag: Option<Duration>) -> Result<Duration> {
        match flag {
            Some(d) => Ok(d),
            None => Ok(
                duration(self.file.backup.interval.as_deref(), "backup.interval")?
                    .unwrap_or(Duration::from_secs(1)),
            ),
        }
    }

    /// The zstd level of segments and chunks: file, else `BackupConfig`'s default. Levels
    /// outside 1..=19 are refused (22 is zstd's maximum but needs far more memory to
    /// decompress; 0 and negative levels trade size away for speed nobody here needs).
    pub fn compression_level(&self) -> Result<i32> {
        match self.file.backup.compression_level {
            None => Ok(tito_backup::BackupConfig::default().compression_level),
            Some(l) if (1..=19).contains(&l) => Ok(l),
            Some(l) => Err(CliError::usage(format!(
                "config backup.compression_level {l} is outside 1..=19 (1 is fastest, 19 smallest)"
            ))),
        }
    }

    /// The snapshot period: flag, else file, else none.
    pub fn snapshot_every(&self, flag: Option<Duration>) -> Result<Option<Duration>> {
        match flag {
            Some(d) => Ok(Some(d)),
            None => duration(
                self.file.backup.snapshot_every.as_deref(),
                "backup.snapshot_every",
            ),
        }
    }

    /// The metrics address: flag, else file, else none.
    pub fn metrics(&self, flag: Option<SocketAddr>) -> Result<Option<SocketAddr>> {
        if flag.is_some() {
            return Ok(flag);
        }
        self.file
            .backup
            .metrics
            .as_deref()
            .map(|s| {
                s.parse().map_err(|e| {
                    CliError::usage(format!(
                        "config backup.metrics {s:?} is not an address like 127.0.0.1:9187: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// The retention rules: each flag wins over the file's value of the same rule.
    pub fn retention(&self, flags: &PruneArgs) -> Result<Retention> {
        let f = &self.file.retention;
        Ok(Retention {
            keep_last: flags.keep_last.or(f.keep_last),
            keep_within: match flags.keep_within {
                Some(d) => Some(d),
                None => duration(f.keep_within.as_deref(), "retention.keep_within")?,
            },
            keep_daily: flags.keep_daily.or(f.keep_daily),
            keep_weekly: flags.keep_weekly.or(f.keep_weekly),
            keep_monthly: flags.keep_monthly.or(f.keep_monthly),
        })
    }
}

fn duration(s: Option<&str>, what: &str) -> Result<Option<Duration>> {
    s.map(|s| {
        humantime::parse_duration(s).map_err(|e| {
            CliError::usage(format!(
                "config {what} {s:?} is not a duration like 500ms, 1s, 6h or 7d: {e}"
            ))
        })
    })
    .transpose()
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            crate::exit::NOT_FOUND
        } else {
            crate::exit::UNAVAILABLE
        };
        CliError::new(
            code,
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    parse(&text).map_err(|e| e.context(format!("config file {}", path.display())))
}

/// Parse config text.
pub fn parse(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| CliError::usage(format!("invalid TOML: {}", e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_every_section() {
        let c = parse(
            r#"
            db = "redb:///tmp/x.redb"
            store = "file:///tmp/b"
            [backup]
            interval = "250ms"
            snapshot_every = "6h"
            metrics = "127.0.0.1:9187"
            [retention]
            keep_last = 3
            keep_within = "7d"
            "#,
        )
        .expect("parse");
        assert_eq!(c.db.as_deref(), Some("redb:///tmp/x.redb"));
        assert_eq!(c.backup.interval.as_deref(), Some("250ms"));
        assert_eq!(c.retention.keep_last, Some(3));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("dbb = \"x\"").expect_err("typo");
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(e.message.contains("dbb"), "{}", e.message);
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tito.toml");
        std::fs::write(
            &path,
            "db = \"file-db\"\nstore = \"file-store\"\n[backup]\ninterval = \"3s\"\n[retention]\nkeep_last = 9\nkeep_daily = 2\n",
        )
        .expect("write");
        let cli = Cli::try_parse_from([
            "tito",
            "--config",
            path.to_str().expect("utf8"),
            "--db",
            "flag-db",
            "prune",
            "--keep-last",
            "1",
        ])
        .expect("args");
        let s = Settings::resolve(&cli).expect("resolve");
        assert_eq!(s.db().expect("db"), "flag-db");
        assert_eq!(s.store().expect("store"), "file-store");
        assert_eq!(s.interval(None).expect("interval"), Duration::from_secs(3));
        assert_eq!(
            s.interval(Some(Duration::from_millis(5)))
                .expect("interval"),
            Duration::from_millis(5)
        );
        let crate::args::Command::Prune(p) = &cli.command else {
            panic!("prune")
        };
        let r = s.retention(p).expect("retention");
        assert_eq!(r.keep_last, Some(1));
        assert_eq!(r.keep_daily, Some(2));
    }

    #[test]
    fn missing_settings_say_how_to_give_them() {
        let s = Settings::default();
        let e = s.db().expect_err("no db");
        assert_eq!(e.code, crate::exit::USAGE);
        assert!(e.message.contains("TITO_DB"));
        assert!(s.store().expect_err("no store").message.contains("--store"));
        let bad = Settings {
            file: parse("[backup]\ninterval = \"soon\"").expect("parse"),
            ..Settings::default()
        };
        assert_eq!(
            bad.interval(None).expect_err("bad").code,
            crate::exit::USAGE
        );
    }

    #[test]
    fn compression_level_is_checked() {
        let level = |toml: &str| {
            Settings {
                file: parse(toml).expect("parse"),
                ..Settings::default()
            }
            .compression_level()
        };
        assert_eq!(level("").expect("default"), 3);
        assert_eq!(level("[backup]\ncompression_level = 19").expect("19"), 19);
        for bad in [0, -3, 20, 22] {
            let e = level(&format!("[backup]\ncompression_level = {bad}")).expect_err("refused");
            assert_eq!(e.code, crate::exit::USAGE);
            assert!(
                e.message.contains("compression_level") && e.message.contains(&bad.to_string()),
                "{}",
                e.message
            );
        }
    }
}
