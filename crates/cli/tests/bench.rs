//! `tito bench` through the real binary at a tiny size: the JSON report holds every
//! figure, each rate and ratio agrees with the raw figures it is computed from, the
//! snapshot and restore ran in child processes of their own, the files asked for are
//! written, and nothing is left behind. No timing is asserted.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tito_bench::checks::{all_numbers_sane, close, num};

const TITO: &str = env!("CARGO_BIN_EXE_tito");
const MIB: f64 = 1024.0 * 1024.0;
const KEYS: u64 = 300;
const VALUE_SIZE: u64 = 256;
/// `table:bench:` and ten digits.
const KEY_LEN: u64 = 22;

const TINY: &[&str] = &[
    "bench",
    "--keys",
    "300",
    "--value-size",
    "256",
    "--replay-records",
    "200",
    "--ship-changes",
    "50",
    "--ship-small-keys",
    "50",
    "--ship-large-keys",
    "400",
    "--rpo-rate",
    "200",
    "--rpo-secs",
    "1",
    "--rpo-interval-ms",
    "100",
    "--capture-rounds",
    "3",
    "--capture-per-round",
    "3",
];

fn tito(dir: &Path, args: &[&str]) -> Output {
    Command::new(TITO)
        .args(args)
        .current_dir(dir)
        .env_remove("TITO_DB")
        .env_remove("TITO_STORE")
        .env_remove("TITO_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run tito")
}

/// A timed figure of `pairs` pairs, consistent with its rates; returns its MiB/s.
fn timed(r: &Value, path: &str, pairs: u64) -> f64 {
    let (n, mib_s) = tito_bench::checks::timed(r, path);
    assert_eq!(n, pairs, "{path}.pairs");
    mib_s
}

#[test]
fn tiny_run_reports_every_figure_with_ratios_computed_from_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = TINY.to_vec();
    args.extend(["--json", "--out", "report.json", "--markdown", "bench.md"]);
    let out = tito(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tito bench failed: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).expect("--out"))
            .expect("--out is JSON");
    assert_eq!(r, file, "--out holds the report printed with --json");
    assert!(
        stderr.contains("target"),
        "the table goes to stderr: {stderr}"
    );
    all_numbers_sane(&r, "");

    // The dataset: every value has exactly the size asked for.
    let raw = KEYS * (KEY_LEN + VALUE_SIZE);
    assert_eq!(num(&r, "dataset.keys") as u64, KEYS);
    assert_eq!(num(&r, "dataset.raw_bytes") as u64, raw);
    assert_eq!(r["dataset"]["values"], "orders");
    assert_eq!(r["dataset"]["engine"], "redb");
    assert!(
        r["command"]
            .as_str()
            .expect("command")
            .starts_with("tito bench --keys 300")
    );
    for field in ["cpu", "disk", "os"] {
        assert!(
            r["machine"][field].as_str().is_some_and(|s| !s.is_empty()),
            "machine.{field}"
        );
    }
    assert!(num(&r, "machine.cores") >= 1.0 && num(&r, "machine.ram_bytes") > 0.0);
    assert_eq!(r["load_average"].as_array().map(Vec::len), Some(2));

    // Limits, baseline, Tito: each timed figure is consistent.
    assert_eq!(num(&r, "limits.dump_bytes") as u64, raw + 8 * KEYS);
    let zstd = timed(&r, "limits.zstd_lib.timed", KEYS);
    assert!(num(&r, "limits.zstd_lib.out_bytes") > 0.0);
    timed(&r, "limits.disk_write", KEYS);
    timed(&r, "limits.disk_read", KEYS);
    let bulk = timed(&r, "limits.bulk_load", KEYS);
    let base = timed(&r, "baseline.backup.timed", KEYS);
    timed(&r, "baseline.restore", KEYS);
    assert_eq!(num(&r, "baseline.backup.dropped"), 0.0);
    assert_eq!(num(&r, "baseline.backup.chunks"), 1.0);
    let snap = timed(&r, "snapshot.snapshot", KEYS);
    let restore = timed(&r, "snapshot.restore", KEYS);
    let (snap_bytes, base_bytes) = (
        num(&r, "snapshot.snapshot_bytes"),
        num(&r, "baseline.backup.bytes"),
    );
    assert!(snap_bytes > 0.0 && base_bytes > 0.0);
    for m in ["snapshot_memory", "restore_memory"] {
        let mem = &r["snapshot"][m];
        assert_eq!(mem["isolated"], true, "{m} measured in a child process");
        let (start, peak) = (num(mem, "start_rss"), num(mem, "peak_rss"));
        assert!(start > 0.0 && peak >= start, "{m}: {mem}");
    }
    let replay = num(&r, "replay.records") / num(&r, "replay.replay_secs");
    assert_eq!(num(&r, "replay.records"), 200.0);
    assert!(num(&r, "replay.restore_secs") >= num(&r, "replay.replay_secs"));
    let ship = num(&r, "ship.large_secs") / num(&r, "ship.small_secs");
    assert!(num(&r, "ship.small_secs") > 0.0);
    let (p50, p99, max) = (
        num(&r, "rpo.p50_ms"),
        num(&r, "rpo.p99_ms"),
        num(&r, "rpo.max_ms"),
    );
    assert!(p50 <= p99 && p99 <= max, "{}", r["rpo"]);
    assert!(num(&r, "rpo.commits") > 0.0 && num(&r, "rpo.samples") > 0.0);
    let capture = num(&r, "capture.ratio");
    assert!(capture > 0.0 && num(&r, "capture.raw_commits_per_s") > 0.0);
    let load_bulk = timed(&r, "load.bulk_load", KEYS);
    let tito_load = timed(&r, "load.tito_load", KEYS);
    timed(&r, "load.check", KEYS);
    assert!(num(&r, "load.check.secs") <= num(&r, "load.tito_load.secs"));
    assert!(num(&r, "load.batches") >= 1.0 && num(&r, "load.dump_bytes") > raw as f64);
    close("load ratio", num(&r, "load.ratio"), tito_load / load_bulk);

    // Every target, recomputed from the figures above.
    let expected = [
        ("snapshot speed vs original backup", snap / base),
        ("backup bytes vs original", snap_bytes / base_bytes),
        (
            "snapshot speed vs zstd -1 (in-process, 1 thread)",
            snap / zstd,
        ),
        ("restore speed vs engine bulk load", restore / bulk),
        (
            "snapshot peak memory",
            num(&r, "snapshot.snapshot_memory.peak_rss") / MIB,
        ),
        (
            "restore peak memory",
            num(&r, "snapshot.restore_memory.peak_rss") / MIB,
        ),
        ("commit throughput with capture vs raw", capture),
        ("RPO (max lag) at 200 tx/s", max),
        ("log replay rate", replay),
        ("ship time, large vs small database", ship),
        ("tito load speed vs engine bulk load", tito_load / load_bulk),
    ];
    let targets = r["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), expected.len(), "{targets:?}");
    let md = std::fs::read_to_string(dir.path().join("bench.md")).expect("--markdown");
    for (name, value) in expected {
        let t = targets
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target {name:?}"));
        let measured = num(t, "measured");
        close(name, measured, value);
        let bound = num(t, "bound");
        let met = if t["at_least"] == true {
            measured >= bound
        } else {
            measured <= bound
        };
        assert_eq!(t["verdict"], if met { "pass" } else { "fail" }, "{t}");
        let verdict = if met { "PASS" } else { "FAIL" };
        assert!(
            md.lines()
                .any(|l| l.starts_with(&format!("| {name} |")) && l.contains(verdict)),
            "markdown lacks {name} {verdict}:\n{md}"
        );
    }
    let cpu = r["machine"]["cpu"].as_str().expect("cpu");
    assert!(md.contains(&format!("**Machine:** {cpu}")), "{md}");
    assert!(md.contains("Command: `tito bench --keys 300"), "{md}");
    assert!(md.contains("--values orders"), "{md}");
    assert!(md.contains("**Load:** 1-minute load average"), "{md}");
    assert!(md.contains("**Build:** tito"), "{md}");
}

#[test]
fn uses_the_global_db_and_store_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("engines").join("bench.redb");
    let store = dir.path().join("store");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
    std::fs::create_dir_all(&store).expect("mkdir");
    let db_url = format!("redb://{}", db.display());
    let store_url = format!("file://{}", store.display());
    let mut args = vec!["--db", &db_url, "--store", &store_url];
    args.extend(TINY);
    args.extend(["--phases", "baseline,snapshot"]);
    let out = tito(dir.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Tito snapshot"), "{stdout}");
    assert!(stdout.contains(&format!("store {store_url}")), "{stdout}");
    assert!(stdout.contains("own process: peak RSS"), "{stdout}");
    let left: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn bad_bench_options_fail_with_one_line_and_the_usage_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, needle) in [
        (vec!["bench", "--keys", "0"], "--keys"),
        (
            vec!["--db", "etcd://127.0.0.1:1", "bench", "--keys", "10"],
            "etcd://",
        ),
    ] {
        let out = tito(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn encryption_phase_times_plain_and_encrypted_side_by_side() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let store_url = format!("file://{}", store.display());
    let mut args = vec!["--store", &store_url];
    args.extend(TINY);
    args.extend(["--json", "--phases", "encryption"]);
    let out = tito(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let e = &r["encryption"];
    let mut secs = Vec::new();
    for part in [
        "plain_snapshot",
        "encrypted_snapshot",
        "plain_restore",
        "encrypted_restore",
    ] {
        timed(&r, &format!("encryption.{part}"), KEYS);
        secs.push(e[part]["secs"].as_f64().expect("secs"));
    }
    let ratio = |key: &str| e[key].as_f64().expect("ratio");
    assert!((ratio("snapshot_ratio") - secs[0] / secs[1]).abs() < 1e-6 * ratio("snapshot_ratio"));
    assert!((ratio("restore_ratio") - secs[2] / secs[3]).abs() < 1e-6 * ratio("restore_ratio"));
    // The envelopes cost a header and a tag per 64 KiB: a little more, never less.
    let (plain, sealed) = (
        e["plain_bytes"].as_u64().expect("plain"),
        e["encrypted_bytes"].as_u64().expect("sealed"),
    );
    assert!(
        sealed > plain && sealed < plain + plain / 10 + 4096,
        "{plain} vs {sealed}"
    );
    assert!(r["targets"].as_array().expect("targets").iter().any(|t| {
        t["name"]
            .as_str()
            .is_some_and(|n| n.contains("with encryption"))
    }));
    let left: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn incremental_phase_compares_full_incremental_and_a_week() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let store_url = format!("file://{}", store.display());
    let mut args = vec!["--store", &store_url];
    args.extend(TINY);
    args.extend(["--json", "--phases", "incremental"]);
    let out = tito(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let i = &r["incremental"];
    timed(&r, "incremental.full", KEYS);
    timed(&r, "incremental.incremental", KEYS);
    let num = |key: &str| i[key].as_f64().expect(key);
    let (full, inc) = (num("full_bytes"), num("incremental_bytes"));
    // A tiny dataset is one chunk: it changed, so the incremental uploads it again.
    assert!(inc > 0.0 && inc < full * 1.1, "{full} vs {inc}");
    let chunks = i["incremental_chunks"].as_array().expect("chunks");
    assert!(chunks[0].as_u64() <= chunks[1].as_u64() && chunks[1].as_u64() > Some(0));
    // Its one chunk changed: read again, never more pairs than it holds.
    let read = num("incremental_pairs_read");
    assert!(read > 0.0 && read <= KEYS as f64, "{read} pairs read");
    assert!((num("bytes_ratio") - inc / full).abs() < 1e-9);
    let (week, original) = (num("week_bytes"), num("week_baseline_bytes"));
    assert!(week > full && original > 0.0, "{week} vs {original}");
    assert!((num("week_ratio") - week / original).abs() < 1e-9);
    let targets = r["targets"].as_array().expect("targets");
    assert_eq!(
        targets
            .iter()
            .filter(|t| t["name"]
                .as_str()
                .is_some_and(|n| n.contains("1% churn") || n.contains("a week of daily")))
            .count(),
        3,
        "{targets:?}"
    );
}
