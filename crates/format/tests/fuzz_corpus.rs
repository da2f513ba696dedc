//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the seeds made by the real
//! writers through the same check functions the fuzz targets run
//! (`tito_format::fuzzing`), so every input the fuzzer kept, and every crash it found, is
//! an ordinary test (`tito_format::fuzz_corpus`, shared with the other crates' targets).
//!
//! `cargo test -p tito-format --test fuzz_corpus -- --ignored write_seeds` writes the
//! seeds into the corpus directories (fuzz/README.md).

tito_format::fuzz_corpus_tests!(tito_format::fuzzing::TARGETS, "tito_format::fuzzing");
