//! One module per subcommand; [`run`] dispatches. Shared helpers open the database, the
//! store, the repository and the backup service the way every command needs them.

pub mod backup;
pub mod bench;
pub mod demo;
pub mod dump;
pub mod kv;
pub mod load;
pub mod metrics;
pub mod prune;
pub mod restore;
pub mod restore_point;
pub mod snapshot;
pub mod status;
pub mod verify;

use std::sync::Arc;

use tito_backup::{BackupConfig, BackupService, Repository};
use tito_capture::Db;

use crate::args::{Cli, Command};
use crate::config::Settings;
use crate::exit::{self, CliError, Result};
use crate::open::{Mode, open_engine, open_store};

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli)?;
    let json = cli.json;
    match cli.command {
        Command::Kv(cmd) => kv::run(settings.db()?, cmd, json).await,
        Command::Dump => {
            let engine = open_engine(settings.db()?, Mode::Existing).await?;
            let r = dump::run(engine.as_ref()).await;
            engine.close().await?;
            r
        }
        Command::Load(args) => load::run(&settings, &args).await,
        Command::Backup(args) => backup::run(&settings, &args).await,
        Command::Snapshot => snapshot::run(&settings).await,
        Command::Status | Command::List => status::run(&settings, json).await,
        Command::Restore(args) => restore::run(&settings, &args, json).await,
        Command::Verify(args) => verify::run(&settings, &args, json).await,
        Command::Prune(args) => prune::run(&settings, &args, json).await,
        Command::RestorePoint(args) => restore_point::run(&settings, &args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Bench(args) => bench::run(&settings, &args, json).await,
    }
}

/// Open the repository of the configured store, read-only: a missing store directory or a
/// store without a repository is an error, and nothing is created.
pub async fn open_repository(settings: &Settings) -> Result<Repository> {
    let url = settings.store()?;
    let store = open_store(url, Mode::Existing).await?;
    Repository::open(store)
        .await
        .map_err(|e| s3_hint(url, e.into()))
}

/// S3 failures to reach the store usually mean missing credentials or endpoint: say
/// where they come from.
pub fn s3_hint(url: &str, e: CliError) -> CliError {
    if url.starts_with("s3://") && e.code == exit::UNAVAILABLE {
        let message = format!(
            "{} (S3 settings come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for S3-compatible servers, AWS_ENDPOINT_URL)",
            e.message
        );
        CliError::new(e.code, message)
    } else {
        e
    }
}

/// A backup service for the configured database and store (the store is created if
/// needed; a store holding another database's backups is refused).
pub async fn open_service(settings: &Settings, config: BackupConfig) -> Result<Arc<BackupService>> {
    let engine = open_engine(settings.db()?, Mode::Existing).await?;
    let url = settings.store()?;
    let store = open_store(url, Mode::Create).await?;
    let db = Db::open(engine).await?;
    let service = BackupService::new(db, store, config)
        .await
        .map_err(|e| s3_hint(url, e.into()))?;
    Ok(Arc::new(service))
}
