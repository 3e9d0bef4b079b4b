#![no_main]
//! cargo-fuzz target: `strata_fuzz::json_import`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::json_import(data));
