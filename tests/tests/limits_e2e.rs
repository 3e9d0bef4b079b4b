//! Query and tenant limits against the real binary (issue #12, item 3): regex caps, per-tenant
//! query limits, per-tenant ingestion rates (429 with `Retry-After`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_e2e::{Reply, Strata, free_port};

fn config_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("appliance.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A counter's value in a node's /metrics (0 when absent).
fn counter(node: &Strata, series: &str) -> f64 {
    node.get("/metrics")
        .body
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn assert_error(reply: &Reply, status: u16, error_type: &str, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "error", "{}", reply.body);
    assert_eq!(body["errorType"], error_type, "{}", reply.body);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "want {needle:?} in {message:?}");
}

/// 422 from the series limit, whether the engine or the storage search hit it first.
fn assert_series_limit(reply: &Reply, limit: usize) {
    assert_eq!(reply.status, 422, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["errorType"], "execution", "{}", reply.body);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("(limit: {limit})")) || message.contains(&format!("more than {limit} series")),
        "{message}"
    );
}

#[test]
fn regex_bombs_and_long_regexes_are_refused_and_the_node_still_answers() {
    let node = Strata::single();
    let r = node.post("/api/v1/import/prometheus", "text/plain", b"rx_metric{job=\"a\"} 1\n");
    assert_eq!(r.status, 204, "{}", r.body);

    for bomb in ["a{1000}{1000}", "(a{1000}){1000}", "(\\w{100}){100}"] {
        let started = Instant::now();
        // Backquotes: PromQL takes `\w` as written there.
        let q = format!("rx_metric{{job=~`{bomb}`}}");
        let r = node.get(&format!("/api/v1/query?query={}", enc(&q)));
        // A figure for the log, not an assertion: timing depends on the machine.
        eprintln!("{bomb}: refused in {:?}", started.elapsed());
        assert_error(&r, 400, "bad_data", "limits.max_regex_compiled_size");
        let r = node.get(&format!("/api/v1/series?match[]={}", enc(&q)));
        assert_error(&r, 400, "bad_data", "limits.max_regex_compiled_size");
    }
    let long = format!("rx_metric{{job=~\"{}\"}}", "a|".repeat(5000));
    let r = node.get(&format!("/api/v1/query?query={}", enc(&long)));
    assert_error(&r, 400, "bad_data", "limits.max_regex_length");
    let replace = "label_replace(rx_metric, \"x\", \"$1\", \"job\", \"(a{1000}){1000}\")";
    let r = node.get(&format!("/api/v1/query?query={}", enc(replace)));
    assert_error(&r, 422, "execution", "limits.max_regex_compiled_size");

    assert!(counter(&node, "strata_query_regex_rejected_total{reason=\"compiled_size\"}") >= 7.0);
    assert!(counter(&node, "strata_query_regex_rejected_total{reason=\"length\"}") >= 1.0);
    // Still serving, ordinary regexes included.
    let q = enc("rx_metric{job=~\"a|b\"}");
    let r = node.poll(&format!("/api/v1/query?query={q}"), Duration::from_secs(10), |r| {
        r.status == 200 && r.body.contains("rx_metric")
    });
    assert!(r.body.contains("rx_metric"), "{}", r.body);
    assert_eq!(node.get("/health").status, 200);
}

#[test]
fn a_tenant_series_limit_refuses_what_the_default_allows() {
    let dir = tempfile::tempdir().unwrap();
    // The single role is tenant 0:0; "0" is the same tenant. The regex cap is lowered too.
    let config = config_file(
        &dir,
        "[[limits.tenants]]\ntenant = \"0\"\nmax_query_series = 2\nmax_regex_length = 16\n",
    );
    let limited = Strata::builder().arg("--config").arg(config.to_str().unwrap()).start();
    let open = Strata::single();
    let body: String = (0..5).map(|i| format!("sl_metric{{i=\"{i}\"}} {i}\n")).collect();
    for node in [&limited, &open] {
        let r = node.post("/api/v1/import/prometheus", "text/plain", body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let query = format!("/api/v1/query?query={}", enc("count(sl_metric)"));
    let r = open.poll(&query, Duration::from_secs(10), |r| r.body.contains("\"5\""));
    assert!(r.body.contains("\"5\""), "the default allows 5 series: {}", r.body);
    let r = limited.poll(&query, Duration::from_secs(10), |r| r.status == 422);
    assert_series_limit(&r, 2);
    // Within the tenant's limit, queries still work.
    let one = format!("/api/v1/query?query={}", enc("sl_metric{i=\"3\"}"));
    let r = limited.poll(&one, Duration::from_secs(10), |r| r.body.contains("sl_metric"));
    assert_eq!(r.status, 200, "{}", r.body);
    // The tenant's regex cap (16 bytes) applies, the default (8 KiB) does not refuse.
    let regex = format!("/api/v1/query?query={}", enc("sl_metric{i=~\"0|1|2|3|4|5|6|7|8\"}"));
    assert_error(&limited.get(&regex), 400, "bad_data", "limits.max_regex_length");
    assert_eq!(open.get(&regex).status, 200);
}

#[test]
fn cluster_tenant_over_its_rate_gets_429_while_others_are_not_limited() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        r#"
[[limits.tenants]]
tenant = "42:*"
max_ingest_samples_per_second = 10
max_query_series = 2

[[limits.tenants]]
tenant = "*"
"#,
    );
    let config = config.to_str().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (insert_rpc, select_rpc) = (free_port(), free_port());
    let _storage = Strata::builder()
        .role("storage")
        .data_dir(data.path())
        .arg("--insert-listen-addr")
        .arg(format!("127.0.0.1:{insert_rpc}"))
        .arg("--select-listen-addr")
        .arg(format!("127.0.0.1:{select_rpc}"))
        .start();
    let insert = Strata::builder()
        .role("insert")
        .arg("--config")
        .arg(config)
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{insert_rpc}"))
        .start();
    let select = Strata::builder()
        .role("select")
        .arg("--config")
        .arg(config)
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{select_rpc}"))
        .start();

    // 100 samples: the first request of tenant 42:1 is admitted (a full bucket), and puts the
    // bucket ~9 s into debt at 10 samples/s.
    let body: String = (0..100).map(|i| format!("rate_metric{{i=\"{i}\"}} {i}\n")).collect();
    let path = |tenant: &str| format!("/insert/{tenant}/prometheus/api/v1/import/prometheus");
    let r = insert.post(&path("42:1"), "text/plain", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.body);
    let r = insert.post(&path("42:1"), "text/plain", body.as_bytes());
    assert_error(&r, 429, "unavailable", "max_ingest_samples_per_second");
    let retry: u64 = r.header_values("retry-after")[0].parse().unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    // The same tenant spelled with an escaped colon is the same bucket.
    let r = insert.post(&path("42%3A1"), "text/plain", body.as_bytes());
    assert_eq!(r.status, 429, "{}", r.body);
    // Another project of the same pattern has its own bucket; other tenants have no rate.
    let r = insert.post(&path("42:2"), "text/plain", b"rate_metric 1\n");
    assert_eq!(r.status, 204, "{}", r.body);
    for _ in 0..5 {
        let r = insert.post(&path("7"), "text/plain", body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.body);
    }
    assert_eq!(
        counter(&insert, "strata_tenant_ingest_rejected_total{tenant=\"42:*\"}"),
        2.0
    );

    // Select: tenant 42:1's series limit (2) refuses what tenant 7 may run.
    let query = format!("/prometheus/api/v1/query?query={}", enc("count(rate_metric)"));
    let r = select.poll(&format!("/select/7{query}"), Duration::from_secs(20), |r| {
        r.body.contains("\"100\"")
    });
    assert!(r.body.contains("\"100\""), "{}", r.body);
    let r = select.poll(&format!("/select/42:1{query}"), Duration::from_secs(20), |r| {
        r.status == 422
    });
    assert_series_limit(&r, 2);
    // Export follows the tenant's series limit too.
    let export = format!("/prometheus/api/v1/export?{}", enc_param("match[]", "rate_metric"));
    let r = select.get(&format!("/select/7{export}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.lines().count(), 100, "{}", r.body);
    let r = select.get(&format!("/select/42:1{export}"));
    assert!(
        r.status >= 400,
        "tenant 42:1 exported past its series limit: {}",
        r.status
    );
    assert!(r.body.contains("series"), "{}", r.body);
    assert_eq!(insert.get("/health").status, 200);
}

fn enc_param(name: &str, value: &str) -> String {
    format!("{}={}", enc(name), enc(value))
}
