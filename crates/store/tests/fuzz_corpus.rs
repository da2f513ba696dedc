//! Replays the kept corpus of this crate's fuzz target (`fuzz/corpus/envelope/`) and its
//! seeds through the check the target runs (`tito_store::fuzzing`), as ordinary tests.
//!
//! `cargo test -p tito-store --test fuzz_corpus -- --ignored write_seeds` writes the seeds.

use tito_format::fuzzing::Target;

const TARGETS: &[Target] = &[Target {
    name: "envelope",
    check: tito_store::fuzzing::envelope,
    seeds: tito_store::fuzzing::envelope_seeds,
}];

tito_format::fuzz_corpus_tests!(TARGETS, "tito_store::fuzzing");
