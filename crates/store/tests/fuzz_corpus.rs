//! Replays the kept corpus of this crate's fuzz target (`fuzz/corpus/envelope/`) and its
//! seeds through the check the target runs (`tito_store::fuzzing`), as ordinary tests.
//!
//! `cargo test -p tito-store --test fuzz_corpus -- --ignored write_seeds` writes the seeds.

use tito_format::fuzz_corpus;
use tito_format::fuzzing::Target;

const TARGETS: &[Target] = &[Target {
    name: "envelope",
    check: tito_store::fuzzing::envelope,
    seeds: tito_store::fuzzing::envelope_seeds,
}];

#[test]
fn every_corpus_file_passes_its_check() {
    fuzz_corpus::replay(TARGETS);
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    fuzz_corpus::check_target_files(TARGETS, "tito_store::fuzzing");
}

#[test]
fn seeds_pass_and_single_byte_damage_is_handled() {
    fuzz_corpus::check_seeds(TARGETS);
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand (fuzz/README.md)"]
fn write_seeds() {
    fuzz_corpus::write_seeds(TARGETS);
}
