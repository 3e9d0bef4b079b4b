#![no_main]
//! cargo-fuzz target: `strata_fuzz::remote_write_v1`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::remote_write_v1(data));
