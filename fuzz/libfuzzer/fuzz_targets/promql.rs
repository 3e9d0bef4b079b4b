#![no_main]
//! cargo-fuzz target: `strata_fuzz::promql`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::promql(data));
