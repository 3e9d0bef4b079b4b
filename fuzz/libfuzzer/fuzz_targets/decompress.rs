#![no_main]
//! cargo-fuzz target: `strata_fuzz::decompress`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::decompress(data));
