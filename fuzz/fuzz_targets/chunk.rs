//! Fuzz target `chunk`: see `tito_format::fuzzing::chunk` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_format::fuzzing::chunk(data));
