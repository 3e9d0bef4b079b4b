//! Real clients writing to Strata: Prometheus 2.42 and vmagent 1.79 from Debian
//! (scripts/install-peers installs them). Each scrapes Strata's own /metrics and remote-writes
//! what it scraped to Strata; the test reads the series back through the query API and compares
//! them with what the client itself saw.

use std::time::Duration;

use strata_e2e::{Peer, Strata, free_port};

/// A scrape config for one static target, scraped every second.
fn scrape_config(target_port: u16, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{extra}scrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n        labels:\n          env: e2e\n"
    )
}

/// Waits until Strata answers `query` with a non-empty vector and returns the first value.
fn wait_for_value(node: &Strata, query: &str, who: &dyn Fn() -> String) -> f64 {
    let path = format!(
        "/api/v1/query?query={}",
        query
            .replace(' ', "%20")
            .replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
    );
    let reply = node.poll(&path, Duration::from_secs(60), |r| {
        r.status == 200 && r.json()["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
    });
    let json = reply.json();
    let value = json["data"]["result"][0]["value"][1].as_str().unwrap_or_else(|| {
        panic!(
            "no result for {query} after 60 s: {}\nclient logs:\n{}\nstrata logs:\n{}",
            reply.body,
            who(),
            node.logs()
        )
    });
    value.parse().unwrap()
}

#[test]
fn prometheus_remote_writes_what_it_scrapes() {
    let node = Strata::single();
    let prom_port = free_port();
    let remote = format!(
        "remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
        node.base_url()
    );
    let config = scrape_config(node.port(), &remote);
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let prometheus = Peer::start(
        "prometheus",
        &[
            format!("--config.file={}", config_path.display()),
            "--storage.tsdb.path={dir}/data".into(),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
    );
    let logs = || prometheus.logs();

    let up = wait_for_value(&node, "up{job=\"strata\",env=\"e2e\"}", &logs);
    assert_eq!(up, 1.0);
    // A value that does not change: Strata's start time as Prometheus scraped it, compared
    // with what Strata itself reports.
    let start = wait_for_value(&node, "process_start_time_seconds{job=\"strata\"}", &logs);
    let own = node.get("/metrics").body;
    let own_start: f64 = own
        .lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))
        .expect("no start time in /metrics")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(start, own_start);
    // The remote-write requests were counted as successes.
    let ok = wait_for_value(
        &node,
        "sum(strata_http_requests_total{path=\"/api/v1/write\",code=\"204\"})",
        &logs,
    );
    assert!(ok >= 1.0);
}

#[test]
fn vmagent_remote_writes_what_it_scrapes() {
    let node = Strata::single();
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("scrape.yml");
    std::fs::write(&config_path, scrape_config(node.port(), "")).unwrap();
    let vmagent = Peer::start(
        "vmagent",
        &[
            format!("-promscrape.config={}", config_path.display()),
            format!("-remoteWrite.url={}/api/v1/write", node.base_url()),
            "-remoteWrite.tmpDataPath={dir}/queue".into(),
            "-remoteWrite.flushInterval=200ms".into(),
            format!("-httpListenAddr=127.0.0.1:{}", free_port()),
        ],
    );
    let logs = || vmagent.logs();
    let up = wait_for_value(&node, "up{job=\"strata\",env=\"e2e\"}", &logs);
    assert_eq!(up, 1.0);
    let samples = wait_for_value(&node, "scrape_samples_scraped{job=\"strata\"}", &logs);
    assert!(
        samples > 10.0,
        "Strata's /metrics has more than 10 samples, got {samples}"
    );
}

#[test]
fn promtool_queries_strata() {
    let node = Strata::single();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let lines: String = (0..3)
        .map(|i| {
            format!(
                "{{\"metric\":{{\"__name__\":\"promtool_demo\",\"shard\":\"{i}\"}},\"values\":[{},{}],\"timestamps\":[{},{}]}}\n",
                i + 1,
                i + 2,
                (now_s - 120) * 1000,
                (now_s - 60) * 1000
            )
        })
        .collect();
    assert_eq!(
        node.post("/api/v1/import", "application/json", lines.as_bytes()).status,
        204
    );
    node.poll(
        "/api/v1/query?query=count(promtool_demo)",
        Duration::from_secs(10),
        |r| r.body.contains("\"3\""),
    );

    let promtool = strata_e2e::require_program("promtool");
    let instant = std::process::Command::new(&promtool)
        .args(["query", "instant", &node.base_url(), "sum(promtool_demo)"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&instant.stdout);
    assert!(
        instant.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&instant.stderr)
    );
    // The newest values are 2, 3 and 4.
    assert!(out.contains("=> 9 @"), "{out}");

    let range = std::process::Command::new(&promtool)
        .args([
            "query",
            "range",
            "--start",
            &(now_s - 180).to_string(),
            "--end",
            &now_s.to_string(),
            "--step",
            "30s",
            &node.base_url(),
            "promtool_demo{shard=\"1\"}",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&range.stdout);
    assert!(
        range.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&range.stderr)
    );
    assert!(out.contains("promtool_demo{shard=\"1\"}"), "{out}");
    assert!(out.contains("2 @[") && out.contains("3 @["), "{out}");
}
