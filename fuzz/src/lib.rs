//! Fuzz target bodies: every decoder that reads bytes from the network or from disk, fed
//! arbitrary input. A body returns nothing and must never panic, hang or allocate without bound;
//! errors are the expected outcome for garbage.
//!
//! The same bodies run in two harnesses:
//! - `fuzz/libfuzzer/` (cargo-fuzz, nightly): `cargo +nightly fuzz run --fuzz-dir fuzz/libfuzzer <target>`;
//! - `tests/smoke.rs` (stable, part of `cargo test --workspace`): the seed corpus of [`seeds`]
//!   plus a few thousand mutated inputs per target from [`mutate::Mutator`].

pub mod cluster;
pub mod mutate;
pub mod seeds;

pub use cluster::cluster_rpc;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use strata_ingest::decompress::{self, Encoding};
use strata_ingest::{IngestLimits, Ingestor, MemorySink, MetricBatch, RequestMeta, Tenant};

/// Largest decompressed size the decompression targets allow (keeps each run small).
const LIMIT: usize = 1 << 20;

/// A target: its name (as in `fuzz/libfuzzer/fuzz_targets/<name>.rs`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the smoke test.
pub const TARGETS: &[Target] = &[
    ("remote_write_v1", remote_write_v1),
    ("remote_write_v2", remote_write_v2),
    ("decompress", decompress),
    ("ingest_pipeline", ingest_pipeline),
    ("promql", promql),
    ("exposition", exposition),
    ("json_import", json_import),
    ("wal_segment", wal_segment),
    ("data_block", data_block),
    ("data_part", data_part),
    ("mergeset_part", mergeset_part),
    ("cluster_rpc", cluster_rpc),
];

/// Remote-write 1.0: an uncompressed `WriteRequest`.
pub fn remote_write_v1(data: &[u8]) {
    let mut batch = MetricBatch::new();
    let _ = strata_ingest::remote_write::decode_v1(data, &mut batch);
}

/// Remote-write 2.0: an uncompressed `io.prometheus.write.v2.Request`.
pub fn remote_write_v2(data: &[u8]) {
    let mut batch = MetricBatch::new();
    let _ = strata_ingest::remote_write::decode_v2(data, &mut batch);
}

/// Snappy block framing and zstd frames, each with the other as fallback, under a size limit.
pub fn decompress(data: &[u8]) {
    let mut out = Vec::new();
    for enc in [Encoding::Snappy, Encoding::Zstd] {
        if decompress::remote_write_body_into(data, enc, LIMIT, &mut out).is_ok() {
            assert!(out.len() <= LIMIT, "decompressed past the limit");
        }
    }
}

/// The whole ingestion pipeline (decompression, decoding, limits, the sink) for the kind the
/// first byte selects: remote write 1.0/2.0 (snappy or zstd), JSON lines, text exposition.
pub fn ingest_pipeline(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let sink = Arc::new(MemorySink::default());
    let limits = IngestLimits {
        max_decompressed_bytes: LIMIT,
        ..IngestLimits::default()
    };
    let ingestor = Ingestor::new(sink, limits);
    let (content_type, encoding) = match sel % 4 {
        0 => (Some("application/x-protobuf"), Some("snappy")),
        1 => (
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            Some("zstd"),
        ),
        _ => (None, None),
    };
    let meta = RequestMeta {
        content_type,
        content_encoding: encoding,
        extra_labels: &[],
    };
    let tenant = Tenant::default();
    let _ = match sel % 4 {
        0 | 1 => ingestor.remote_write(tenant, body, &meta),
        2 => ingestor.import_json(tenant, body, &meta),
        _ => ingestor.import_prometheus(tenant, body, &meta, 1_700_000_000_000),
    };
}

/// The PromQL parser (input taken as UTF-8, invalid sequences replaced).
pub fn promql(data: &[u8]) {
    static REG: OnceLock<strata_query::FunctionRegistry> = OnceLock::new();
    let reg = REG.get_or_init(strata_query::FunctionRegistry::with_builtins);
    let text = String::from_utf8_lossy(data);
    let _ = strata_query::parse(&text, reg);
}

/// The Prometheus text exposition parser.
pub fn exposition(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut batch = MetricBatch::new();
    let _ = strata_ingest::exposition::parse_into_batch(&text, 1_700_000_000_000, &mut batch);
}

/// `/api/v1/import` JSON lines.
pub fn json_import(data: &[u8]) {
    let mut batch = MetricBatch::new();
    let _ = strata_ingest::jsonl::decode_import(data, &mut batch);
}

/// A write-ahead-log segment (either format version) as found after a crash.
pub fn wal_segment(data: &[u8]) {
    let (records, torn) = strata_storage::wal::read_segment(data);
    // Cutting the segment short (a crash mid-write) may lose records at the end but never
    // changes or invents one: what a prefix decodes is a prefix of what the whole decodes.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        let (prefix, _) = strata_storage::wal::read_segment(&data[..cut]);
        assert!(
            prefix.len() <= records.len() && records.iter().zip(&prefix).all(|(a, b)| same_record(a, b)),
            "a cut segment decoded records the whole one does not have"
        );
    }
    if !torn {
        for r in &records {
            assert_eq!(
                r.timestamps.len(),
                r.values.len(),
                "a record's timestamps and values differ in number"
            );
        }
    }
}

/// Record equality with values compared bit for bit (a NaN sample equals itself).
fn same_record(a: &strata_storage::wal::WalRecord, b: &strata_storage::wal::WalRecord) -> bool {
    a.tenant == b.tenant
        && a.labels == b.labels
        && a.timestamps == b.timestamps
        && a.values.len() == b.values.len()
        && a.values.iter().zip(&b.values).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A data block header followed by its timestamp and value payloads.
pub fn data_block(data: &[u8]) {
    use strata_storage::data::block::{BlockHeader, decode_block};
    let Ok(h) = BlockHeader::unmarshal(data) else {
        return;
    };
    let rest = data
        .get(strata_storage::data::block::BLOCK_HEADER_SIZE..)
        .unwrap_or(&[]);
    let split = (h.timestamps_size as usize).min(rest.len());
    let (ts_src, v_src) = rest.split_at(split);
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    if decode_block(&h, ts_src, v_src, &mut ts, &mut vals).is_ok() {
        assert_eq!(ts.len(), vals.len());
        assert_eq!(ts.len(), h.rows_count as usize);
    }
}

/// A data part whose files were damaged: the first byte picks the file and the damage (the
/// whole file replaced by the rest of the input, or bytes overwritten at positions the input
/// names); the part is then opened and every block read.
pub fn data_part(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let template = seeds::data_part_template();
    let mut files: Vec<(&str, Vec<u8>)> = template.iter().map(|(n, b)| (*n, b.clone())).collect();
    damage(&mut files, sel, rest);
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if write_files(dir.path(), &files).is_err() {
        return;
    }
    let Ok(part) = strata_storage::data::part::Part::open(dir.path()) else {
        return;
    };
    let part = Arc::new(part);
    let Ok(mut cursor) = strata_storage::data::part::PartCursor::new(part.clone()) else {
        return;
    };
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    let mut blocks = 0usize;
    while let Some(h) = cursor.peek().cloned() {
        ts.clear();
        vals.clear();
        if part.read_block(&h, &mut ts, &mut vals).is_ok() {
            assert_eq!(ts.len(), vals.len());
        }
        blocks += 1;
        if cursor.advance().is_err() || blocks > 1_000_000 {
            break;
        }
    }
}

/// A mergeset (index) table whose one part was damaged like [`data_part`]'s: opened, then
/// every item visited.
pub fn mergeset_part(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (part_name, template) = seeds::mergeset_part_template();
    let mut files: Vec<(&str, Vec<u8>)> = template.iter().map(|(n, b)| (*n, b.clone())).collect();
    damage(&mut files, sel, rest);
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let part_dir = dir.path().join(part_name);
    let manifest = format!("[\"{part_name}\"]");
    if std::fs::create_dir(&part_dir).is_err()
        || std::fs::write(dir.path().join(strata_mergeset::PARTS_FILE), manifest).is_err()
        || write_files(&part_dir, &files).is_err()
    {
        return;
    }
    let opts = strata_mergeset::TableOptions {
        background: false,
        block_cache_bytes: 1 << 20,
        ..strata_mergeset::TableOptions::default()
    };
    let Ok(table) = strata_mergeset::Table::open(dir.path(), opts) else {
        return;
    };
    let mut search = table.search();
    let mut n = 0usize;
    let _ = search.for_each_with_prefix(&[], |_| {
        n += 1;
        n < 1_000_000
    });
    let _ = search.seek(b"\x01");
    let _ = table.close();
}

/// Applies the damage `sel` and `rest` describe to one of `files`.
fn damage(files: &mut [(&str, Vec<u8>)], sel: u8, rest: &[u8]) {
    if files.is_empty() {
        return;
    }
    let file = &mut files[(sel as usize >> 1) % files.len()].1;
    if sel & 1 == 0 {
        *file = rest.to_vec();
        return;
    }
    // Pairs of (position as u16 LE, byte): overwrite inside the file.
    for chunk in rest.chunks_exact(3) {
        if file.is_empty() {
            break;
        }
        let pos = u16::from_le_bytes([chunk[0], chunk[1]]) as usize % file.len();
        file[pos] = chunk[2];
    }
    if rest.len() % 3 == 1 {
        // A trailing single byte truncates the file to that fraction.
        let keep = file.len() * rest[rest.len() - 1] as usize / 255;
        file.truncate(keep);
    }
}

fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) -> std::io::Result<()> {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
