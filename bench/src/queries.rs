//! The dashboard suite: the queries a node-exporter dashboard sends, over the Prometheus HTTP API.

use std::time::{Duration, Instant};

use crate::http::Http;
use crate::stats;

/// What a query asks for.
#[derive(Debug, Clone)]
pub enum Ask {
    /// `/api/v1/query` at the end of the data.
    Instant(String),
    /// `/api/v1/query_range` over the last hour of data (or all of it).
    Range(String),
    /// `/api/v1/label/<name>/values`.
    LabelValues(String),
    /// `/api/v1/series?match[]=<selector>`.
    Series(String),
}

/// One query of the suite.
#[derive(Debug, Clone)]
pub struct Query {
    /// Short name for the table.
    pub name: &'static str,
    /// The request.
    pub ask: Ask,
}

/// The suite, in the order a dashboard would load.
pub fn suite() -> Vec<Query> {
    let q = |name, ask| Query { name, ask };
    let i = |s: &str| Ask::Instant(s.to_owned());
    let r = |s: &str| Ask::Range(s.to_owned());
    vec![
        q(
            "rate+sum by, instant",
            i(r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#),
        ),
        q(
            "rate+sum by, range",
            r(r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#),
        ),
        q(
            "topk rate, range",
            r("topk(10, rate(node_network_receive_bytes_total[5m]))"),
        ),
        q(
            "histogram_quantile, range",
            r("histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))"),
        ),
        q(
            "ratio of sums, instant",
            i(
                r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / sum by (instance) (rate(node_cpu_seconds_total[5m]))"#,
            ),
        ),
        q(
            "ratio filesystem, instant",
            i(r#"1 - node_filesystem_avail_bytes{fstype!="tmpfs"} / node_filesystem_size_bytes{fstype!="tmpfs"}"#),
        ),
        q(
            "ratio memory, range",
            r("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
        ),
        q(
            "regex selectors, range",
            r(
                r#"sum by (device) (rate(node_disk_written_bytes_total{device=~"nvme.*|sd[a-c]",instance=~"10\\.1\\.0\\.1.*"}[5m]))"#,
            ),
        ),
        q("count by, instant", i("count by (mode) (node_cpu_seconds_total)")),
        q(
            "topk max_over_time, instant",
            i("topk(5, max_over_time(node_load15[1h]))"),
        ),
        q("label values instance", Ask::LabelValues("instance".to_owned())),
        q("label values __name__", Ask::LabelValues("__name__".to_owned())),
        q("series of a metric", Ask::Series("node_load1".to_owned())),
        q(
            "series of an instance",
            Ask::Series(r#"{instance="10.1.0.7:9100"}"#.to_owned()),
        ),
    ]
}

/// The time window the suite looks at (seconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// First sample.
    pub start: i64,
    /// Just after the last sample: instant queries are evaluated here.
    pub end: i64,
}

impl Window {
    /// Range queries cover the last hour of data at most, with about 120 points, on a 15 s grid.
    fn range(&self) -> (i64, i64, i64) {
        let start = self.start.max(self.end - 3600);
        let step = (((self.end - start) / 120).max(15) / 15) * 15;
        (start, self.end, step)
    }
}

/// How one query went on one target.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Latency of each successful run.
    pub latencies: Vec<Duration>,
    /// Series (or values) in the last successful answer.
    pub result_len: Option<usize>,
    /// The first failure, if any run failed.
    pub error: Option<String>,
    /// Failed runs.
    pub failures: usize,
}

impl QueryResult {
    /// Median latency in milliseconds.
    pub fn median_ms(&self) -> Option<f64> {
        stats::median(&self.ms())
    }

    /// 90th percentile latency in milliseconds.
    pub fn p90_ms(&self) -> Option<f64> {
        stats::percentile(&self.ms(), 0.9)
    }

    fn ms(&self) -> Vec<f64> {
        self.latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect()
    }
}

/// Sends `query` once; the answer's length on success.
fn once(http: &Http, base: &str, query: &Query, w: Window) -> Result<usize, String> {
    let (start, end, step) = w.range();
    let (start, end, step, now) = (start.to_string(), end.to_string(), step.to_string(), w.end.to_string());
    let reply = match &query.ask {
        Ask::Instant(expr) => http.get(&format!("{base}/api/v1/query"), &[("query", expr), ("time", &now)]),
        Ask::Range(expr) => http.get(
            &format!("{base}/api/v1/query_range"),
            &[("query", expr), ("start", &start), ("end", &end), ("step", &step)],
        ),
        Ask::LabelValues(name) => http.get(
            &format!("{base}/api/v1/label/{name}/values"),
            &[("start", &w.start.to_string()), ("end", &now)],
        ),
        Ask::Series(selector) => http.get(
            &format!("{base}/api/v1/series"),
            &[("match[]", selector), ("start", &w.start.to_string()), ("end", &now)],
        ),
    }?;
    let short = || reply.body.chars().take(200).collect::<String>();
    if !reply.ok() {
        return Err(format!("HTTP {}: {}", reply.status, short()));
    }
    let json: serde_json::Value =
        serde_json::from_str(&reply.body).map_err(|e| format!("not JSON ({e}): {}", short()))?;
    if json["status"] != "success" {
        return Err(format!("status not success: {}", short()));
    }
    let data = &json["data"];
    let len = data["result"].as_array().or_else(|| data.as_array()).map(Vec::len);
    len.ok_or_else(|| format!("no result array: {}", short()))
}

/// Runs `query` once to warm up, then `reps` timed times.
pub fn measure(http: &Http, base: &str, query: &Query, window: Window, reps: usize) -> QueryResult {
    let mut result = QueryResult::default();
    for rep in 0..=reps {
        let started = Instant::now();
        match once(http, base, query, window) {
            Ok(len) => {
                if rep > 0 {
                    result.latencies.push(started.elapsed());
                }
                result.result_len = Some(len);
            }
            Err(e) => {
                result.failures += 1;
                result.error.get_or_insert(e);
            }
        }
    }
    result
}

/// Sends an instant query and returns the first value of its answer, if any.
pub fn scalar(http: &Http, base: &str, expr: &str, time: i64) -> Result<Option<f64>, String> {
    let reply = http.get(
        &format!("{base}/api/v1/query"),
        &[("query", expr), ("time", &time.to_string())],
    )?;
    if !reply.ok() {
        return Err(format!(
            "HTTP {}: {}",
            reply.status,
            reply.body.chars().take(200).collect::<String>()
        ));
    }
    let json: serde_json::Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
    Ok(json["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok()))
}
