#![no_main]
//! cargo-fuzz target: `strata_fuzz::cluster_rpc`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_fuzz::cluster_rpc(data));
