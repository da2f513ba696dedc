//! Replays the kept corpus of this crate's fuzz target (`fuzz/corpus/legacy_chunk/`) and its
//! seeds through the check the target runs (`tito_legacy::fuzzing`), as ordinary tests.
//!
//! `cargo test -p tito-legacy --test fuzz_corpus -- --ignored write_seeds` writes the seeds.

use tito_format::fuzzing::Target;

const TARGETS: &[Target] = &[Target {
    name: "legacy_chunk",
    check: tito_legacy::fuzzing::legacy_chunk,
    seeds: tito_legacy::fuzzing::legacy_chunk_seeds,
}];

tito_format::fuzz_corpus_tests!(TARGETS, "tito_legacy::fuzzing");
