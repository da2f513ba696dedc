//! `tito restore-point NAME`: ship the log, then label the current position.

use tito_backup::BackupConfig;

use crate::args::RestorePointArgs;
use crate::commands::{BackupOn, backup_on};
use crate::config::Settings;
use crate::exit::{CliError, Result};
use crate::fmt;
use crate::held;
use tito::control::protocol::{Reply, Request};

/// `tito restore-point NAME`.
pub async fn run(settings: &Settings, args: &RestorePointArgs) -> Result<()> {
    // Check the name before touching anything.
    tito_format::repo::validate_restore_point_name(&args.name)
        .map_err(|e| CliError::usage(format!("invalid restore point name {:?}: {e}", args.name)))?;
    let point = match backup_on(settings, BackupConfig::default()).await? {
        BackupOn::Local(service) => {
            let point = service.restore_point(&args.name).await;
            // Give the lease up even after a failure, so the next command need not wait.
            let released = service.release_lease().await;
            let point = point?;
            released?;
            point
        }
        BackupOn::Remote(client, target) => {
            let name = args.name.clone();
            match held::call(&client, Request::RestorePoint { name, target }).await? {
                Reply::RestorePoint(point) => point,
                other => return Err(held::unexpected(other)),
            }
        }
    };
    crate::outln!(
        "restore point {:?} = timeline {} LSN {} (created {}); restore to it with --to label:{}",
        point.name,
        point.timeline,
        point.lsn,
        fmt::time_ms(point.created_ms),
        point.name
    )?;
    Ok(())
}
