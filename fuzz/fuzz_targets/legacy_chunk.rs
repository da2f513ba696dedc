//! Fuzz target `legacy_chunk`: see `tito_legacy::fuzzing::legacy_chunk` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_legacy::fuzzing::legacy_chunk(data));
