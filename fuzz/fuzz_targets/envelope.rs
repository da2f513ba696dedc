//! Fuzz target `envelope`: see `tito_store::fuzzing::envelope` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_store::fuzzing::envelope(data));
