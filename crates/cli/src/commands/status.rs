//! `tito status` / `tito list`: what is restorable — per timeline its snapshots, log
//! coverage, gaps, sizes and restorable window; restore points; incomplete or damaged
//! objects; and, when `--db` is given, the live database's unshipped records and their age.

use serde::Serialize;
use tito_capture::Db;
use tito_catalog::{Catalog, Target, TimelineInfo};
use tito_format::RestorePoint;

use crate::commands::metrics::{Lag, live_lag};
use crate::commands::open_repository;
use crate::config::Settings;
use crate::exit::Result;
use crate::fmt;
use crate::held::{self, Database};
use crate::open::Mode;
use tito::control::protocol::{Reply, Request};

/// The restorable window of a timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Earliest restorable LSN (0: the empty database before the first record).
    pub earliest_lsn: u64,
    /// Commit time of that point (ms; for LSN 0, the time of the first record).
    pub earliest_time_ms: u64,
    /// Latest restorable LSN.
    pub latest_lsn: u64,
    /// Commit time of the latest restorable record (ms).
    pub latest_time_ms: u64,
}

/// One timeline in the status.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineStatus {
    /// The catalog's view of it.
    #[serde(flatten)]
    pub info: TimelineInfo,
    /// Stored bytes of its snapshots.
    pub snapshot_bytes: u64,
    /// What can be restored on it, if anything.
    pub window: Option<Window>,
    /// Why nothing is restorable, if so.
    pub not_restorable: Option<String>,
    /// Segments per compaction level, by the time span of their records (index 0: under a
    /// second, as shipped; k: under the level-k window of the default levels, a minute, an
    /// hour, a day; last: longer). See `tito compact`.
    pub segment_levels: Vec<u64>,
}

/// The live database.
#[derive(Clone, Debug, Serialize)]
pub struct Live {
    /// Its URL.
    pub db: String,
    /// Its database id, if it has one.
    pub database_id: Option<String>,
    /// Its current timeline.
    pub timeline: u64,
    /// Unshipped records.
    pub lag: Lag,
}

/// Everything `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The store.
    pub store: String,
    /// The database the repository belongs to.
    pub database_id: String,
    /// Objects in the repository.
    pub objects: usize,
    /// Their total size.
    pub total_bytes: u64,
    /// Timelines, oldest first.
    pub timelines: Vec<TimelineStatus>,
    /// Restore points.
    pub restore_points: Vec<RestorePoint>,
    /// Snapshot folders without a manifest (interrupted or in progress).
    pub incomplete_snapshots: Vec<tito_catalog::IncompleteSnapshot>,
    /// Problems found while reading the catalog.
    pub problems: Vec<tito_catalog::Problem>,
    /// Shared, content-named snapshot chunks (incremental snapshots).
    pub shared_chunks: SharedChunks,
    /// The live database, with `--db`.
    pub live: Option<Live>,
}

/// The shared chunks of a repository (`chunks/`, FORMAT.md §7.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SharedChunks {
    /// Objects.
    pub count: usize,
    /// Their total size.
    pub bytes: u64,
    /// Those referenced by more than one snapshot.
    pub shared: usize,
    /// Those no manifest references (a snapshot being written, or left for prune).
    pub unreferenced: usize,
}

/// Count the shared chunks of `catalog`.
pub fn shared_chunks(catalog: &Catalog) -> SharedChunks {
    let mut refs: std::collections::BTreeMap<String, usize> = Default::default();
    for info in catalog.timelines.values() {
        for s in &info.snapshots {
            for k in s
                .shared_chunk_keys()
                .collect::<std::collections::BTreeSet<_>>()
            {
                *refs.entry(k).or_default() += 1;
            }
        }
    }
    let referenced = tito_catalog::referenced_shared_chunks(catalog);
    SharedChunks {
        count: catalog.shared_chunks.len(),
        bytes: catalog.shared_chunks.iter().map(|o| o.size).sum(),
        shared: refs.values().filter(|n| **n > 1).count(),
        unreferenced: catalog
            .shared_chunks
            .iter()
            .filter(|o| !referenced.contains(&o.key))
            .count(),
    }
}

/// The restorable window of `timeline` in `catalog`.
pub fn window(catalog: &Catalog, timeline: u64) -> std::result::Result<Window, String> {
    let latest = catalog
        .plan(&Target::Latest, Some(timeline))
        .map_err(|e| e.to_string())?;
    let latest_time_ms = latest
        .segments
        .iter()
        .filter(|s| s.through >= s.segment.first)
        .map(|s| s.segment.t1)
        .max()
        .unwrap_or(latest.snapshot.lsn_time_ms);
    let info = catalog.timelines.get(&timeline);
    let first_snapshot = info
        .and_then(|i| i.snapshots.iter().min_by_key(|s| s.lsn))
        .map(|s| (s.lsn, s.lsn_time_ms));
    // A root timeline whose log starts at LSN 1 restores from the empty state.
    let from_empty = info
        .filter(|i| i.parent.is_none())
        .and_then(|i| i.coverage.first())
        .filter(|r| r.first == 1)
        .map(|r| (0, r.t0));
    let (earliest_lsn, earliest_time_ms) = from_empty
        .or(first_snapshot)
        .unwrap_or((latest.snapshot.lsn, latest.snapshot.lsn_time_ms));
    Ok(Window {
        earliest_lsn,
        earliest_time_ms,
        latest_lsn: latest.stop_lsn,
        latest_time_ms,
    })
}

/// Gather the status.
pub async fn gather(settings: &Settings) -> Result<Status> {
    let repo = open_repository(settings).await?;
    let catalog = repo.catalog().await?;
    let timelines = catalog
        .timelines
        .values()
        .map(|info| {
            let w = window(&catalog, info.timeline);
            TimelineStatus {
                info: info.clone(),
                snapshot_bytes: info.snapshots.iter().map(|s| s.size).sum(),
                not_restorable: w.as_ref().err().cloned(),
                window: w.ok(),
                segment_levels: tito_catalog::CompactionPolicy::default()
                    .level_counts(&info.segments),
            }
        })
        .collect();
    let live = match settings.db.as_deref() {
        Some(url) => Some(live(url).await?),
        None => None,
    };
    Ok(Status {
        store: repo.store().describe(),
        database_id: repo.config().database_id.clone(),
        objects: catalog.objects.len(),
        total_bytes: catalog.total_bytes(),
        timelines,
        restore_points: catalog.restore_points.clone(),
        incomplete_snapshots: catalog.incomplete.clone(),
        problems: catalog.problems.clone(),
        shared_chunks: shared_chunks(&catalog),
        live,
    })
}

/// The live database at `url`, opened here or asked of the process holding it.
async fn live(url: &str) -> Result<Live> {
    match held::open(url, Mode::Existing).await? {
        Database::Local(engine) => {
            let db = Db::new(engine.clone());
            let live = Live {
                db: url.to_string(),
                database_id: db.database_id().await?,
                timeline: db.timeline().await?,
                lag: live_lag(&db).await?,
            };
            engine.close().await?;
            Ok(live)
        }
        Database::Remote(client) => match held::call(&client, Request::Live).await? {
            Reply::Live {
                database_id,
                timeline,
                lag,
            } => Ok(Live {
                db: url.to_string(),
                database_id,
                timeline,
                lag,
            }),
            other => Err(held::unexpected(other)),
        },
    }
}

/// The text form of a status.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "store {} (database {}): {} objects, {}\n",
        s.store,
        s.database_id,
        s.objects,
        fmt::bytes(s.total_bytes)
    );
    let c = &s.shared_chunks;
    if c.count > 0 {
        out.push_str(&format!(
            "shared chunks: {} ({}), {} in more than one snapshot, {} unreferenced\n",
            c.count,
            fmt::bytes(c.bytes),
            c.shared,
            c.unreferenced
        ));
    }
    if s.timelines.is_empty() {
        out.push_str("nothing backed up yet: run `tito backup`\n");
    }
    for t in &s.timelines {
        let i = &t.info;
        match i.parent {
            Some(p) => out.push_str(&format!(
                "timeline {} (branched from timeline {p} after LSN {})\n",
                i.timeline, i.branch_lsn
            )),
            None => out.push_str(&format!("timeline {}\n", i.timeline)),
        }
        out.push_str(&format!(
            "  snapshots: {} ({})\n",
            i.snapshots.len(),
            fmt::bytes(t.snapshot_bytes)
        ));
        for snap in &i.snapshots {
            out.push_str(&format!(
                "    LSN {:>8}  {}  {} pairs  {}  {}\n",
                snap.lsn,
                fmt::time_ms(snap.lsn_time_ms),
                snap.total_count,
                fmt::bytes(snap.size),
                snap.id
            ));
        }
        out.push_str(&format!(
            "  log: {} segments ({})\n",
            i.segments.len(),
            fmt::bytes(i.segment_bytes)
        ));
        if !i.segments.is_empty() {
            out.push_str(&format!(
                "    by level: {}\n",
                levels_line(&t.segment_levels)
            ));
        }
        for r in &i.coverage {
            out.push_str(&format!(
                "    covers LSN {}..={}  {} .. {}\n",
                r.first,
                r.last,
                fmt::time_ms(r.t0),
                fmt::time_ms(r.t1)
            ));
        }
        for (from, to) in &i.gaps {
            out.push_str(&format!("    GAP: LSN {from}..={to} missing\n"));
        }
        match (&t.window, &t.not_restorable) {
            (Some(w), _) => {
                let from = if w.earliest_lsn == 0 {
                    format!(
                        "the empty database (before {})",
                        fmt::time_ms(w.earliest_time_ms)
                    )
                } else {
                    format!(
                        "LSN {} ({})",
                        w.earliest_lsn,
                        fmt::time_ms(w.earliest_time_ms)
                    )
                };
                out.push_str(&format!(
                    "  restorable: from {from} to LSN {} ({})\n",
                    w.latest_lsn,
                    fmt::time_ms(w.latest_time_ms)
                ));
            }
            (None, Some(why)) => out.push_str(&format!("  not restorable: {why}\n")),
            (None, None) => {}
        }
    }
    if !s.restore_points.is_empty() {
        out.push_str("restore points:\n");
        for p in &s.restore_points {
            out.push_str(&format!(
                "  {}  timeline {} LSN {}  created {}\n",
                p.name,
                p.timeline,
                p.lsn,
                fmt::time_ms(p.created_ms)
            ));
        }
    }
    for inc in &s.incomplete_snapshots {
        out.push_str(&format!(
            "incomplete snapshot {} ({} objects, {}): no manifest, not restorable\n",
            inc.dir,
            inc.keys.len(),
            fmt::bytes(inc.size)
        ));
    }
    for p in &s.problems {
        out.push_str(&format!("PROBLEM {}: {}\n", p.key, p.problem));
    }
    if let Some(live) = &s.live {
        let lag = if live.lag.records == 0 {
            "everything committed is shipped".to_string()
        } else {
            format!(
                "{} records not shipped yet (LSN {}..={}), the oldest {} old",
                live.lag.records,
                live.lag.oldest_lsn,
                live.lag.newest_lsn,
                fmt::duration(std::time::Duration::from_millis(live.lag.age_ms))
            )
        };
        out.push_str(&format!(
            "live database {} (timeline {}): {lag}\n",
            live.db, live.timeline
        ));
    }
    out
}

/// `tito status` / `tito list`.
pub async fn run(settings: &Settings, json: bool) -> Result<()> {
    fmt::print_report(json, &gather(settings).await?, render)
}

/// Segment counts per level, e.g. `L0 (< 1 s) 12, L1 (< 1 min) 3, L2 (< 1 h) 1`; empty
/// levels are left out.
pub fn levels_line(counts: &[u64]) -> String {
    let top = counts.len().saturating_sub(1);
    let names = ["< 1 s", "< 1 min", "< 1 h", "< 1 d"];
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| match names.get(k) {
            Some(span) if k < top => format!("L{k} ({span}) {n}"),
            _ => format!("L{k} (longer) {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tito_backup::{BackupConfig, BackupService};

    #[tokio::test]
    async fn window_spans_from_the_empty_database_to_the_log_end() {
        let engine = tito_engine::open("memory://").await.expect("engine");
        let db = Db::open(engine).await.expect("db");
        let store: Arc<dyn tito_store::Store> = Arc::new(tito_store::MemoryStore::new());
        let service = BackupService::new(db.clone(), store, BackupConfig::default())
            .await
            .expect("service");
        for i in 0..3u8 {
            db.transaction(|txn| async move { txn.put(vec![b'k', i], vec![i]) })
                .await
                .expect("put");
        }
        service.run_backup().await.expect("backup");
        db.transaction(|txn| async move { txn.put(b"z".to_vec(), b"z".to_vec()) })
            .await
            .expect("put");
        service.run_backup().await.expect("backup");
        let catalog = service.repository().catalog().await.expect("catalog");
        let w = window(&catalog, 1).expect("restorable");
        assert_eq!((w.earliest_lsn, w.latest_lsn), (0, 4));
        assert!(w.earliest_time_ms > 0 && w.latest_time_ms >= w.earliest_time_ms);
        assert!(window(&catalog, 9).is_err());
        let status = Status {
            store: "memory://".into(),
            database_id: "x".into(),
            objects: catalog.objects.len(),
            total_bytes: catalog.total_bytes(),
            timelines: vec![TimelineStatus {
                info: catalog.timelines[&1].clone(),
                snapshot_bytes: 0,
                window: Some(w),
                not_restorable: None,
                segment_levels: vec![3, 1],
            }],
            restore_points: Vec::new(),
            incomplete_snapshots: Vec::new(),
            problems: Vec::new(),
            shared_chunks: SharedChunks {
                count: 3,
                bytes: 300,
                shared: 2,
                unreferenced: 1,
            },
            live: None,
        };
        let text = render(&status);
        assert!(
            text.contains("shared chunks: 3 (") && text.contains("2 in more than one snapshot"),
            "{text}"
        );
        assert!(text.contains("covers LSN 1..=4"), "{text}");
        assert!(
            text.contains("by level: L0 (< 1 s) 3, L1 (longer) 1"),
            "{text}"
        );
        assert!(
            text.contains("restorable: from the empty database"),
            "{text}"
        );
    }
}
