#![no_main]
//! cargo-fuzz target: `strata_fuzz::wal_segment`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::wal_segment(data));
