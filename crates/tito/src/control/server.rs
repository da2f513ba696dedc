//! The holder's side: accept connections on the socket, check the peer, answer requests.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use tito_backup::{BackupConfig, BackupService};
use tito_capture::{CaptureError, Db};
use tito_engine::KeyRange;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::protocol::{
    B64, MAX_REQUEST_BYTES, RemoteError, Reply, ReplyLine, Request, RequestLine, Target, VERSION,
};
use super::socket_path;
use crate::database::{Inner, Tito};
use crate::error::{Error, ErrorKind, Result, cli_message};
use crate::lag::live_lag;
use crate::open::{Mode, absolute_store_url, open_store};

/// Pairs per `pairs` line of a scan or dump.
const PAGE: usize = 1024;

/// A running control socket; [`ControlServer::shutdown`] stops it and removes the socket.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Bind the socket beside `file`, owner-only, and serve `db`.
    pub(crate) async fn start(file: &Path, db: Weak<Inner>) -> Result<ControlServer> {
        let path = socket_path(file);
        let err = |e: std::io::Error| Error::Control {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // Bound under a temporary name and made owner-only before it takes its real name,
        // so the socket is never reachable with wider permissions.
        let tmp = path.with_extension(format!("sock.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(err)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        // Only the database file's owner may talk to its holder.
        let owner = std::fs::metadata(file).map_err(err)?.uid();
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let db = db.clone();
                            tokio::spawn(async move {
                                if let Err(e) = serve(stream, owner, db).await {
                                    tracing::debug!(error = %e, "control connection ended");
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "control socket accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                }
            }
        });
        tracing::debug!(socket = %path.display(), "serving the control socket");
        Ok(ControlServer { path, stop, task })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting and remove the socket (connections in flight finish).
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // The socket is removed by Drop, after the accept loop has ended.
        let _ = (&mut self.task).await;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        // Also when the database is dropped without `close`: we still hold its lock here.
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(stream: UnixStream, owner: u32, db: Weak<Inner>) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if peer.uid() != owner {
        tracing::warn!(
            uid = peer.uid(),
            "control connection from another user refused"
        );
        let line = ReplyLine::Error(RemoteError {
            kind: ErrorKind::Refused,
            message: "only the owner of the database file may use its control socket".into(),
        });
        return send(&mut write, &line).await;
    }
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_REQUEST_BYTES as u64)
        .read_line(&mut line)
        .await?;
    let request = match serde_json::from_str::<RequestLine>(&line) {
        Ok(r) if r.v == VERSION => r.request,
        Ok(r) => {
            let message = format!(
                "control protocol version {} is not spoken here (this holder speaks {VERSION}); use a tito of the same version",
                r.v
            );
            let e = RemoteError {
                kind: ErrorKind::Usage,
                message,
            };
            return send(&mut write, &ReplyLine::Error(e)).await;
        }
        Err(e) => {
            let e = RemoteError {
                kind: ErrorKind::Usage,
                message: format!("malformed control request: {e}"),
            };
            return send(&mut write, &ReplyLine::Error(e)).await;
        }
    };
    let Some(inner) = db.upgrade() else {
        let e = RemoteError {
            kind: ErrorKind::Unavailable,
            message: "the database is closing".into(),
        };
        return send(&mut write, &ReplyLine::Error(e)).await;
    };
    let tito = Tito::from_inner(inner);
    let answer = answer(&tito, request, &mut write).await;
    let last = match answer {
        Ok(reply) => ReplyLine::Ok(reply),
        // The line the CLI would print for it locally, hint included.
        Err(e) => ReplyLine::Error(RemoteError {
            kind: e.kind(),
            message: cli_message(&e),
        }),
    };
    send(&mut write, &last).await
}

async fn send(write: &mut (impl AsyncWriteExt + Unpin), line: &ReplyLine) -> std::io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.flush().await
}

type Write = tokio::net::unix::OwnedWriteHalf;

async fn answer(tito: &Tito, request: Request, out: &mut Write) -> Result<Reply> {
    let db = tito.db();
    let io = |e: std::io::Error| Error::Control {
        path: "client".into(),
        message: e.to_string(),
    };
    match request {
        Request::Hello => Ok(Reply::Hello {
            protocol: VERSION,
            pid: std::process::id(),
            database: tito
                .file()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            backup_store: tito
                .backup()
                .filter(|b| b.is_running())
                .map(|b| b.store_url().to_string()),
        }),
        Request::Get { key } => {
            let txn = db.begin().await?;
            let value = txn.get(&key.0).await;
            txn.rollback().await?;
            Ok(Reply::Value {
                value: value?.map(B64),
            })
        }
        Request::Put { key, value } => {
            let (_, lsn) = db
                .transaction_lsn(|txn| {
                    let (k, v) = (key.0.clone(), value.0.clone());
                    async move { txn.put(k, v) }
                })
                .await?;
            Ok(Reply::Put { lsn })
        }
        Request::Delete { key } => {
            let existed = db
                .transaction(|txn| {
                    let k = key.0.clone();
                    async move {
                        let existed = txn.get(&k).await?.is_some();
                        txn.delete(k)?;
                        Ok::<_, CaptureError>(existed)
                    }
                })
                .await?;
            Ok(Reply::Deleted { existed })
        }
        Request::Scan { prefix, limit } => {
            let txn = db.begin().await?;
            let pairs = txn.scan(&KeyRange::prefix(&prefix.0), limit).await;
            txn.rollback().await?;
            let pairs = pairs?;
            let count = pairs.len() as u64;
            for page in pairs.chunks(PAGE) {
                let line = ReplyLine::Pairs(to_b64(page));
                send(out, &line).await.map_err(io)?;
            }
            Ok(Reply::Done { count })
        }
        Request::Dump => {
            // One read view, streamed page by page: memory stays bounded.
            let view = db.engine().read_view().await?;
            let mut after: Option<Vec<u8>> = None;
            let mut count = 0u64;
            loop {
                let page =
                    tito_capture::scan_backed_up(view.as_ref(), after.as_deref(), PAGE).await?;
                count += page.len() as u64;
                if !page.is_empty() {
                    send(out, &ReplyLine::Pairs(to_b64(&page)))
                        .await
                        .map_err(io)?;
                }
                match page.last() {
                    Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                    _ => break,
                }
            }
            Ok(Reply::Done { count })
        }
        Request::Live => Ok(Reply::Live {
            database_id: db.database_id().await?,
            timeline: db.timeline().await?,
            lag: live_lag(db).await?,
        }),
        Request::Status => {
            let backup = match tito.backup() {
                Some(b) => Some(b.status().await?),
                None => None,
            };
            Ok(Reply::Status { backup })
        }
        Request::Sync => {
            let backup = running(tito, &Target::default()).ok_or_else(|| Error::Remote {
                kind: ErrorKind::Usage,
                message: "this process runs no backup to sync".into(),
            })?;
            Ok(Reply::Synced(backup.ship_log().await?))
        }
        Request::Backup(target) => {
            with_service(tito, &target, |s| async move {
                Ok(Reply::Backup(s.run_backup().await?))
            })
            .await
        }
        Request::Snapshot(target) => {
            with_service(tito, &target, |s| async move {
                Ok(Reply::Snapshot(s.snapshot().await?))
            })
            .await
        }
        Request::SnapshotFull(target) => {
            with_service(tito, &target, |s| async move {
                let full = tito_backup::SnapshotOptions { full: true };
                Ok(Reply::Snapshot(
                    s.snapshot_with_options(&full, &|_, _| {}).await?,
                ))
            })
            .await
        }
        Request::RestorePoint { name, target } => {
            with_service(tito, &target, |s| async move {
                Ok(Reply::RestorePoint(s.restore_point(&name).await?))
            })
            .await
        }
    }
}

fn to_b64(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(B64, B64)> {
    pairs
        .iter()
        .map(|(k, v)| (B64(k.clone()), B64(v.clone())))
        .collect()
}

/// The running backup's service, if `target` names its store (or no store).
fn running(tito: &Tito, target: &Target) -> Option<Arc<BackupService>> {
    let b = tito.backup().filter(|b| b.is_running())?;
    match &target.store {
        None => Some(b.service().clone()),
        Some(url) if absolute_store_url(url) == b.store_url() => Some(b.service().clone()),
        Some(_) => None,
    }
}

/// Run `f` on the running backup's service when `target` names it, otherwise on a one-shot
/// service for `target.store` whose lease is released afterwards.
async fn with_service<F, Fut>(tito: &Tito, target: &Target, f: F) -> Result<Reply>
where
    F: FnOnce(Arc<BackupService>) -> Fut,
    Fut: std::future::Future<Output = Result<Reply>>,
{
    if let Some(service) = running(tito, target) {
        return f(service).await;
    }
    // The continuous backup may be starting: wait for its turn to end, then ask again.
    let turn = tito.shipper_turn().await;
    if let Some(service) = running(tito, target) {
        drop(turn);
        return f(service).await;
    }
    let Some(url) = &target.store else {
        return Err(Error::Remote {
            kind: ErrorKind::Usage,
            message: "no --store given, and the process holding the database runs no backup; give --store".into(),
        });
    };
    let store = open_store(url, Mode::Create).await?;
    let config = BackupConfig {
        compression_level: target
            .compression_level
            .unwrap_or(BackupConfig::default().compression_level),
        ..BackupConfig::default()
    };
    let service = Arc::new(one_shot(tito.db(), store, config).await?);
    let result = f(service.clone()).await;
    // Give the lease up even after a failure, as the CLI's one-shot commands do.
    let released = service.release_lease().await;
    let reply = result?;
    released?;
    Ok(reply)
}

async fn one_shot(
    db: &Db,
    store: Arc<dyn tito_store::Store>,
    config: BackupConfig,
) -> Result<BackupService> {
    Ok(BackupService::new(db.clone(), store, config).await?)
}
