#![no_main]
//! cargo-fuzz target: `strata_fuzz::mergeset_part`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::mergeset_part(data));
