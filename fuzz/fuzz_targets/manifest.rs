//! Fuzz target `manifest`: see `tito_format::fuzzing::manifest` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_format::fuzzing::manifest(data));
