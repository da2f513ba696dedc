//! Fuzz target `documents`: see `tito_format::fuzzing::documents` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tito_format::fuzzing::documents(data));
