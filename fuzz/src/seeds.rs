//! Seed corpora: one or more valid inputs per target, built with the project's own encoders, so
//! mutations start from inputs that reach deep into each decoder. `fuzz/libfuzzer` writes them
//! out as its initial corpus (`cargo run -p strata-fuzz --example write_corpus`).

use std::sync::OnceLock;

use strata_ingest::prompb::{self, Label, Sample, TimeSeries, WriteRequest};

/// The seeds of target `name` (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Vec<u8>> {
    match name {
        "remote_write_v1" => vec![remote_write_v1_raw(), Vec::new()],
        "remote_write_v2" => vec![remote_write_v2_raw(), Vec::new()],
        "decompress" => vec![
            prompb::encode_snappy(&write_request()),
            prompb::encode_zstd(&write_request(), 1).unwrap_or_default(),
        ],
        "ingest_pipeline" => {
            let mut v = Vec::new();
            for (sel, body) in [
                (0u8, prompb::encode_snappy(&write_request())),
                (1, prompb::v2::encode_snappy(&write_request_v2())),
                (2, json_lines()),
                (3, exposition_text()),
            ] {
                let mut d = vec![sel];
                d.extend_from_slice(&body);
                v.push(d);
            }
            v
        }
        "promql" => [
            "up",
            "sum by (job) (rate(http_requests_total{code=~\"5..\", job!=\"x\"}[5m] offset 1h))",
            "histogram_quantile(0.9, sum(rate(b_bucket[1m])) by (le)) > bool 0.5 or on(a) vector(1)",
            "avg_over_time(m[1h:5m] @ 1700000000) / ignoring(x) group_left(y) n",
            "topk(3, -x ^ 2 % 7) unless absent(z)",
            "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "exposition" => vec![exposition_text()],
        "json_import" => vec![json_lines()],
        "wal_segment" => vec![wal_segment()],
        "cluster_rpc" => crate::cluster::seeds(),
        "data_block" => data_blocks(),
        "data_part" | "mergeset_part" => vec![vec![0], vec![1, 0, 0, 0xff], vec![3, 5, 0, 0x80, 9, 0, 1, 128]],
        _ => Vec::new(),
    }
}

fn write_request() -> WriteRequest {
    let series = (0..3)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "http_requests_total".into(),
                },
                Label {
                    name: "instance".into(),
                    value: format!("host-{i}:9100"),
                },
                Label {
                    name: "job".into(),
                    value: "node".into(),
                },
            ],
            samples: (0..4)
                .map(|j| Sample {
                    value: f64::from(i * 10 + j),
                    timestamp: 1_700_000_000_000 + i64::from(j) * 15_000,
                })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        })
        .collect();
    WriteRequest {
        timeseries: series,
        metadata: Vec::new(),
    }
}

fn write_request_v2() -> prompb::v2::Request {
    prompb::v2::Request {
        symbols: vec![
            String::new(),
            "__name__".into(),
            "up".into(),
            "job".into(),
            "node".into(),
        ],
        timeseries: vec![prompb::v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![prompb::v2::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        }],
    }
}

fn remote_write_v1_raw() -> Vec<u8> {
    strata_ingest::decompress::snappy(&prompb::encode_snappy(&write_request()), 1 << 20).unwrap_or_default()
}

fn remote_write_v2_raw() -> Vec<u8> {
    strata_ingest::decompress::snappy(&prompb::v2::encode_snappy(&write_request_v2()), 1 << 20).unwrap_or_default()
}

fn json_lines() -> Vec<u8> {
    b"{\"metric\":{\"__name__\":\"m\",\"job\":\"a\"},\"values\":[1,2.5,null],\"timestamps\":[1000,2000,3000]}\n\
      {\"metric\":{\"__name__\":\"n\"},\"values\":[\"NaN\"],\"timestamps\":[1]}\n"
        .to_vec()
}

fn exposition_text() -> Vec<u8> {
    b"# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
      http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
      http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
      metric_without_timestamp_and_labels 12.47\n\
      something_weird{problem=\"division by zero\"} +Inf -3982045\n\
      esc{a=\"x\\\"y\\\\z\\n\"} 1e-3\n"
        .to_vec()
}

fn wal_segment() -> Vec<u8> {
    use strata_storage::index::Label as L;
    use strata_storage::wal::{Append, Batch, Definitions, Wal, segment_path};
    // Written by a real log: a segment header, a write defining two series, a write using
    // them by reference only, and one for another tenant.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wal = Wal::create(dir.path(), 1).expect("a WAL");
    let up = [
        L {
            name: "__name__",
            value: "up",
        },
        L {
            name: "job",
            value: "node",
        },
    ];
    let mut defs = Definitions::default();
    defs.add(1, &up);
    defs.add(2, &up[..1]);
    let mut first = Batch::default();
    first.push(1, &[1, 2], &[1.0, 0.0]);
    first.push(2, &[5], &[f64::NAN]);
    let mut later = Batch::default();
    later.push(1, &[3], &[1.0]);
    let other = strata_storage::Tenant {
        account_id: 3,
        project_id: 4,
    };
    let mut pos = 0;
    for (tenant, batch) in [
        (strata_storage::Tenant::default(), &first),
        (strata_storage::Tenant::default(), &later),
        (other, &first),
    ] {
        match wal.append_batch(tenant, batch, &defs, true) {
            Append::Logged(p) => pos = p,
            Append::Undefined(missing) => panic!("series {missing:?} have definitions"),
        }
    }
    wal.sync_to(pos).expect("the WAL written");
    let bytes = std::fs::read(segment_path(dir.path(), 1)).expect("the segment");
    drop(wal);
    bytes
}

/// Header + payloads of the blocks of the template data part.
fn data_blocks() -> Vec<Vec<u8>> {
    use strata_storage::data::part::{Part, PartCursor};
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(_) => return Vec::new(),
    };
    let part_dir = dir.path().join("p");
    if std::fs::create_dir(&part_dir).is_err() {
        return Vec::new();
    }
    for (name, bytes) in data_part_template() {
        if std::fs::write(part_dir.join(name), bytes).is_err() {
            return Vec::new();
        }
    }
    let Ok(part) = Part::open(&part_dir) else {
        return Vec::new();
    };
    let part = std::sync::Arc::new(part);
    let ts_file = std::fs::read(part_dir.join(strata_storage::data::part::TIMESTAMPS_FILE)).unwrap_or_default();
    let v_file = std::fs::read(part_dir.join(strata_storage::data::part::VALUES_FILE)).unwrap_or_default();
    let mut out = Vec::new();
    let Ok(mut c) = PartCursor::new(part) else {
        return out;
    };
    while let Some(h) = c.peek().cloned() {
        let mut seed = Vec::new();
        h.marshal(&mut seed);
        let ts = ts_file
            .get(h.timestamps_offset as usize..(h.timestamps_offset + u64::from(h.timestamps_size)) as usize)
            .unwrap_or(&[]);
        let vs = v_file
            .get(h.values_offset as usize..(h.values_offset + u64::from(h.values_size)) as usize)
            .unwrap_or(&[]);
        seed.extend_from_slice(ts);
        seed.extend_from_slice(vs);
        out.push(seed);
        if out.len() >= 8 || c.advance().is_err() {
            break;
        }
    }
    out
}

/// A part's files: (file name, contents).
pub type PartFiles = Vec<(&'static str, Vec<u8>)>;

/// The files of a small valid data part: (file name, contents).
pub fn data_part_template() -> &'static [(&'static str, Vec<u8>)] {
    static T: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    T.get_or_init(|| build_data_part().unwrap_or_default())
}

fn build_data_part() -> Option<Vec<(&'static str, Vec<u8>)>> {
    use strata_storage::data::part::{PART_FILES, PartWriter};
    use strata_storage::{Tenant, Tsid};
    let dir = tempfile::tempdir().ok()?;
    let p = dir.path().join("part");
    let mut w = PartWriter::create(&p, 1).ok()?;
    for s in 0..12u64 {
        let tsid = Tsid {
            tenant: Tenant::default(),
            metric_group_id: s / 4,
            job_id: 1,
            instance_id: (s % 4) as u32,
            metric_id: 1000 + s,
        };
        let ts: Vec<i64> = (0..40).map(|i| 1_700_000_000_000 + i * 15_000).collect();
        let vals: Vec<f64> = (0..40)
            .map(|i| if s % 3 == 0 { i as f64 * 0.25 } else { (s * 7) as f64 })
            .collect();
        w.write_series(&tsid, &ts, &vals).ok()?;
    }
    w.finish(0).ok()?;
    PART_FILES
        .iter()
        .map(|f| Some((*f, std::fs::read(p.join(f)).ok()?)))
        .collect()
}

/// The part directory name and the files of a small valid mergeset part.
pub fn mergeset_part_template() -> (&'static str, &'static [(&'static str, Vec<u8>)]) {
    static T: OnceLock<(String, PartFiles)> = OnceLock::new();
    let (name, files) = T.get_or_init(|| build_mergeset_part().unwrap_or_default());
    (name.as_str(), files.as_slice())
}

fn build_mergeset_part() -> Option<(String, PartFiles)> {
    use strata_mergeset::{INDEX_FILE, ITEMS_FILE, LENS_FILE, METADATA_FILE, METAINDEX_FILE, Table, TableOptions};
    let dir = tempfile::tempdir().ok()?;
    let opts = TableOptions {
        background: false,
        ..TableOptions::default()
    };
    let t = Table::open(dir.path(), opts).ok()?;
    let items: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| format!("\x01tag{}\x00value-{i:06}", i % 17).into_bytes())
        .collect();
    t.add_items(items.iter().map(Vec::as_slice));
    t.close().ok()?;
    let names: Vec<String> = serde_json_names(&std::fs::read(dir.path().join(strata_mergeset::PARTS_FILE)).ok()?)?;
    let name = names.first()?.clone();
    let pd = dir.path().join(&name);
    let files = [METADATA_FILE, METAINDEX_FILE, INDEX_FILE, ITEMS_FILE, LENS_FILE]
        .iter()
        .map(|f| Some((*f, std::fs::read(pd.join(f)).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some((name, files))
}

/// Part names from a mergeset parts.json (`["A","B"]`), without pulling in a JSON crate.
fn serde_json_names(bytes: &[u8]) -> Option<Vec<String>> {
    let s = std::str::from_utf8(bytes).ok()?;
    Some(
        s.split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, n)| n.to_string())
            .collect(),
    )
}
