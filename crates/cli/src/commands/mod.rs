//! One module per subcommand; [`run`] dispatches. Shared helpers open the database, the
//! store, the repository and the backup service the way every command needs them.

pub mod backup;
pub mod bench;
pub mod compact;
pub mod demo;
pub mod dump;
pub mod import_legacy;
pub mod key;
pub mod kv;
pub mod load;
pub mod metrics;
pub mod prune;
pub mod rekey;
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
use crate::held::{self, Database};
use crate::open::{Mode, open_store};

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(&cli)?;
    crate::open::set_key_file(settings.key_file());
    let json = cli.json;
    match cli.command {
        Command::Kv(cmd) => kv::run(settings.db()?, cmd, json).await,
        Command::Dump => match held::open(settings.db()?, Mode::Existing).await? {
            Database::Local(engine) => {
                let r = dump::run(engine.as_ref()).await;
                engine.close().await?;
                r
            }
            Database::Remote(client) => dump::run_remote(&client).await,
        },
        Command::Load(args) => load::run(&settings, &args).await,
        Command::Backup(args) => backup::run(&settings, &args).await,
        Command::Snapshot(args) => snapshot::run(&settings, args.full).await,
        Command::Status | Command::List => status::run(&settings, json).await,
        Command::Restore(args) => restore::run(&settings, &args, json).await,
        Command::ImportLegacy(args) => import_legacy::run(&args, json).await,
        Command::Verify(args) => verify::run(&settings, &args, json).await,
        Command::Prune(args) => prune::run(&settings, &args, json).await,
        Command::Compact(args) => compact::run(&settings, &args, json).await,
        Command::RestorePoint(args) => restore_point::run(&settings, &args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Bench(args) => bench::run(&settings, &args, json).await,
        Command::Key(cmd) => key::run(cmd),
        Command::Rekey => rekey::run(&settings, json).await,
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

/// Failures to reach a cloud store usually mean missing credentials or endpoint: say
/// where they come from.
pub fn s3_hint(url: &str, e: CliError) -> CliError {
    let settings = if url.starts_with("s3://") {
        "S3 settings come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for S3-compatible servers, AWS_ENDPOINT_URL"
    } else if url.starts_with("gs://") {
        "GCS settings come from GOOGLE_SERVICE_ACCOUNT (a key file) or GOOGLE_APPLICATION_CREDENTIALS and, for an emulator, STORAGE_EMULATOR_HOST"
    } else if url.starts_with("az://") {
        "Azure settings come from AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY, or a service principal's AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID) and, for Azurite, AZURE_STORAGE_USE_EMULATOR=true"
    } else {
        return e;
    };
    if e.code == exit::UNAVAILABLE {
        CliError::new(e.code, format!("{} ({settings})", e.message))
    } else {
        e
    }
}

/// A backup service for `engine` (already open) and the configured store (created if
/// needed; a store holding another database's backups is refused).
pub async fn service_on(
    engine: Arc<dyn tito_engine::Engine>,
    settings: &Settings,
    config: BackupConfig,
) -> Result<Arc<BackupService>> {
    let url = settings.store()?;
    let store = open_store(url, Mode::Create).await?;
    let db = Db::open(engine).await?;
    let service = BackupService::new(db, store, config)
        .await
        .map_err(|e| s3_hint(url, e.into()))?;
    Ok(Arc::new(service))
}

/// The configured database for a backup verb: a service on it here, or the process
/// holding it (which uses its running backup, or a one-shot one on `--store`).
pub enum BackupOn {
    /// Opened here.
    Local(Arc<BackupService>),
    /// Held by another process.
    Remote(tito::control::Client, tito::control::protocol::Target),
}

/// Open the configured database for a backup verb.
pub async fn backup_on(settings: &Settings, config: BackupConfig) -> Result<BackupOn> {
    let level = Some(config.compression_level);
    if let Some(url) = settings.store.as_deref() {
        // A typo is refused before the database is touched.
        tito::url::parse_store_url(url).map_err(|e| CliError::usage(e.to_string()))?;
    }
    match held::open(settings.db()?, Mode::Existing).await? {
        Database::Local(engine) => Ok(BackupOn::Local(service_on(engine, settings, config).await?)),
        Database::Remote(client) => {
            let target = held::target(settings.store.as_deref(), level);
            Ok(BackupOn::Remote(client, target))
        }
    }
}
