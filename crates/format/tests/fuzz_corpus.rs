//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the seeds made by the real
//! writers through the same check functions the fuzz targets run
//! (`tito_format::fuzzing`), so every input the fuzzer kept, and every crash it found, is
//! an ordinary test.
//!
//! `cargo test -p tito-format --test fuzz_corpus -- --ignored write_seeds` writes the
//! seeds into the corpus directories (fuzz/README.md).

use std::path::{Path, PathBuf};

use tito_format::fuzzing::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_file_passes_its_check() {
    let mut total = 0;
    for t in TARGETS {
        let dir = corpus_dir(t.name);
        let inputs = files(&dir);
        assert!(!inputs.is_empty(), "{} has no corpus", dir.display());
        for path in &inputs {
            let data = std::fs::read(path).expect("read corpus file");
            let run = std::panic::catch_unwind(|| (t.check)(&data));
            assert!(run.is_ok(), "{} fails its check", path.display());
        }
        total += inputs.len();
    }
    assert!(total >= TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for t in TARGETS {
        let file = root.join("fuzz_targets").join(format!("{}.rs", t.name));
        let src =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            src.contains(&format!("tito_format::fuzzing::{}(", t.name)),
            "{} does not call its check",
            file.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "{} not in fuzz/Cargo.toml",
            t.name
        );
    }
}

/// The seeds are valid objects: each must pass its check and decode all the way (checked
/// by the target's own round trip), and flipping any byte of one must not break a check.
#[test]
fn seeds_pass_and_single_byte_damage_is_handled() {
    for t in TARGETS {
        let seeds = (t.seeds)();
        assert!(seeds.len() >= 2, "{} has too few seeds", t.name);
        for seed in seeds {
            (t.check)(&seed);
            for i in 1..seed.len() {
                let mut bad = seed.clone();
                bad[i] ^= 0x55;
                (t.check)(&bad);
                (t.check)(&seed[..i]);
            }
        }
    }
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand (fuzz/README.md)"]
fn write_seeds() {
    for t in TARGETS {
        let dir = corpus_dir(t.name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (i, seed) in (t.seeds)().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("write seed");
        }
    }
}
