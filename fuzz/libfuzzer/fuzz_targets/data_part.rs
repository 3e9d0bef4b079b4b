#![no_main]
//! cargo-fuzz target: `strata_fuzz::data_part`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::data_part(data));
