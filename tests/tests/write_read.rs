//! Data in through remote_write, out through PromQL and export, across restarts: a real
//! process, real HTTP, real snappy protobuf.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_e2e::{Reply, Strata};
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

const SERIES: usize = 3;
const SAMPLES: i64 = 20;
const STEP_MS: i64 = 15_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `e2e_requests_total{instance="host-<i>",job="node"}` with values i*1000 + k for the k-th
/// sample, the last one at `end_ms`.
fn write_request(end_ms: i64) -> WriteRequest {
    let timeseries = (0..SERIES)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "e2e_requests_total".into(),
                },
                Label {
                    name: "instance".into(),
                    value: format!("host-{i}"),
                },
                Label {
                    name: "job".into(),
                    value: "node".into(),
                },
            ],
            samples: (0..SAMPLES)
                .map(|k| Sample {
                    value: (i as i64 * 1000 + k) as f64,
                    timestamp: end_ms - (SAMPLES - 1 - k) * STEP_MS,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
}

fn remote_write(node: &Strata, request: &WriteRequest) -> Reply {
    node.post_with(
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(request),
    )
}

fn instant(node: &Strata, query: &str, at_ms: i64) -> serde_json::Value {
    let path = format!(
        "/api/v1/query?query={}&time={}",
        urlencode(query),
        at_ms as f64 / 1000.0
    );
    let reply = node.poll(&path, Duration::from_secs(10), |r| {
        r.status == 200 && r.json()["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn scalar_of(result: &serde_json::Value) -> f64 {
    let value = &result["data"]["result"][0]["value"][1];
    value
        .as_str()
        .unwrap_or_else(|| panic!("no value in {result}"))
        .parse()
        .unwrap()
}

#[test]
fn remote_write_then_query_export_and_restart() {
    let end = now_ms() - 60_000;
    let node = Strata::single();
    let reply = remote_write(&node, &write_request(end));
    assert_eq!(reply.status, 204, "{}", reply.body);

    // The newest sample of each series is i*1000 + 19; their sum is 0+1000+2000 + 3*19.
    let sum = instant(&node, "sum(e2e_requests_total)", end);
    assert_eq!(scalar_of(&sum), 3057.0, "{sum}");
    let one = instant(&node, "e2e_requests_total{instance=\"host-2\"}", end);
    assert_eq!(one["data"]["result"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["data"]["result"][0]["metric"]["job"], "node");
    assert_eq!(scalar_of(&one), 2019.0);

    // rate over the last 5 minutes, extrapolated as Prometheus does: 20 samples 15 s apart
    // cover 285 s of the 300 s window. Series 1 and 2 extrapolate their increase of 19 to the
    // window start (20 per 300 s); series 0 starts at 0, so it is not extrapolated below zero
    // (19 per 300 s).
    let rate = instant(&node, "sum by (job) (rate(e2e_requests_total[5m]))", end);
    let per_second = scalar_of(&rate);
    assert!((per_second - 59.0 / 300.0).abs() < 1e-12, "{rate}");

    // Label APIs.
    let labels = node.get("/api/v1/labels").json();
    let names: Vec<&str> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for name in ["__name__", "instance", "job"] {
        assert!(names.contains(&name), "{labels}");
    }
    // Only this test's job: the node also stores its own metrics (self-scrape, job="strata").
    let values = node
        .get("/api/v1/label/instance/values?match[]=%7Bjob%3D%22node%22%7D")
        .json();
    assert_eq!(values["data"], serde_json::json!(["host-0", "host-1", "host-2"]));

    // Graceful restart keeps everything.
    let data_dir = node.data_dir().to_path_buf();
    let mut node = node;
    assert!(node.stop().success(), "{}", node.logs());
    let node = Strata::builder().data_dir(&data_dir).start();
    let sum = instant(&node, "sum(e2e_requests_total)", end);
    assert_eq!(scalar_of(&sum), 3057.0, "after restart: {sum}");
}

#[test]
fn force_flush_makes_data_survive_kill_9() {
    let end = now_ms() - 60_000;
    // The data directory outlives the first process (a node's own temp dir goes with it).
    let keep = tempfile::tempdir().unwrap();
    let data_dir = keep.path().join("data");
    let node = Strata::builder().data_dir(&data_dir).start();
    assert_eq!(remote_write(&node, &write_request(end)).status, 204);
    assert_eq!(node.get("/internal/force_flush").status, 200);
    node.signal("KILL");
    drop(node);

    let node = Strata::builder().data_dir(&data_dir).start();
    let count = instant(&node, "count(e2e_requests_total)", end);
    assert_eq!(scalar_of(&count), SERIES as f64, "{count}");
}

#[test]
fn snapshots_create_list_delete() {
    let end = now_ms() - 60_000;
    let node = Strata::single();
    assert_eq!(remote_write(&node, &write_request(end)).status, 204);
    let created = node.get("/snapshot/create").json();
    assert_eq!(created["status"], "ok", "{created}");
    let name = created["snapshot"].as_str().unwrap().to_owned();
    let snapshot_dir = node.data_dir().join("snapshots").join(&name);
    assert!(snapshot_dir.join("data").is_dir() && snapshot_dir.join("indexdb").is_dir());

    let listed = node.get("/snapshot/list").json();
    assert_eq!(listed["snapshots"], serde_json::json!([name.clone()]));

    // Deleting an unknown or malicious name is a client error, not a deletion.
    assert_eq!(node.get("/snapshot/delete?snapshot=../../data").status, 400);
    assert_eq!(
        node.get(&format!("/snapshot/delete?snapshot={name}")).json()["status"],
        "ok"
    );
    assert!(!snapshot_dir.exists());
    assert_eq!(node.get("/snapshot/list").json()["snapshots"], serde_json::json!([]));
}

#[test]
fn bad_remote_write_is_400_and_keeps_earlier_data() {
    let end = now_ms() - 60_000;
    let node = Strata::single();
    assert_eq!(remote_write(&node, &write_request(end)).status, 204);
    let garbage = node.post_with(
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        b"\xff\x00definitely not snappy",
    );
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert_eq!(garbage.json()["status"], "error");
    let count = instant(&node, "count(e2e_requests_total)", end);
    assert_eq!(scalar_of(&count), SERIES as f64);
}

#[test]
fn export_status_and_delete_series() {
    let end = now_ms() - 60_000;
    let node = Strata::single();
    assert_eq!(remote_write(&node, &write_request(end)).status, 204);
    let _ = instant(&node, "count(e2e_requests_total)", end);

    // Export: one JSON line per series with every sample, __name__ first.
    let export = node.get("/api/v1/export?match[]=e2e_requests_total");
    assert_eq!(export.status, 200, "{}", export.body);
    let lines: Vec<serde_json::Value> = export.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), SERIES, "{}", export.body);
    for line in &lines {
        assert_eq!(line["metric"]["__name__"], "e2e_requests_total");
        let i: i64 = line["metric"]["instance"].as_str().unwrap()["host-".len()..]
            .parse()
            .unwrap();
        let values: Vec<f64> = line["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want: Vec<f64> = (0..SAMPLES).map(|k| (i * 1000 + k) as f64).collect();
        assert_eq!(values, want);
        let timestamps = line["timestamps"].as_array().unwrap();
        assert_eq!(timestamps.last().unwrap().as_i64(), Some(end));
    }
    assert!(
        export.body.trim_start().starts_with("{\"metric\":{\"__name__\""),
        "{}",
        export.body
    );
    assert_eq!(node.get("/api/v1/export").status, 400, "match[] is required");
    assert_eq!(node.get("/api/v1/export?match[]=rate(x[5m])").status, 400);

    // Cardinality for today.
    let status = node.get("/api/v1/status/tsdb").json();
    assert_eq!(status["status"], "success", "{status}");
    let by_name = status["data"]["seriesCountByMetricName"].as_array().unwrap();
    assert!(
        by_name
            .iter()
            .any(|e| e["name"] == "e2e_requests_total" && e["value"] == SERIES as u64),
        "{status}"
    );

    // Delete one series: gone from queries at once, the others stay.
    let deleted = node.post(
        "/api/v1/admin/tsdb/delete_series",
        "application/x-www-form-urlencoded",
        b"match[]=e2e_requests_total%7Binstance%3D%22host-1%22%7D",
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let count = node.get(&format!(
        "/api/v1/query?query=count(e2e_requests_total)&time={}",
        end as f64 / 1000.0
    ));
    assert_eq!(scalar_of(&count.json()), (SERIES - 1) as f64, "{}", count.body);
}

/// The bad-input table through the real server: each request gets its status and a message
/// saying what is wrong, the node stays up, and data accepted before is still there.
#[test]
fn bad_input_table_through_the_real_server() {
    let end = now_ms() - 60_000;
    let node = Strata::single();
    assert_eq!(remote_write(&node, &write_request(end)).status, 204);

    let one_series = |labels: Vec<(&str, String)>, samples: Vec<(i64, f64)>| WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label {
                    name: name.into(),
                    value,
                })
                .collect(),
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| Sample { timestamp, value })
                .collect(),
            ..Default::default()
        }],
        metadata: Vec::new(),
    };
    let valid = encode_snappy(&write_request(end));
    let mut many_labels = vec![("__name__", "wide".to_string())];
    let names: Vec<String> = (0..1000).map(|i| format!("l{i:04}")).collect();
    many_labels.extend(names.iter().map(|n| (n.as_str(), "v".to_string())));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("truncated snappy", valid[..valid.len() / 2].to_vec(), 400, "snappy"),
        (
            "garbage protobuf",
            snap::raw::Encoder::new()
                .compress_vec(b"\xff\xff\xff\xff garbage")
                .unwrap(),
            400,
            "",
        ),
        (
            "64 KB label value",
            encode_snappy(&one_series(
                vec![("__name__", "big".into()), ("l", "x".repeat(64 * 1024))],
                vec![(end, 1.0)],
            )),
            400,
            "label",
        ),
        (
            "1000 labels",
            encode_snappy(&one_series(many_labels, vec![(end, 1.0)])),
            400,
            "label",
        ),
        (
            "future timestamp",
            encode_snappy(&one_series(
                vec![("__name__", "future".into())],
                vec![(now_ms() + 7 * 86_400_000, 1.0)],
            )),
            400,
            "future",
        ),
        (
            "unsorted samples",
            encode_snappy(&one_series(
                vec![("__name__", "unsorted".into())],
                vec![(end, 1.0), (end - 1000, 2.0)],
            )),
            400,
            "",
        ),
        (
            "duplicate label",
            encode_snappy(&one_series(
                vec![("__name__", "dup".into()), ("a", "1".into()), ("a", "2".into())],
                vec![(end, 1.0)],
            )),
            400,
            "more than once",
        ),
    ];
    for (what, body, status, needle) in cases {
        let reply = node.post_with(
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        );
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        let json = reply.json();
        assert_eq!(json["status"], "error", "{what}");
        let message = json["error"].as_str().unwrap().to_lowercase();
        assert!(
            message.contains(needle),
            "{what}: message {message:?} should mention {needle:?}"
        );
    }

    // A decompression bomb: a small body that declares 1 GiB once inflated.
    let mut bomb = Vec::new();
    let mut len = 1u64 << 30;
    while len >= 0x80 {
        bomb.push((len as u8) | 0x80);
        len >>= 7;
    }
    bomb.push(len as u8);
    bomb.extend_from_slice(&[0u8; 64]);
    let reply = node.post_with(
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &bomb,
    );
    assert!(
        matches!(reply.status, 400 | 413),
        "bomb: {} {}",
        reply.status,
        reply.body
    );

    // NaN and ±Inf values are accepted as Prometheus does (and the stale marker kept).
    let specials = one_series(
        vec![("__name__", "specials".into())],
        vec![
            (end - 2000, f64::NAN),
            (end - 1000, f64::INFINITY),
            (end, f64::NEG_INFINITY),
        ],
    );
    assert_eq!(remote_write(&node, &specials).status, 204);

    // The node is up and the first request's data is intact; nothing of the refused ones exists.
    let count = instant(&node, "count(e2e_requests_total)", end);
    assert_eq!(scalar_of(&count), SERIES as f64);
    for name in ["big", "wide", "future", "unsorted", "dup"] {
        let series = node.get(&format!("/api/v1/series?match[]={name}"));
        assert_eq!(
            series.json()["data"],
            serde_json::json!([]),
            "{name} was refused but stored"
        );
    }
    let metrics = node.get("/metrics").body;
    assert!(metrics.contains("strata_rows_rejected_total"), "rejections are counted");
}
