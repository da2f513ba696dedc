//! The client's side: find the holder of a redb file and ask it.

use std::io::ErrorKind as Io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{B64, Reply, ReplyLine, Request, RequestLine, VERSION};
use super::socket_path;
use crate::error::{Error, Result};

/// A connection target: the control socket of the process holding a database file.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tito::control::protocol::{B64, Reply, Request};
/// use tito::control::{Client, Probe};
/// let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("app.redb");
/// assert!(matches!(Client::probe(&file).await?, Probe::NotHeld));
/// let app = tito::Tito::open(file.to_str().unwrap()).await?;  // the holder
/// let Probe::Held { client, .. } = Client::probe(&file).await? else { panic!() };
/// let put = Request::Put { key: B64(b"k".to_vec()), value: B64(b"v".to_vec()) };
/// assert!(matches!(client.call(put, |_| Ok(())).await?, Reply::Put { .. }));
/// let get = Request::Get { key: B64(b"k".to_vec()) };
/// let reply = client.call(get, |_| Ok(())).await?;
/// assert_eq!(reply, Reply::Value { value: Some(B64(b"v".to_vec())) });
/// app.close().await?;
/// # Ok::<_, tito::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    path: PathBuf,
}

/// What [`Client::probe`] found beside a database file.
#[derive(Debug)]
pub enum Probe {
    /// A live holder answered.
    Held {
        /// Ask it with this.
        client: Client,
        /// Its process id.
        pid: u32,
        /// The store its running backup ships to, if it runs one.
        backup_store: Option<String>,
    },
    /// No socket, or a stale one nobody listens on (removed by the next process that takes
    /// the file's lock).
    NotHeld,
}

impl Client {
    /// The client of the socket beside `file`.
    pub fn for_database(file: &Path) -> Client {
        Client {
            path: socket_path(file),
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a live process holds `file` and answers on its socket.
    pub async fn probe(file: &Path) -> Result<Probe> {
        let client = Client::for_database(file);
        match client.call(Request::Hello, |_| Ok(())).await {
            Ok(Reply::Hello {
                pid, backup_store, ..
            }) => Ok(Probe::Held {
                client,
                pid,
                backup_store,
            }),
            Ok(other) => Err(client.error(format!("unexpected answer to hello: {other:?}"))),
            Err(Error::Control { message, .. }) if message.starts_with(NOT_LISTENING) => {
                Ok(Probe::NotHeld)
            }
            Err(e) => Err(e),
        }
    }

    /// Send `request`; `pairs` gets each page of pairs of a scan or dump as it arrives (an
    /// error from it ends the call). Returns the final answer, or the holder's error as
    /// [`Error::Remote`].
    pub async fn call(
        &self,
        request: Request,
        mut pairs: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> std::io::Result<()>,
    ) -> Result<Reply> {
        let mut stream = match UnixStream::connect(&self.path).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), Io::NotFound | Io::ConnectionRefused) => {
                return Err(self.error(format!("{NOT_LISTENING} ({e})")));
            }
            Err(e) => return Err(self.error(e.to_string())),
        };
        let mut line = serde_json::to_string(&RequestLine {
            v: VERSION,
            request,
        })
        .map_err(|e| self.error(e.to_string()))?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let mut lines = BufReader::new(stream).lines();
        loop {
            let Some(text) = lines
                .next_line()
                .await
                .map_err(|e| self.error(e.to_string()))?
            else {
                return Err(self.error("the holder closed the connection before answering"));
            };
            let line: ReplyLine = serde_json::from_str(&text)
                .map_err(|e| self.error(format!("malformed answer: {e}")))?;
            match line {
                ReplyLine::Pairs(page) => {
                    let page = page.into_iter().map(|(B64(k), B64(v))| (k, v)).collect();
                    pairs(page).map_err(|e| self.error(format!("writing the answer: {e}")))?;
                }
                ReplyLine::Ok(reply) => return Ok(reply),
                ReplyLine::Error(e) => {
                    return Err(Error::Remote {
                        kind: e.kind,
                        message: e.message,
                    });
                }
            }
        }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Control {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }
}

/// The start of the message of a socket nobody listens on.
const NOT_LISTENING: &str = "no process listens on it";
