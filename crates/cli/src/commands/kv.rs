//! `tito kv get|put|del|scan`: read and write user keys through Tito transactions, so
//! writes are captured in the log like an application's.

use std::io::Write;

use tito_capture::{CaptureError, Db};
use tito_engine::KeyRange;

use crate::args::KvCommand;
use crate::exit::{CliError, Result};
use crate::held::{self, Database};
use crate::open::Mode;
use tito::control::protocol::{B64, Reply, Request};
use tito_capture::jsonl::encode_line;

/// Whether a kv command writes (and so may create the database).
pub fn mode(cmd: &KvCommand) -> Mode {
    match cmd {
        KvCommand::Put { .. } | KvCommand::Del { .. } => Mode::Create,
        KvCommand::Get { .. } | KvCommand::Scan { .. } => Mode::Existing,
    }
}

/// Run a kv command against the database at `url`.
pub async fn run(url: &str, cmd: KvCommand, json: bool) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    match held::open(url, mode(&cmd)).await? {
        Database::Local(engine) => {
            let result = execute(&engine, cmd, json, out).await;
            engine.close().await?;
            result
        }
        Database::Remote(client) => execute_remote(&client, cmd, json, out).await,
    }
}

/// Run `cmd` through the process holding the database, printing what [`execute`] prints.
pub async fn execute_remote(
    client: &tito::control::Client,
    cmd: KvCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    match cmd {
        KvCommand::Get { key } => {
            let request = Request::Get {
                key: B64(key.clone().into_bytes()),
            };
            match held::call(client, request).await? {
                Reply::Value { value } => print_get(out, &key, value.map(|v| v.0), json),
                other => Err(held::unexpected(other)),
            }
        }
        KvCommand::Put { key, value } => {
            let request = Request::Put {
                key: B64(key.clone().into_bytes()),
                value: B64(value.into_bytes()),
            };
            match held::call(client, request).await? {
                Reply::Put { lsn } => {
                    tracing::info!(key, lsn, "put");
                    Ok(())
                }
                other => Err(held::unexpected(other)),
            }
        }
        KvCommand::Del { key } => {
            let request = Request::Delete {
                key: B64(key.clone().into_bytes()),
            };
            match held::call(client, request).await? {
                Reply::Deleted { existed } => {
                    if !existed {
                        tracing::info!(key, "deleted a key that was absent");
                    }
                    Ok(())
                }
                other => Err(held::unexpected(other)),
            }
        }
        KvCommand::Scan { prefix, limit } => {
            let request = Request::Scan {
                prefix: B64(prefix.into_bytes()),
                limit,
            };
            let mut lines = Ok(());
            let reply = client
                .call(request, |page| {
                    lines = print_scan(out, &page, json);
                    lines.clone().map_err(|e| std::io::Error::other(e.message))
                })
                .await;
            lines?;
            match reply? {
                Reply::Done { .. } => Ok(()),
                other => Err(held::unexpected(other)),
            }
        }
    }
}

/// What `kv get` prints: the value and a newline, or a dump line with `--json`.
fn print_get(out: &mut dyn Write, key: &str, value: Option<Vec<u8>>, json: bool) -> Result<()> {
    match value {
        Some(v) if json => {
            writeln!(out, "{}", encode_line(key.as_bytes(), &v)).map_err(CliError::stdout)
        }
        Some(v) => {
            out.write_all(&v).map_err(CliError::stdout)?;
            out.write_all(b"\n").map_err(CliError::stdout)
        }
        None => Err(CliError::not_found(format!("key {key:?} not found"))),
    }
}

/// What `kv scan` prints for some pairs.
fn print_scan(out: &mut dyn Write, pairs: &[(Vec<u8>, Vec<u8>)], json: bool) -> Result<()> {
    for (k, v) in pairs {
        if json {
            writeln!(out, "{}", encode_line(k, v)).map_err(CliError::stdout)?;
        } else {
            writeln!(out, "{}\t{}", text(k), text(v)).map_err(CliError::stdout)?;
        }
    }
    Ok(())
}

/// Run `cmd` against an open engine, writing output to `out`.
pub async fn execute(
    engine: &std::sync::Arc<dyn tito_engine::Engine>,
    cmd: KvCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    match cmd {
        KvCommand::Get { key } => {
            crate::commands::dump::refuse_partial(engine.as_ref()).await?;
            let db = Db::new(engine.clone());
            let txn = db.begin().await?;
            let value = txn.get(key.as_bytes()).await;
            txn.rollback().await?;
            print_get(out, &key, value?, json)
        }
        KvCommand::Put { key, value } => {
            let db = Db::open(engine.clone()).await?;
            let lsn = db
                .transaction_lsn(|txn| {
                    let (k, v) = (key.clone(), value.clone());
                    async move { txn.put(k.into_bytes(), v.into_bytes()) }
                })
                .await?
                .1;
            tracing::info!(key, lsn, "put");
            Ok(())
        }
        KvCommand::Del { key } => {
            let db = Db::open(engine.clone()).await?;
            let existed = db
                .transaction(|txn| {
                    let k = key.clone();
                    async move {
                        let existed = txn.get(k.as_bytes()).await?.is_some();
                        txn.delete(k.into_bytes())?;
                        Ok::<_, CaptureError>(existed)
                    }
                })
                .await?;
            if !existed {
                tracing::info!(key, "deleted a key that was absent");
            }
            Ok(())
        }
        KvCommand::Scan { prefix, limit } => {
            crate::commands::dump::refuse_partial(engine.as_ref()).await?;
            let db = Db::new(engine.clone());
            let range = KeyRange::prefix(prefix.as_bytes());
            let txn = db.begin().await?;
            let pairs = txn.scan(&range, limit).await;
            txn.rollback().await?;
            print_scan(out, &pairs?, json)
        }
    }
}

/// UTF-8 as is (tabs and newlines escaped so one pair stays one line), other bytes escaped.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s
            .replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n"),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exec(
        engine: &std::sync::Arc<dyn tito_engine::Engine>,
        cmd: KvCommand,
    ) -> Result<String> {
        let mut out = Vec::new();
        execute(engine, cmd, false, &mut out).await?;
        Ok(String::from_utf8(out).expect("utf8"))
    }

    #[tokio::test]
    async fn put_get_scan_del() {
        let engine = tito_engine::open("memory://").await.expect("engine");
        for (k, v) in [("a/1", "x"), ("a/2", "y\tz"), ("b", "w")] {
            exec(
                &engine,
                KvCommand::Put {
                    key: k.into(),
                    value: v.into(),
                },
            )
            .await
            .expect("put");
        }
        assert_eq!(
            exec(&engine, KvCommand::Get { key: "a/1".into() })
                .await
                .expect("get"),
            "x\n"
        );
        let scan = exec(
            &engine,
            KvCommand::Scan {
                prefix: "a/".into(),
                limit: 10,
            },
        )
        .await
        .expect("scan");
        assert_eq!(scan, "a/1\tx\na/2\ty\\tz\n");
        exec(&engine, KvCommand::Del { key: "a/1".into() })
            .await
            .expect("del");
        let e = exec(&engine, KvCommand::Get { key: "a/1".into() })
            .await
            .expect_err("gone");
        assert_eq!(e.code, crate::exit::NOT_FOUND);
        // Every write went through capture: three puts and a delete, four log records.
        let db = Db::new(engine.clone());
        assert_eq!(
            db.log_bounds()
                .await
                .expect("bounds")
                .expect("log")
                .max_count(),
            4
        );
    }

    #[tokio::test]
    async fn reserved_keys_are_usage_errors() {
        let engine = tito_engine::open("memory://").await.expect("engine");
        let key = String::from_utf8(tito_capture::keys::RESERVED.to_vec());
        // The reserved prefix is not UTF-8, so it cannot be typed as an argument at all.
        assert!(key.is_err());
        let e = exec(
            &engine,
            KvCommand::Scan {
                prefix: String::new(),
                limit: 0,
            },
        )
        .await;
        assert_eq!(e.expect("empty scan"), "");
    }
}
