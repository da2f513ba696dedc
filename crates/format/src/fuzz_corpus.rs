//! Replaying the kept fuzz corpora (`fuzz/corpus/<target>/`) through the targets' check
//! functions, as ordinary tests: one piece of code for every crate that has fuzz targets
//! (`tito_format::fuzzing::TARGETS`, `tito_store::fuzzing::TARGETS`,
//! `tito_legacy::fuzzing::TARGETS`), each calling these from its `tests/fuzz_corpus.rs`.
//!
//! Not a stable API: for the fuzz targets and tests only.

use std::path::{Path, PathBuf};

use crate::fuzzing::Target;

/// The repository's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The kept corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
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

/// Every file of every target's corpus passes its check (panics naming the first that
/// does not). Each corpus must hold something.
pub fn replay(targets: &[Target]) {
    for t in targets {
        let dir = corpus_dir(t.name);
        let inputs = files(&dir);
        assert!(!inputs.is_empty(), "{} has no corpus", dir.display());
        for path in &inputs {
            let data = std::fs::read(path).expect("read corpus file");
            let run = std::panic::catch_unwind(|| (t.check)(&data));
            assert!(run.is_ok(), "{} fails its check", path.display());
        }
    }
}

/// Every target has its `fuzz/fuzz_targets/<name>.rs`, calling `<module>::<name>(`
/// (`module` is for example `tito_store::fuzzing`), and a `[[bin]]` in `fuzz/Cargo.toml`.
pub fn check_target_files(targets: &[Target], module: &str) {
    let root = fuzz_dir();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for t in targets {
        let file = root.join("fuzz_targets").join(format!("{}.rs", t.name));
        let src =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            src.contains(&format!("{module}::{}(", t.name)),
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

/// The seeds are valid objects: each passes its check, and so does each seed with any one
/// byte flipped and each of its prefixes.
pub fn check_seeds(targets: &[Target]) {
    for t in targets {
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

/// Write every target's seeds into its corpus directory (`seed-NNN`).
pub fn write_seeds(targets: &[Target]) {
    for t in targets {
        let dir = corpus_dir(t.name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (i, seed) in (t.seeds)().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("write seed");
        }
    }
}

/// The corpus tests of a crate's fuzz targets, in its `tests/fuzz_corpus.rs`:
/// `tito_format::fuzz_corpus_tests!(TARGETS, "tito_store::fuzzing");` defines the replay of
/// every kept input, the target-file check, the seed checks and the ignored `write_seeds`
/// (`cargo test -p <crate> --test fuzz_corpus -- --ignored write_seeds`).
#[macro_export]
macro_rules! fuzz_corpus_tests {
    ($targets:expr, $module:literal) => {
        #[test]
        fn every_corpus_file_passes_its_check() {
            $crate::fuzz_corpus::replay($targets);
        }

        #[test]
        fn every_target_has_a_fuzz_target_file() {
            $crate::fuzz_corpus::check_target_files($targets, $module);
        }

        /// The seeds are valid objects: each must pass its check, and flipping any byte
        /// of one or cutting it anywhere must not break a check.
        #[test]
        fn seeds_pass_and_single_byte_damage_is_handled() {
            $crate::fuzz_corpus::check_seeds($targets);
        }

        #[test]
        #[ignore = "writes the seeds into fuzz/corpus; run by hand (fuzz/README.md)"]
        fn write_seeds() {
            $crate::fuzz_corpus::write_seeds($targets);
        }
    };
}
