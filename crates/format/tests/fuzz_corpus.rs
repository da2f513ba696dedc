//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the seeds made by the real
//! writers through the same check functions the fuzz targets run
//! (`tito_format::fuzzing`), so every input the fuzzer kept, and every crash it found, is
//! an ordinary test (`tito_format::fuzz_corpus`, shared with the other crates' targets).
//!
//! `cargo test -p tito-format --test fuzz_corpus -- --ignored write_seeds` writes the
//! seeds into the corpus directories (fuzz/README.md).

use tito_format::fuzz_corpus;
use tito_format::fuzzing::TARGETS;

#[test]
fn every_corpus_file_passes_its_check() {
    fuzz_corpus::replay(TARGETS);
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    fuzz_corpus::check_target_files(TARGETS, "tito_format::fuzzing");
}

/// The seeds are valid objects: each must pass its check and decode all the way (checked
/// by the target's own round trip), and flipping any byte of one must not break a check.
#[test]
fn seeds_pass_and_single_byte_damage_is_handled() {
    fuzz_corpus::check_seeds(TARGETS);
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand (fuzz/README.md)"]
fn write_seeds() {
    fuzz_corpus::write_seeds(TARGETS);
}
