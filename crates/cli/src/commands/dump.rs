//! `tito dump`: the whole backed-up keyspace (user keys and queue state) as JSON lines,
//! sorted by key, from one consistent read view.
//!
//! Each line is one object. A key or value that is valid UTF-8 is written as a JSON string
//! under `key` / `value`; otherwise its bytes are written in standard base64 (with padding)
//! under `key_b64` / `value_b64`:
//!
//! ```text
//! {"key":"user:1","value":"alice"}
//! {"key_b64":"/3RpdG8AcS8A...","value_b64":"AQAAAA..."}
//! ```
//!
//! The codec is [`tito_capture::jsonl`], shared with `tito load`.

use std::io::Write;

use tito_capture::jsonl::encode_line;
use tito_engine::Engine;

use crate::exit::{CliError, Result};

/// Pairs read per page.
const PAGE: usize = 1024;

/// Write the dump of `engine` to `out`; returns the number of pairs.
pub async fn write_dump(engine: &dyn Engine, out: &mut dyn Write) -> Result<u64> {
    let view = engine.read_view().await?;
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0u64;
    loop {
        let page = tito_capture::scan_backed_up(view.as_ref(), after.as_deref(), PAGE).await?;
        for (k, v) in &page {
            writeln!(out, "{}", encode_line(k, v)).map_err(CliError::stdout)?;
        }
        count += page.len() as u64;
        match page.last() {
            Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
            _ => break,
        }
    }
    out.flush().map_err(CliError::stdout)?;
    Ok(count)
}

/// The dump of `engine` as a string (the demo compares these).
pub async fn dump_string(engine: &dyn Engine) -> Result<String> {
    let mut buf = Vec::new();
    write_dump(engine, &mut buf).await?;
    String::from_utf8(buf).map_err(|e| CliError::new(crate::exit::FAILURE, e.to_string()))
}

/// Refuse to read a database an interrupted restore left partial: its contents must never
/// pass for a complete database (writes refuse it through `Db::open`; reads check here
/// without creating anything).
pub async fn refuse_partial(engine: &dyn Engine) -> Result<()> {
    if tito_capture::meta::restore_in_progress(engine).await? {
        return Err(tito_capture::CaptureError::RestoreInProgress.into());
    }
    Ok(())
}

/// `tito dump`.
pub async fn run(engine: &dyn Engine) -> Result<()> {
    refuse_partial(engine).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let n = write_dump(engine, &mut out).await?;
    tracing::info!(pairs = n, "dump written");
    Ok(())
}

/// `tito dump` through the process holding the database: the same lines, streamed.
pub async fn run_remote(client: &tito::control::Client) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut written = Ok(());
    let reply = client
        .call(tito::control::protocol::Request::Dump, |page| {
            for (k, v) in &page {
                writeln!(out, "{}", encode_line(k, v))?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = out.flush() {
        written = Err(CliError::stdout(e));
    }
    match reply? {
        tito::control::protocol::Reply::Done { count } => {
            tracing::info!(pairs = count, "dump written");
            written
        }
        other => Err(crate::held::unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tito_capture::jsonl::decode_line;

    #[tokio::test]
    async fn dumps_user_and_queue_keys_sorted_and_skips_the_log() {
        let engine = tito_engine::open("memory://").await.expect("engine");
        let db = tito_capture::Db::open(engine.clone()).await.expect("db");
        db.transaction(|txn| async move {
            txn.put(b"b".to_vec(), b"2".to_vec())?;
            txn.put(b"a".to_vec(), b"\xff".to_vec())?;
            txn.put(b"\xff\xff".to_vec(), b"hi".to_vec())?;
            txn.put_queue(tito_capture::keys::QUEUE_PREFIX.to_vec(), b"q".to_vec())?;
            Ok::<_, tito_capture::CaptureError>(())
        })
        .await
        .expect("write");
        // Enough keys to page.
        db.transaction(|txn| async move {
            for i in 0..(PAGE + 5) {
                txn.put(format!("p{i:05}").into_bytes(), b"v".to_vec())?;
            }
            Ok::<_, tito_capture::CaptureError>(())
        })
        .await
        .expect("write");
        let text = dump_string(engine.as_ref()).await.expect("dump");
        let pairs: Vec<_> = text
            .lines()
            .map(|l| decode_line(l).expect("line"))
            .collect();
        assert_eq!(pairs.len(), PAGE + 5 + 4);
        assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert_eq!(pairs[0], (b"a".to_vec(), b"\xff".to_vec()));
        assert!(
            pairs
                .iter()
                .any(|(k, _)| k.starts_with(tito_capture::keys::QUEUE_PREFIX))
        );
        assert!(
            pairs
                .iter()
                .all(|(k, _)| !k.starts_with(tito_capture::keys::LOG_PREFIX))
        );
        assert_eq!(pairs.last().expect("last").0, b"\xff\xff".to_vec());
    }
}
