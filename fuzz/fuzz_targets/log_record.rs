//! Fuzz target `log_record`: see `tito_format::fuzzing::log_record` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_format::fuzzing::log_record(data));
