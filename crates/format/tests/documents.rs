//! Manifest, repository config, timeline history and restore point documents: round trips,
//! validation rules and corruption detection.

use tito_format::manifest::{MANIFEST_FORMAT_VERSION, new_snapshot_id};
use tito_format::repo::{REPO_FORMAT_VERSION, validate_restore_point_name};
use tito_format::{
    ChunkEntry, ChunkWriter, FormatError, Manifest, RepoConfig, RestorePoint, TimelineHistory,
};

const NAME: &str = "timelines/00000001/snapshots/00000000000000000042-ab/MANIFEST";

/// A manifest built from real chunks, as a snapshot writer would.
fn manifest() -> Manifest {
    let mut chunks = Vec::new();
    let mut digest = tito_format::KeyspaceDigest::new();
    let mut total = 0;
    let mut raw = 0;
    for n in 0..3u32 {
        let mut w = ChunkWriter::continuing(Vec::new(), digest);
        for i in 0..10 {
            w.push(format!("k{n}/{i:03}").as_bytes(), b"value")
                .expect("push");
        }
        let (s, d) = w.finish().expect("finish");
        digest = d;
        total += s.count;
        raw += s.raw_bytes;
        let mut entry = s.entry(n);
        entry.content = Some(format!("{n:064x}"));
        chunks.push(entry);
    }
    Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: new_snapshot_id(),
        timeline: 1,
        lsn: 42,
        lsn_time_ms: 1_700_000_000_000,
        started_ms: 1_700_000_000_100,
        finished_ms: 1_700_000_000_200,
        engine: "redb".into(),
        database_id: "db-1".into(),
        chunks,
        total_count: total,
        total_raw_bytes: raw,
        keyspace_digest: digest.finish(),
    }
}

#[test]
fn manifest_round_trips() {
    let m = manifest();
    let bytes = m.encode(NAME).expect("encode");
    assert_eq!(Manifest::decode(&bytes, NAME).expect("decode"), m);
    let text = String::from_utf8(bytes).expect("utf8");
    assert!(
        text.lines()
            .last()
            .expect("line")
            .starts_with("tito-manifest v3 blake3:"),
        "{text}"
    );
}

/// Version 1 manifests (every chunk in the snapshot's folder) are still read; a v2 manifest
/// may name shared chunks by content hash; v1 may not, and the checksum line's version must
/// be the document's.
#[test]
fn manifest_versions_and_content_hashes() {
    use tito_format::manifest::MANIFEST_FORMAT_V1;
    let mut v1 = manifest();
    v1.format_version = MANIFEST_FORMAT_V1;
    let bytes = v1.encode(NAME).expect("encode v1");
    assert!(String::from_utf8_lossy(&bytes).contains("tito-manifest v1 blake3:"));
    assert_eq!(Manifest::decode(&bytes, NAME).expect("decode v1"), v1);
    assert_eq!(v1.chunks[0].object_key("d/"), "d/000000.chunk");

    let mut v2 = manifest();
    v2.format_version = tito_format::manifest::MANIFEST_FORMAT_V2;
    v2.chunks[1].hash = Some("ab".repeat(32));
    let bytes = v2.encode(NAME).expect("encode v2");
    assert!(String::from_utf8_lossy(&bytes).contains("tito-manifest v2 blake3:"));
    assert_eq!(Manifest::decode(&bytes, NAME).expect("decode v2"), v2);
    assert!(v2.shares_chunks());
    assert_eq!(
        v2.chunks[1].object_key("d/"),
        format!("chunks/{}.chunk", "ab".repeat(32))
    );
    assert_eq!(v2.chunks[0].object_key("d/"), "d/000000.chunk");

    let mut bad = v2.clone();
    bad.format_version = MANIFEST_FORMAT_V1;
    let err = bad.encode(NAME).expect_err("hash in v1");
    assert!(err.to_string().contains("version 1 manifest"), "{err}");
    for h in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
        let mut bad = v2.clone();
        bad.chunks[1].hash = Some(h.clone());
        assert!(bad.encode(NAME).is_err(), "{h}");
    }
    // A v2 document under a v1 checksum line (or the reverse) is refused.
    let text = String::from_utf8(v1.encode(NAME).unwrap()).unwrap();
    let json = &text[..text.trim_end().rfind('\n').unwrap()];
    let forged = json.replacen("\"format_version\": 1", "\"format_version\": 2", 1);
    let hash = blake3::hash(forged.as_bytes()).to_hex();
    let doc = format!("{forged}\ntito-manifest v1 blake3:{hash}\n");
    let err = Manifest::decode(doc.as_bytes(), NAME).expect_err("mismatch");
    assert!(
        err.to_string().contains("checksum line says version 1"),
        "{err}"
    );
    // A version this build does not know is refused, naming it.
    let doc = format!(
        "{json}\ntito-manifest v4 blake3:{}\n",
        blake3::hash(json.as_bytes()).to_hex()
    );
    let err = Manifest::decode(doc.as_bytes(), NAME).expect_err("v4");
    assert!(
        matches!(err, FormatError::UnsupportedVersion { version: 4, .. }),
        "{err}"
    );
}

#[test]
fn every_manifest_byte_change_truncation_and_append_is_detected() {
    let good = manifest().encode(NAME).expect("encode");
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for pos in 0..good.len() {
        for mask in [1u8, 0x20, 0x80] {
            let mut bad = good.clone();
            bad[pos] ^= mask;
            variants.push((format!("xor {mask:#x} at {pos}"), bad));
        }
        let mut del = good.clone();
        del.remove(pos);
        variants.push((format!("deletion at {pos}"), del));
        variants.push((format!("truncation to {pos}"), good[..pos].to_vec()));
    }
    let mut appended = good.clone();
    appended.extend_from_slice(b"\n");
    variants.push(("append".into(), appended));
    for (desc, bad) in variants {
        let err = Manifest::decode(&bad, NAME).expect_err(&desc);
        assert!(err.to_string().contains(NAME), "{desc}: {err}");
    }
}

/// A manifest whose JSON was edited and whose checksum line was recomputed still fails validation.
#[test]
fn manifest_validation_rules() {
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("numbered", Box::new(|m| m.chunks[1].n = 5)),
        (
            "not after",
            Box::new(|m| m.chunks[1].first_key = m.chunks[0].last_key.clone()),
        ),
        ("add up", Box::new(|m| m.total_count += 1)),
        ("raw bytes add up", Box::new(|m| m.total_raw_bytes += 1)),
        ("requires", Box::new(|m| m.chunks[1].raw_bytes = None)),
        ("neither a hash", Box::new(|m| m.chunks[1].content = None)),
        (
            "content \"x\"",
            Box::new(|m| m.chunks[1].content = Some("x".into())),
        ),
        (
            "holds",
            Box::new(|m| m.chunks[2].last_key = m.chunks[2].first_key.clone()),
        ),
        ("blake3", Box::new(|m| m.chunks[0].checksum = "xyz".into())),
        ("keyspace digest", Box::new(|m| m.keyspace_digest.clear())),
        ("snapshot id", Box::new(|m| m.id = "a/b".into())),
        (
            "empty but has keys",
            Box::new(|m| {
                m.chunks[0].count = 0;
                m.total_count -= 10;
            }),
        ),
        (
            "unsupported manifest format version 9",
            Box::new(|m| m.format_version = 9),
        ),
    ];
    for (want, edit) in cases {
        let mut m = manifest();
        edit(&mut m);
        let err = m.validate(NAME).expect_err(want);
        assert!(
            err.to_string().contains(want) && err.to_string().contains(NAME),
            "{want}: {err}"
        );
        assert!(m.encode(NAME).is_err(), "{want}: encode must validate");
    }
    // Empty chunks (a key range with no pairs) and an empty snapshot are valid.
    let mut m = manifest();
    m.chunks.push(ChunkEntry {
        n: 3,
        size: 50,
        first_key: vec![],
        last_key: vec![],
        count: 0,
        checksum: "0".repeat(64),
        hash: None,
        raw_bytes: Some(0),
        content: Some("0".repeat(64)),
    });
    m.validate(NAME).expect("trailing empty chunk");
    m.chunks.clear();
    m.total_count = 0;
    m.total_raw_bytes = 0;
    m.validate(NAME).expect("empty snapshot");
}

#[test]
fn repo_config_round_trips_and_refuses_other_databases() {
    let c = RepoConfig::new("db-1");
    assert_eq!(c.format_version, REPO_FORMAT_VERSION);
    assert_eq!(c.repository_id.len(), 32);
    assert_ne!(RepoConfig::new("db-1").repository_id, c.repository_id);
    let bytes = c.encode("tito.repo").expect("encode");
    let back = RepoConfig::decode(&bytes, "tito.repo").expect("decode");
    assert_eq!(back, c);
    back.check_database("tito.repo", "db-1")
        .expect("same database");
    let err = back
        .check_database("tito.repo", "db-2")
        .expect_err("other database");
    assert!(matches!(err, FormatError::WrongDatabase { .. }));
    assert!(
        err.to_string().contains("db-1") && err.to_string().contains("db-2"),
        "{err}"
    );
    // A repository of format 1 (before writer claims) is still read.
    let mut old = c.clone();
    old.format_version = 1;
    old.validate("tito.repo").expect("format 1 stays readable");
    assert_eq!(c.format_version, 2, "new repositories are format 2");
    // A config of a future version is refused with the version named.
    let mut future = c.clone();
    future.format_version = 4;
    let err = future.validate("tito.repo").expect_err("future");
    assert!(err.to_string().contains("version 4"), "{err}");
    // Version 3 means encrypted: the two must agree, and an encrypted config round-trips
    // as a version 3 document (which builds before it refuse).
    let mut unencrypted3 = c.clone();
    unencrypted3.format_version = 3;
    assert!(unencrypted3.validate("tito.repo").is_err());
    let enc = RepoConfig::new_encrypted(
        "db-1",
        tito_format::repo::RepoEncryption {
            scheme: "xchacha20poly1305-64k-v1".into(),
            key_ids: vec!["0011223344556677".into()],
        },
    );
    assert_eq!(enc.format_version, 3);
    let eb = enc.encode("tito.repo").expect("encode encrypted");
    assert!(
        String::from_utf8_lossy(&eb).contains("tito-repo v3 "),
        "doc line v3"
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains("encryption"),
        "unencrypted unchanged"
    );
    assert_eq!(RepoConfig::decode(&eb, "tito.repo").expect("decode"), enc);
    // A flipped byte is caught.
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    assert!(RepoConfig::decode(&bad, "tito.repo").is_err());
    // A manifest is not a config.
    let m = manifest().encode(NAME).expect("encode");
    let err = RepoConfig::decode(&m, "tito.repo").expect_err("kind");
    assert!(err.to_string().contains("tito-manifest"), "{err}");
}

#[test]
fn timeline_and_restore_point_round_trip() {
    let t = TimelineHistory {
        timeline: 2,
        parent: Some(1),
        branch_lsn: 99,
        branch_time_ms: 4,
        branch_id: "r1".into(),
        created_ms: 5,
    };
    let b = t.encode("timelines/00000002/TIMELINE").expect("encode");
    assert_eq!(TimelineHistory::decode(&b, "x").expect("decode"), t);
    let own = TimelineHistory {
        parent: Some(2),
        ..t
    };
    assert!(own.encode("x").is_err());

    let p = RestorePoint {
        name: "before-deploy_v1.2".into(),
        timeline: 1,
        lsn: 7,
        created_ms: 3,
    };
    let b = p
        .encode("restore-points/before-deploy_v1.2")
        .expect("encode");
    assert_eq!(RestorePoint::decode(&b, "x").expect("decode"), p);
    for bad in ["", "a/b", "..", ".hidden", "a b", "x\0", &"n".repeat(129)] {
        assert!(validate_restore_point_name(bad).is_err(), "{bad:?}");
    }
    validate_restore_point_name("release@2026-01-01T10:00").expect("ok name");
}

/// Regression (fuzz target `manifest`): a key whose hex holds a non-ASCII character
/// panicked (a string slice through the character) instead of being refused.
#[test]
fn non_hex_key_characters_are_errors_not_panics() {
    let m = manifest();
    let text = String::from_utf8(m.encode(NAME).expect("encode")).expect("utf8");
    let json = &text[..text.trim_end().rfind('\n').expect("checksum line")];
    let good = tito_format::manifest::hex_bytes::serialize(
        &m.chunks[0].first_key,
        serde_json::value::Serializer,
    )
    .expect("hex");
    let good = good.as_str().expect("a string").to_string();
    for bad in ["a\u{e9}b", "+f", "zz", "\u{e9}"] {
        let forged = json.replacen(&good, bad, 1);
        assert_ne!(forged, json);
        let hash = blake3::hash(forged.as_bytes()).to_hex();
        let doc = format!("{forged}\ntito-manifest v1 blake3:{hash}\n");
        let err = Manifest::decode(doc.as_bytes(), NAME).expect_err(bad);
        assert!(matches!(err, FormatError::Json { .. }), "{bad}: {err}");
    }
}
