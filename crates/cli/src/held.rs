//! A database given with `--db` is either opened here or, when another live Tito process
//! holds its redb file (an application through the `tito` library, or
//! `tito backup --continuous`), reached through that process's control socket. Commands
//! then print the same output and exit with the same codes either way.

use std::sync::Arc;
use std::time::Duration;

use tito::control::protocol::{Reply, Request, Target};
use tito::control::{Client, Probe};
use tito_engine::Engine;

use crate::exit::{CliError, FAILURE, Result};
use crate::open::{Mode, engine_error};

/// How long to keep trying while the file is locked but nobody answers yet (a holder
/// starting up, or another short `tito` command).
pub const LOCKED_RETRIES: u32 = 50;
/// The pause between two tries.
pub const LOCKED_PAUSE: Duration = Duration::from_millis(100);

/// An open database, here or in the process holding it.
pub enum Database {
    /// Opened by this process.
    Local(Arc<dyn Engine>),
    /// Held by another process; ask it.
    Remote(Client),
}

/// Open the database at `url`, or find the live process holding it.
pub async fn open(url: &str, mode: Mode) -> Result<Database> {
    let file = match tito::url::parse_engine_url(url) {
        Ok(tito::url::EngineUrl::Redb(file)) => file,
        // Not a redb file: nothing can hold it but its server.
        _ => return Ok(Database::Local(crate::open::open_engine(url, mode).await?)),
    };
    let mut attempt = 0;
    loop {
        if let Probe::Held { client, pid, .. } = Client::probe(&file).await? {
            tracing::debug!(pid, socket = %client.path().display(), "asking the process holding the database");
            return Ok(Database::Remote(client));
        }
        match tito::open::open_engine(url, mode).await {
            Ok(engine) => {
                // We hold the file's lock: a socket beside it is a killed holder's.
                tito::control::remove_stale(&file);
                return Ok(Database::Local(engine));
            }
            Err(e) if e.is_locked() && attempt < LOCKED_RETRIES => {
                attempt += 1;
                tokio::time::sleep(LOCKED_PAUSE).await;
            }
            Err(e) if e.is_locked() => {
                let e = engine_error(url, e);
                return Err(CliError::new(
                    e.code,
                    format!(
                        "{}; another process holds it and does not answer on {} (is it a Tito process?)",
                        e.message,
                        tito::control::socket_path(&file).display()
                    ),
                ));
            }
            Err(e) => return Err(engine_error(url, e)),
        }
    }
}

/// Which store a forwarded backup verb works on: `--store` made absolute (the holder has
/// its own working directory), or none (the holder's running backup).
pub fn target(store: Option<&str>, compression_level: Option<i32>) -> Target {
    Target {
        store: store.map(tito::open::absolute_store_url),
        compression_level,
    }
}

/// Send `request`, expecting no pairs.
pub async fn call(client: &Client, request: Request) -> Result<Reply> {
    Ok(client.call(request, |_| Ok(())).await?)
}

/// The error for an answer that does not fit the request (a bug on one side).
pub fn unexpected(reply: Reply) -> CliError {
    CliError::new(
        FAILURE,
        format!("unexpected answer from the process holding the database: {reply:?}"),
    )
}
