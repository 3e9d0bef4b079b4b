//! The select role's non-PromQL endpoints and the web UI, on real processes: two storage nodes
//! with replication factor 2, so every series exists twice and must still come out once.
//! Export, TSDB status, series/labels/label values and `/admin/tenants` per tenant, tenants
//! apart from each other, and the UI page with its API calls at `/api/v1/...` (tenant 0:0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_e2e::{Reply, Strata, free_port};
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

const SAMPLES: i64 = 5;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000
}

fn request(metric: &str, count: usize, end_ms: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..count)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: metric.into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: format!("host-{i}"),
                    },
                ],
                samples: (0..SAMPLES)
                    .map(|k| Sample {
                        value: (i as i64 * 10 + k) as f64,
                        timestamp: end_ms - (SAMPLES - 1 - k) * 10_000,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    }
}

fn write(insert: &Strata, tenant: &str, req: &WriteRequest) {
    let r = insert.post_with(
        &format!("/insert/{tenant}/prometheus/api/v1/write"),
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(req),
    );
    assert_eq!(r.status, 204, "{}", r.body);
}

fn ok_json(r: &Reply) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn export_lines(r: &Reply) -> Vec<serde_json::Value> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn export_status_tenants_and_the_ui_work_through_select() {
    let nodes: Vec<(Strata, u16, u16)> = (0..2)
        .map(|_| {
            let (ip, sp) = (free_port(), free_port());
            let n = Strata::builder()
                .role("storage")
                .arg("--insert-listen-addr")
                .arg(format!("127.0.0.1:{ip}"))
                .arg("--select-listen-addr")
                .arg(format!("127.0.0.1:{sp}"))
                .start();
            (n, ip, sp)
        })
        .collect();
    let list = |f: fn(&(Strata, u16, u16)) -> u16| {
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", f(n)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let insert = Strata::builder()
        .role("insert")
        .arg("--storage-node")
        .arg(list(|n| n.1))
        .arg("--replication-factor")
        .arg("2")
        .start();
    let select = Strata::builder()
        .role("select")
        .arg("--storage-node")
        .arg(list(|n| n.2))
        .arg("--replication-factor")
        .arg("2")
        .start();

    let end = now_ms();
    write(&insert, "1", &request("api_a", 10, end));
    write(&insert, "2:3", &request("api_b", 4, end));
    write(&insert, "0", &request("ui_metric", 3, end));
    let t = end / 1000;
    for (tenant, metric, n) in [("1", "api_a", 10), ("2:3", "api_b", 4), ("0", "ui_metric", 3)] {
        let r = select.poll(
            &format!("/select/{tenant}/prometheus/api/v1/query?query=count({metric})&time={t}"),
            Duration::from_secs(20),
            |r| r.status == 200 && r.json()["data"]["result"][0]["value"][1] == n.to_string().as_str(),
        );
        assert_eq!(
            r.json()["data"]["result"][0]["value"][1],
            n.to_string().as_str(),
            "{}",
            r.body
        );
    }

    // Export: every series once, every sample once, though each is stored on both nodes.
    let lines = export_lines(&select.get("/select/1/prometheus/api/v1/export?match[]=api_a"));
    assert_eq!(lines.len(), 10);
    for l in &lines {
        assert_eq!(l["metric"]["__name__"], "api_a");
        assert_eq!(l["values"].as_array().unwrap().len(), SAMPLES as usize, "{l}");
        assert_eq!(l["timestamps"].as_array().unwrap().len(), SAMPLES as usize);
    }
    // A tenant's export holds only its own series.
    let lines = export_lines(&select.get("/select/2:3/prometheus/api/v1/export?match[]=%7B__name__%3D~%22.%2B%22%7D"));
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["metric"]["__name__"] == "api_b"));
    assert_eq!(select.get("/select/1/prometheus/api/v1/export").status, 400);

    // Cardinality: counts per tenant, replicas counted once.
    let v = ok_json(&select.get("/select/1/prometheus/api/v1/status/tsdb"));
    assert_eq!(v["data"]["totalSeries"], 10, "{v}");
    assert_eq!(
        v["data"]["seriesCountByMetricName"],
        serde_json::json!([{"name": "api_a", "value": 10}])
    );
    assert_eq!(v["isPartial"], false);

    // Series, labels and label values never cross tenants.
    let v = ok_json(&select.get("/select/2:3/prometheus/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D"));
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    let v = ok_json(&select.get("/select/2:3/prometheus/api/v1/label/__name__/values"));
    assert_eq!(v["data"], serde_json::json!(["api_b"]));
    let v = ok_json(&select.get("/select/1/prometheus/api/v1/label/instance/values"));
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    let v = ok_json(&select.get("/select/9/prometheus/api/v1/labels"));
    assert_eq!(v["data"], serde_json::json!([]));

    // Every tenant that wrote is listed.
    let v = ok_json(&select.get("/admin/tenants"));
    assert_eq!(v["data"], serde_json::json!(["0:0", "1:0", "2:3"]));

    // The web UI is served at / and its API calls (tenant 0:0) answer at /api/v1/....
    let page = select.get("/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.as_deref().unwrap_or("").starts_with("text/html"));
    assert_eq!(select.get("/ui/app.js").status, 200);
    let v = ok_json(&select.get("/api/v1/label/__name__/values"));
    assert_eq!(v["data"], serde_json::json!(["ui_metric"]));
    let v = ok_json(&select.get(&format!("/api/v1/query?query=sum(ui_metric)&time={t}")));
    let want: i64 = (0..3).map(|i| i * 10 + SAMPLES - 1).sum();
    assert_eq!(v["data"]["result"][0]["value"][1], want.to_string().as_str());
    let v = ok_json(&select.get(&format!(
        "/api/v1/query_range?query=ui_metric&start={}&end={t}&step=10",
        t - 40
    )));
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 3);
    let v = ok_json(&select.get("/api/v1/series?match[]=ui_metric"));
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    let v = ok_json(&select.get("/api/v1/labels"));
    assert_eq!(v["data"], serde_json::json!(["__name__", "instance"]));
    let v = ok_json(&select.get("/api/v1/status/tsdb"));
    assert_eq!(v["data"]["totalSeries"], 3);
    assert_eq!(ok_json(&select.get("/api/v1/status/buildinfo"))["status"], "success");
    let lines = export_lines(&select.get("/prometheus/api/v1/export?match[]=ui_metric"));
    assert_eq!(lines.len(), 3);
}

#[test]
fn vmui_redirects_to_the_ui_on_select() {
    let (ip, sp) = (free_port(), free_port());
    let _storage = Strata::builder()
        .role("storage")
        .arg("--insert-listen-addr")
        .arg(format!("127.0.0.1:{ip}"))
        .arg("--select-listen-addr")
        .arg(format!("127.0.0.1:{sp}"))
        .start();
    let select = Strata::builder()
        .role("select")
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{sp}"))
        .start();
    // The harness's client follows redirects: /vmui lands on the UI page.
    let r = select.get("/vmui");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<html") || r.body.contains("<!doctype") || r.body.contains("<!DOCTYPE"));
}
