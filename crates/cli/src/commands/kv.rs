//! `tito kv get|put|del|scan`: read and write user keys through Tito transactions, so
//! writes are captured in the log like an application's.

use std::io::Write;

use tito_capture::{CaptureError, Db};
use tito_engine::KeyRange;

use crate::args::KvCommand;
use crate::exit::{CliError, Result, UNAVAILABLE};
use crate::open::{Mode, open_engine};
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
    let engine = open_engine(url, mode(&cmd)).await?;
    let result = execute(&engine, cmd, json, &mut std::io::stdout().lock()).await;
    engine.close().await?;
    result
}

/// Run `cmd` against an open engine, writing output to `out`.
pub async fn execute(
    engine: &std::sync::Arc<dyn tito_engine::Engine>,
    cmd: KvCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| CliError::new(UNAVAILABLE, format!("cannot write to stdout: {e}"));
    match cmd {
        KvCommand::Get { key } => {
            let db = Db::new(engine.clone());
            let txn = db.begin().await?;
            let value = txn.get(key.as_bytes()).await;
            txn.rollback().await?;
            match value? {
                Some(v) if json => writeln!(out, "{}", encode_line(key.as_bytes(), &v)).map_err(io),
                Some(v) => {
                    out.write_all(&v).map_err(io)?;
                    out.write_all(b"\n").map_err(io)
                }
                None => Err(CliError::not_found(format!("key {key:?} not found"))),
            }
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
            let db = Db::new(engine.clone());
            let range = KeyRange::prefix(prefix.as_bytes());
            let txn = db.begin().await?;
            let pairs = txn.scan(&range, limit).await;
            txn.rollback().await?;
            for (k, v) in pairs? {
                if json {
                    writeln!(out, "{}", encode_line(&k, &v)).map_err(io)?;
                } else {
                    writeln!(out, "{}\t{}", text(&k), text(&v)).map_err(io)?;
                }
            }
            Ok(())
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
