#![no_main]
//! cargo-fuzz target: `strata_fuzz::exposition`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::exposition(data));
