//! PromQL compatibility: Strata against a real Prometheus 2.42 on the same data.
//!
//! The test builds a deterministic data set (counters with resets, gauges crossing zero,
//! histograms, series with gaps, series that start late or end early, irregular scrapes, two
//! metric names with the same labels), backfills it into Prometheus with
//! `promtool tsdb create-blocks-from openmetrics` before starting it, imports it into Strata
//! with `/api/v1/import/prometheus`, then runs every case of `tests/promql/cases.promql` on
//! both — as instant queries at several times and as one range query — and compares the
//! answers: result type, label sets exactly, floats to 1e-9 relative (NaN equals NaN), the
//! order of `sort`/`sort_desc` results, and failures (both fail, same error type).
//!
//! Needs `prometheus` and `promtool` (scripts/install-peers). `{t0}` in a case is replaced by
//! the data set's first timestamp in seconds, `{t0+N}` by that plus N.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_e2e::{Peer, Strata, free_port, require_program};

/// Seconds between samples of the regular series.
const STEP_S: i64 = 15;
/// How long the data set lasts.
const SPAN_S: i64 = 2 * 3600;

/// One series: labels (with `__name__`) and samples `(ms, value)` in time order.
struct SeriesData {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

/// A small deterministic generator (SplitMix64), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(name: &str, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> SeriesData {
    let mut l: Vec<(String, String)> = vec![("__name__".into(), name.into())];
    l.extend(labels.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    SeriesData { labels: l, samples }
}

/// Values rounded to 3 decimals, so both text formats carry them exactly.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The data set, starting at `t0` (seconds).
fn dataset(t0: i64) -> Vec<SeriesData> {
    let mut rng = Rng(7);
    let mut out = Vec::new();
    let n = (SPAN_S / STEP_S) as usize;
    let at = |k: usize| (t0 + k as i64 * STEP_S) * 1000;
    // Counters: two jobs, two instances, two methods; one series resets twice.
    for (job, inst) in [("api", "a"), ("api", "b"), ("db", "a"), ("db", "b")] {
        for method in ["get", "post"] {
            let rate = 1.0 + rng.unit() * 10.0;
            let mut v = rng.unit() * 1000.0;
            let mut samples = Vec::with_capacity(n);
            for k in 0..=n {
                v += rate * STEP_S as f64 * (0.5 + rng.unit());
                if job == "api" && inst == "b" && method == "post" && (k == 100 || k == 333) {
                    v = rng.unit() * 5.0;
                }
                samples.push((at(k), r3(v)));
            }
            out.push(series(
                "http_requests_total",
                &[("job", job), ("instance", inst), ("method", method)],
                samples,
            ));
        }
    }
    // CPU counters per instance, cpu and mode.
    for inst in ["a", "b"] {
        for cpu in ["0", "1"] {
            for (mode, share) in [("idle", 0.7), ("user", 0.2), ("system", 0.1)] {
                let mut v = 10_000.0 * rng.unit();
                let samples = (0..=n)
                    .map(|k| {
                        v += STEP_S as f64 * share * (0.8 + 0.4 * rng.unit());
                        (at(k), r3(v))
                    })
                    .collect();
                out.push(series(
                    "node_cpu_seconds_total",
                    &[("instance", inst), ("cpu", cpu), ("mode", mode)],
                    samples,
                ));
            }
        }
    }
    // Gauges crossing zero, with different amplitudes.
    for (inst, room, amp) in [("a", "kitchen", 10.0), ("a", "hall", 3.0), ("b", "kitchen", 25.0)] {
        let phase = rng.unit() * 6.0;
        let samples = (0..=n)
            .map(|k| (at(k), r3(amp * ((k as f64) / 40.0 + phase).sin() + rng.unit())))
            .collect();
        out.push(series("temperature", &[("instance", inst), ("room", room)], samples));
    }
    // A histogram per handler.
    let bounds = ["0.1", "0.5", "1", "+Inf"];
    for handler in ["/", "/api"] {
        let mut counts = [0.0f64; 4];
        let mut sum = 0.0;
        let mut samples: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 6];
        for k in 0..=n {
            for _ in 0..(1 + (rng.next() % 20)) {
                let x = rng.unit() * rng.unit() * 2.0;
                sum += x;
                for (b, c) in bounds.iter().zip(counts.iter_mut()) {
                    let le: f64 = if *b == "+Inf" {
                        f64::INFINITY
                    } else {
                        b.parse().unwrap()
                    };
                    if x <= le {
                        *c += 1.0;
                    }
                }
            }
            for (i, c) in counts.iter().enumerate() {
                samples[i].push((at(k), *c));
            }
            samples[4].push((at(k), r3(sum)));
            samples[5].push((at(k), counts[3]));
        }
        for (i, b) in bounds.iter().enumerate() {
            out.push(series(
                "req_duration_seconds_bucket",
                &[("handler", handler), ("le", b)],
                std::mem::take(&mut samples[i]),
            ));
        }
        out.push(series(
            "req_duration_seconds_sum",
            &[("handler", handler)],
            std::mem::take(&mut samples[4]),
        ));
        out.push(series(
            "req_duration_seconds_count",
            &[("handler", handler)],
            std::mem::take(&mut samples[5]),
        ));
    }
    // Gaps longer than the lookback, a late start, an early end.
    let gappy = (0..=n)
        .filter(|k| !(120..180).contains(k) && !(300..305).contains(k))
        .map(|k| (at(k), k as f64))
        .collect();
    out.push(series("gappy", &[("id", "gaps")], gappy));
    out.push(series(
        "gappy",
        &[("id", "late")],
        (n / 2..=n).map(|k| (at(k), 2.0 * k as f64)).collect(),
    ));
    out.push(series(
        "gappy",
        &[("id", "early")],
        (0..n / 3).map(|k| (at(k), -(k as f64))).collect(),
    ));
    // Irregular scrapes (jittered, sometimes missing).
    let mut irregular = Vec::new();
    let mut t = t0 * 1000;
    let mut v = 0.0;
    while t < (t0 + SPAN_S) * 1000 {
        v += rng.unit() * 4.0;
        irregular.push((t, r3(v)));
        t += 5_000 + (rng.next() % 40_000) as i64;
    }
    out.push(series("irregular_total", &[("id", "x")], irregular));
    // Same labels under two names; info-style metrics; constants.
    for (name, base) in [("cpu_a", 1.0), ("cpu_b", 2.0)] {
        out.push(series(
            name,
            &[("instance", "a")],
            (0..=n).map(|k| (at(k), base + (k % 7) as f64)).collect(),
        ));
    }
    for (inst, version) in [("a", "1.2.3"), ("b", "2.0.1")] {
        out.push(series(
            "build_info",
            &[("instance", inst), ("version", version), ("job", "api")],
            (0..=n).map(|k| (at(k), 1.0)).collect(),
        ));
    }
    out.push(series("constant", &[], (0..=n).map(|k| (at(k), 42.0)).collect()));
    out.push(series(
        "big_small",
        &[("kind", "big")],
        (0..=n).map(|k| (at(k), 1e15 + k as f64 * 1e6)).collect(),
    ));
    out.push(series(
        "big_small",
        &[("kind", "small")],
        (0..=n).map(|k| (at(k), r3(1e-3 * k as f64))).collect(),
    ));
    out.push(series(
        "big_small",
        &[("kind", "negative")],
        (0..=n).map(|k| (at(k), -(k as f64) * 1.5)).collect(),
    ));
    out
}

/// Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Series with staleness markers, after the end of the backfilled data (Prometheus' head only
/// accepts samples newer than its last block): two runs of samples, each ended by a marker,
/// and a series whose marker is followed by a sample 20 s later.
fn stale_dataset(t0: i64) -> Vec<SeriesData> {
    let base = (t0 + SPAN_S) * 1000;
    let stale = f64::from_bits(STALE_NAN);
    let mut runs = Vec::new();
    for k in 1..=40 {
        runs.push((base + k * 15_000, k as f64));
    }
    runs.push((base + 41 * 15_000, stale));
    for k in 80..=100 {
        runs.push((base + k * 15_000, 100.0 - k as f64));
    }
    runs.push((base + 101 * 15_000, stale));
    let mut quick = Vec::new();
    for k in 1..=60 {
        quick.push((base + k * 15_000, (k % 5) as f64));
        if k == 30 {
            quick.push((base + k * 15_000 + 5_000, stale));
        }
    }
    vec![
        series("stale_demo", &[("id", "runs")], runs),
        series("stale_demo", &[("id", "quick")], quick),
    ]
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A remote-write 1.0 request (snappy-compressed protobuf `WriteRequest`) carrying `data`.
fn remote_write_body(data: &[SeriesData]) -> Vec<u8> {
    let mut req = Vec::new();
    for s in data {
        let mut ts = Vec::new();
        for (n, v) in &s.labels {
            let mut l = Vec::new();
            len_field(&mut l, 0x0a, n.as_bytes());
            len_field(&mut l, 0x12, v.as_bytes());
            len_field(&mut ts, 0x0a, &l);
        }
        for (t, v) in &s.samples {
            let mut smp = vec![0x09];
            smp.extend_from_slice(&v.to_bits().to_le_bytes());
            smp.push(0x10);
            varint(&mut smp, *t as u64);
            len_field(&mut ts, 0x12, &smp);
        }
        len_field(&mut req, 0x0a, &ts);
    }
    snap::raw::Encoder::new().compress_vec(&req).expect("snappy")
}

const RW_HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

fn fmt_value(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn label_block(labels: &[(String, String)]) -> (String, String) {
    let name = labels[0].1.clone();
    let rest: Vec<String> = labels[1..]
        .iter()
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    (
        name,
        if rest.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", rest.join(","))
        },
    )
}

/// OpenMetrics text for promtool: samples grouped by metric name, timestamps in seconds.
fn openmetrics(data: &[SeriesData]) -> String {
    let mut by_name: BTreeMap<String, Vec<&SeriesData>> = BTreeMap::new();
    for s in data {
        by_name.entry(s.labels[0].1.clone()).or_default().push(s);
    }
    let mut out = String::new();
    for (name, list) in by_name {
        let _ = writeln!(out, "# TYPE {name} unknown");
        for s in list {
            let (n, l) = label_block(&s.labels);
            for (t, v) in &s.samples {
                let _ = writeln!(out, "{n}{l} {} {}.{:03}", fmt_value(*v), t / 1000, t % 1000);
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Prometheus text with millisecond timestamps, for Strata's `/api/v1/import/prometheus`.
fn prometheus_text(data: &[SeriesData]) -> String {
    let mut out = String::new();
    for s in data {
        let (n, l) = label_block(&s.labels);
        for (t, v) in &s.samples {
            let _ = writeln!(out, "{n}{l} {} {t}", fmt_value(*v));
        }
    }
    out
}

/// Minimal HTTP GET returning status and body.
fn get(base: &str, path: &str, params: &[(&str, String)]) -> (u16, serde_json::Value) {
    let mut req = ureq::get(format!("{base}{path}"));
    for (k, v) in params {
        req = req.query(*k, v);
    }
    let resp = req.config().http_status_as_error(false).build().call();
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
        }
        Err(e) => (0, serde_json::Value::String(e.to_string())),
    }
}

fn expand(case: &str, t0: i64) -> String {
    let mut out = String::new();
    let mut rest = case;
    while let Some(i) = rest.find("{t0") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 3..i + j];
        let add: i64 = inner.strip_prefix('+').and_then(|s| s.parse().ok()).unwrap_or(0);
        let _ = write!(out, "{}", t0 + add);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

fn floats_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    diff <= 1e-9 * a.abs().max(b.abs()) || diff < 1e-12
}

fn value_of(v: &serde_json::Value) -> Option<f64> {
    let s = v.as_str()?;
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        s => s.parse().ok(),
    }
}

/// A comparable form of one answer: type and, per label set, its points.
#[derive(Debug)]
enum Answer {
    Error(String),
    Scalar(f64, f64),
    Str(String),
    Series(String, Vec<(String, Vec<(f64, f64)>)>),
}

fn answer(status: u16, body: &serde_json::Value) -> Answer {
    if body["status"] != "success" {
        return Answer::Error(format!("{status} {}", body["errorType"]));
    }
    let data = &body["data"];
    let ty = data["resultType"].as_str().unwrap_or("").to_owned();
    let point = |p: &serde_json::Value| (p[0].as_f64().unwrap_or(f64::NAN), value_of(&p[1]).unwrap_or(f64::MIN));
    match ty.as_str() {
        "scalar" => {
            let (t, v) = point(&data["result"]);
            Answer::Scalar(t, v)
        }
        "string" => Answer::Str(data["result"][1].as_str().unwrap_or("").to_owned()),
        _ => {
            let mut out = Vec::new();
            for s in data["result"].as_array().into_iter().flatten() {
                let labels = s["metric"].as_object().map(|m| {
                    let mut v: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    v.sort();
                    v.join(",")
                });
                let points = match s.get("values") {
                    Some(vals) => vals.as_array().into_iter().flatten().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                out.push((labels.unwrap_or_default(), points));
            }
            Answer::Series(ty, out)
        }
    }
}

/// Why two answers differ, or `None` when they match. `ordered` compares series order too.
fn differ(p: &Answer, s: &Answer, ordered: bool) -> Option<String> {
    match (p, s) {
        (Answer::Error(a), Answer::Error(b)) => (a != b).then(|| format!("errors differ: {a} vs {b}")),
        (Answer::Scalar(t1, v1), Answer::Scalar(t2, v2)) => {
            (t1 != t2 || !floats_equal(*v1, *v2)).then(|| format!("scalar {t1},{v1} vs {t2},{v2}"))
        }
        (Answer::Str(a), Answer::Str(b)) => (a != b).then(|| format!("string {a:?} vs {b:?}")),
        (Answer::Series(t1, a), Answer::Series(t2, b)) => {
            if t1 != t2 {
                return Some(format!("type {t1} vs {t2}"));
            }
            if a.len() != b.len() {
                return Some(format!(
                    "{} series vs {}: {:?} vs {:?}",
                    a.len(),
                    b.len(),
                    a.iter().map(|x| &x.0).collect::<Vec<_>>(),
                    b.iter().map(|x| &x.0).collect::<Vec<_>>()
                ));
            }
            let (mut a, mut b): (Vec<_>, Vec<_>) = (a.iter().collect(), b.iter().collect());
            if !ordered {
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
            }
            for (x, y) in a.iter().zip(&b) {
                if x.0 != y.0 {
                    return Some(format!("labels {} vs {}", x.0, y.0));
                }
                if x.1.len() != y.1.len() {
                    return Some(format!("{}: {} points vs {}", x.0, x.1.len(), y.1.len()));
                }
                for (pa, pb) in x.1.iter().zip(&y.1) {
                    if pa.0 != pb.0 || !floats_equal(pa.1, pb.1) {
                        return Some(format!("{}: point {pa:?} vs {pb:?}", x.0));
                    }
                }
            }
            None
        }
        (a, b) => Some(format!("{a:?} vs {b:?}")),
    }
}

fn wait_ready(base: &str, what: &str, at: i64, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(
            base,
            "/api/v1/query",
            &[("query", "count(constant)".into()), ("time", at.to_string())],
        );
        if status == 200 && body["data"]["result"][0]["value"][1] == "1" {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never answered: {body}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One request of a case: a name for messages, the parameters, the API path.
type Run<'a> = (String, Vec<(&'a str, String)>, &'a str);

fn load_cases(path: &Path) -> Vec<String> {
    strata_e2e::read_to_string(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn promql_matches_prometheus() {
    let promtool = require_program("promtool");
    require_program("prometheus");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Whole hours, ending at least an hour ago: inside Strata's retention, and the backfilled
    // blocks never overlap Prometheus' head.
    let t0 = (now - SPAN_S - 2 * 3600) / 3600 * 3600;
    let data = dataset(t0);

    // Prometheus: backfill into a data directory, then start on it.
    let work = tempfile::tempdir().unwrap();
    let om = work.path().join("data.om");
    std::fs::write(&om, openmetrics(&data)).unwrap();
    let prom_data = work.path().join("prom");
    let out = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&prom_data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let prom_port = free_port();
    let config = work.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let prom = Peer::start(
        "prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", prom_data.display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--storage.tsdb.retention.time=30d".into(),
            "--web.enable-remote-write-receiver".into(),
        ],
    );
    let prom_base = format!("http://127.0.0.1:{prom_port}");

    // Strata: import the same samples.
    let node = Strata::single();
    let text = prometheus_text(&data);
    let reply = node.post("/api/v1/import/prometheus", "text/plain", text.as_bytes());
    assert_eq!(reply.status, 204, "{}", reply.body);
    let strata_base = node.base_url();
    wait_ready(&prom_base, "prometheus", t0 + 3600, &|| prom.logs());
    wait_ready(&strata_base, "strata", t0 + 3600, &|| node.logs());
    // Staleness markers only travel by remote write.
    let rw = remote_write_body(&stale_dataset(t0));
    let reply = node.post_with("/api/v1/write", &RW_HEADERS, &rw);
    assert!(
        reply.status == 204 || reply.status == 200,
        "strata remote write: {} {}",
        reply.status,
        reply.body
    );
    let mut req = ureq::post(format!("{prom_base}/api/v1/write"));
    for (k, v) in RW_HEADERS {
        req = req.header(k, v);
    }
    let resp = req.config().http_status_as_error(false).build().send(&rw[..]);
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            assert!(
                status == 204 || status == 200,
                "prometheus remote write: {status} {body}\n{}",
                prom.logs()
            );
        }
        Err(e) => panic!("prometheus remote write: {e}"),
    }

    // The remote-written series are visible on both before the comparison starts.
    for (base, what) in [(&prom_base, "prometheus"), (&strata_base, "strata")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = get(
                base,
                "/api/v1/query",
                &[
                    ("query", "count(stale_demo)".into()),
                    ("time", (t0 + SPAN_S + 300).to_string()),
                ],
            );
            if body["data"]["result"][0]["value"][1] == "2" {
                break;
            }
            assert!(Instant::now() < deadline, "{what} does not show stale_demo: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let cases_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("promql/cases.promql");
    let cases = load_cases(&cases_path);
    assert!(
        cases.len() >= 100,
        "only {} cases in {}",
        cases.len(),
        cases_path.display()
    );
    let instants = [
        t0 + 1800 + 7,
        t0 + 3600,
        t0 + SPAN_S,
        t0 + SPAN_S + 200,
        t0 + SPAN_S + 460,
        t0 + SPAN_S + 630,
    ];
    let range = [
        ("start", (t0 + 600).to_string()),
        ("end", (t0 + SPAN_S + 1800).to_string()),
        ("step", "60".to_string()),
    ];
    let began = Instant::now();
    let mut failures = Vec::new();
    let mut checks = 0;
    let mut empty = 0;
    for case in &cases {
        let q = expand(case, t0);
        let ordered = q.starts_with("sort");
        let mut runs: Vec<Run<'_>> = instants
            .iter()
            .map(|t| {
                (
                    format!("instant@{t}"),
                    vec![("query", q.clone()), ("time", t.to_string())],
                    "/api/v1/query",
                )
            })
            .collect();
        let mut rp = vec![("query", q.clone())];
        rp.extend(range.iter().cloned());
        runs.push(("range".into(), rp, "/api/v1/query_range"));
        for (what, params, path) in runs {
            checks += 1;
            let (ps, pb) = get(&prom_base, path, &params);
            let (ss, sb) = get(&strata_base, path, &params);
            let (pa, sa) = (answer(ps, &pb), answer(ss, &sb));
            if matches!(&pa, Answer::Series(_, v) if v.is_empty()) {
                empty += 1;
            }
            if let Some(why) = differ(&pa, &sa, ordered && what != "range") {
                let detail = match (&pa, &sa) {
                    (Answer::Error(_), _) | (_, Answer::Error(_)) => {
                        format!(" [prom: {} | strata: {}]", pb["error"], sb["error"])
                    }
                    _ => String::new(),
                };
                failures.push(format!("{case}  ({what}): {why}{detail}"));
            }
        }
    }
    let failed_cases: std::collections::BTreeSet<&str> =
        failures.iter().map(|f| f.split("  (").next().unwrap_or("")).collect();
    // Empty answers match trivially; most comparisons must carry data.
    assert!(
        empty * 2 < checks,
        "{empty} of {checks} answers are empty: is the data loaded?"
    );
    eprintln!(
        "promql_compat: {} of {} cases match ({checks} comparisons, {empty} empty) in {:.1} s",
        cases.len() - failed_cases.len(),
        cases.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} comparisons differ:\n{}",
        failures.len(),
        checks,
        failures.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}
