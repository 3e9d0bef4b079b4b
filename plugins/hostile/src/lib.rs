//! A deliberately misbehaving ingestion plugin: the host's sandbox tests load it and pick the
//! misbehaviour with the `mode` query parameter. Never load it in production.
//!
//! Modes: `ok` (one valid series), `loop` (spins forever), `bomb` (allocates without bound),
//! `trap` (panics, which aborts the instance), `invalid` (an invalid label name),
//! `huge` (`n` series, default one million), `error` (a parse error at line 3, byte 17). Broken
//! references cannot be built through the SDK; the host's `convert` tests cover them.

use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError, param};

/// The plugin.
pub struct Hostile;

impl IngestPlugin for Hostile {
    fn describe() -> IngestInfo {
        IngestInfo::new("hostile", env!("CARGO_PKG_VERSION"))
            .http_path("/hostile")
            .line_framed()
    }

    fn parse(params: &Params, _body: &[u8], ts: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
        match param(params, "mode").unwrap_or("ok") {
            "ok" => out.series(&[("__name__", "hostile_ok")], &[(ts, 1.0)]),
            "loop" => {
                let mut x: u64 = 1;
                // black_box keeps the optimiser from proving the loop endless and removing it.
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "invalid" => out.series(&[("__name__", "m"), ("bad-label name", "v")], &[(ts, 1.0)]),
            "huge" => {
                let n: usize = param(params, "n").and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
                for i in 0..n {
                    out.series(&[("__name__", "huge"), ("i", &i.to_string())], &[(ts, i as f64)]);
                }
            }
            "error" => return Err(ParseError::new(3, 17, "refused on purpose")),
            other => return Err(ParseError::new(0, 0, format!("unknown mode {other:?}"))),
        }
        Ok(())
    }
}

strata_plugin_sdk::export_ingest!(Hostile);
