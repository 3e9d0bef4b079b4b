#![no_main]
//! cargo-fuzz target: `strata_fuzz::ingest_pipeline`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::ingest_pipeline(data));
