//! The cluster roles as real processes on 127.0.0.1: three storage nodes, an insert node with
//! replication_factor 2, and select nodes with factor 2, factor 1 and factor 1 denying partial
//! responses. Data written through insert reads back through select; `kill -9` of a storage
//! node keeps writes working and factor-2 reads complete; tenants do not see each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_e2e::{Reply, Strata, free_port};
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 8;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000
}

fn request(metric: &str, first: usize, count: usize, end_ms: i64) -> WriteRequest {
    let timeseries = (first..first + count)
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
                    value: (i as i64 * 100 + k) as f64,
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

fn write(insert: &Strata, tenant: &str, req: &WriteRequest) -> Reply {
    insert.post_with(
        &format!("/insert/{tenant}/prometheus/api/v1/write"),
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(req),
    )
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(select: &Strata, tenant: &str, q: &str, at_ms: i64) -> Reply {
    select.get(&format!(
        "/select/{tenant}/prometheus/api/v1/query?query={}&time={}",
        encode(q),
        at_ms / 1000
    ))
}

/// Polls `q` until its single number is `want` (storage makes rows searchable after its
/// pending-rows flush, about 2 s); returns isPartial of the last answer.
fn wait_for(select: &Strata, tenant: &str, q: &str, at_ms: i64, want: f64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (v, partial) = scalar_result(&query(select, tenant, q, at_ms));
        if v == want {
            return partial;
        }
        assert!(std::time::Instant::now() < deadline, "{q} stayed at {v}, want {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The single number of a one-element vector result, and isPartial.
fn scalar_result(reply: &Reply) -> (f64, bool) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["status"], "success", "{v}");
    let partial = v["isPartial"].as_bool().expect("isPartial");
    let value = v["data"]["result"][0]["value"][1]
        .as_str()
        .map(|s| s.parse().unwrap())
        .unwrap_or(0.0);
    (value, partial)
}

struct StorageNode {
    node: Strata,
    insert_port: u16,
    select_port: u16,
}

fn storage_node(dir: &std::path::Path, insert_port: u16, select_port: u16) -> Strata {
    Strata::builder()
        .role("storage")
        .data_dir(dir)
        .arg("--insert-listen-addr")
        .arg(format!("127.0.0.1:{insert_port}"))
        .arg("--select-listen-addr")
        .arg(format!("127.0.0.1:{select_port}"))
        .start()
}

fn select_node(nodes: &[StorageNode], rf: usize, deny: bool) -> Strata {
    let list: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.select_port)).collect();
    let mut b = Strata::builder()
        .role("select")
        .arg("--storage-node")
        .arg(list.join(","))
        .arg("--replication-factor")
        .arg(rf.to_string());
    if deny {
        b = b.arg("--deny-partial-response");
    }
    b.start()
}

#[test]
fn cluster_shards_replicates_survives_a_killed_node_and_separates_tenants() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<StorageNode> = dirs
        .iter()
        .map(|d| {
            let (ip, sp) = (free_port(), free_port());
            StorageNode {
                node: storage_node(d.path(), ip, sp),
                insert_port: ip,
                select_port: sp,
            }
        })
        .collect();
    let insert_list: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.insert_port)).collect();
    let insert = Strata::builder()
        .role("insert")
        .arg("--storage-node")
        .arg(insert_list.join(","))
        .arg("--replication-factor")
        .arg("2")
        .start();
    let select2 = select_node(&nodes, 2, false);
    let select1 = select_node(&nodes, 1, false);
    let select_deny = select_node(&nodes, 1, true);

    let end = now_ms();
    let r = write(&insert, "1", &request("cl_requests_total", 0, 40, end));
    assert_eq!(r.status, 204, "{}", r.body);
    let r = write(&insert, "2:5", &request("other_tenant_metric", 0, 3, end));
    assert_eq!(r.status, 204, "{}", r.body);

    // Everything reads back through select, once (replicas are merged).
    assert!(!wait_for(&select2, "1", "count(cl_requests_total)", end, 40.0));
    let (sum, _) = scalar_result(&query(&select2, "1", "sum(cl_requests_total)", end));
    let expected_last: f64 = (0..40).map(|i| (i * 100 + SAMPLES - 1) as f64).sum();
    assert_eq!(sum, expected_last);
    let (n, _) = scalar_result(&query(
        &select2,
        "1",
        "sum(count_over_time(cl_requests_total[10m]))",
        end,
    ));
    assert_eq!(n, (40 * SAMPLES) as f64, "every sample exactly once");
    let series = select2.get("/select/1/prometheus/api/v1/series?match[]=cl_requests_total");
    assert_eq!(series.json()["data"].as_array().unwrap().len(), 40, "{}", series.body);
    let labels = select2.get("/select/1/prometheus/api/v1/labels");
    assert_eq!(labels.json()["data"], serde_json::json!(["__name__", "instance"]));

    // Tenants are apart.
    let (c, _) = scalar_result(&query(&select2, "2:5", "count(cl_requests_total)", end));
    assert_eq!(c, 0.0);
    wait_for(&select2, "2:5", "count(other_tenant_metric)", end, 3.0);
    let names = select2.get("/select/2:5/prometheus/api/v1/label/__name__/values");
    assert_eq!(names.json()["data"], serde_json::json!(["other_tenant_metric"]));
    let (c, _) = scalar_result(&query(&select2, "7", "count({__name__=~\".+\"})", end));
    assert_eq!(c, 0.0);
    assert_eq!(select2.get("/select/x:y/prometheus/api/v1/labels").status, 400);

    // Deleting one tenant's series reaches every node and leaves other tenants alone.
    let del = select2.post(
        "/delete/2:5/prometheus/api/v1/admin/tsdb/delete_series?match[]=other_tenant_metric",
        "text/plain",
        b"",
    );
    assert_eq!(del.status, 204, "{}", del.body);
    let (c, _) = scalar_result(&query(&select2, "2:5", "count(other_tenant_metric)", end));
    assert_eq!(c, 0.0);
    let (c, _) = scalar_result(&query(&select2, "1", "count(cl_requests_total)", end));
    assert_eq!(c, 40.0);
    let bad = select2.post(
        "/delete/1/prometheus/api/v1/admin/tsdb/delete_series",
        "text/plain",
        b"",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);

    // kill -9 one storage node.
    nodes[0].node.signal("KILL");
    nodes[0]
        .node
        .wait_exit(Duration::from_secs(10))
        .expect("killed node exits");

    // Writes keep succeeding (rerouted), and factor 2 still reads everything.
    let r = write(&insert, "1", &request("cl_requests_total", 40, 20, end));
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!wait_for(&select2, "1", "count(cl_requests_total)", end, 60.0));

    // Factor 1 says the answer is partial; denying partial answers gives 503.
    let (count1, partial1) = scalar_result(&query(&select1, "1", "count(cl_requests_total)", end));
    assert!(partial1, "one of three nodes is down with factor 1");
    assert!(count1 > 0.0 && count1 <= 60.0, "{count1}");
    let denied = query(&select_deny, "1", "count(cl_requests_total)", end);
    assert_eq!(denied.status, 503, "{}", denied.body);
    assert_eq!(denied.json()["status"], "error");

    // The killed node restarts on its data and ports and takes new data.
    let (ip, sp) = (nodes[0].insert_port, nodes[0].select_port);
    nodes[0].node = storage_node(dirs[0].path(), ip, sp);
    // The insert node retries the node after its pause; give it a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let r = write(&insert, "1", &request("cl_after_restart", 0, 30, end));
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!wait_for(&select1, "1", "count(cl_after_restart)", end, 30.0));
    let (c, partial) = scalar_result(&query(&select2, "1", "count(cl_requests_total)", end));
    assert_eq!((c, partial), (60.0, false));

    // All storage nodes down: insert answers 503, select 503.
    for n in &nodes {
        n.node.signal("KILL");
    }
    for n in &mut nodes {
        n.node.wait_exit(Duration::from_secs(10));
    }
    // Insert answers once rows are buffered, so the first write after the outage may still be
    // taken; once its sends failed, every node is known down and writes get 503.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = write(&insert, "1", &request("cl_requests_total", 0, 1, end));
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 204, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "insert never noticed the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(query(&select2, "1", "count(cl_requests_total)", end).status, 503);
}

/// `data.result` with its elements in a canonical order (engines need not agree on order).
fn sorted_result(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    let mut out: Vec<String> = match v["data"]["result"].as_array() {
        Some(items) => items.iter().map(|i| i.to_string()).collect(),
        None => vec![v["data"]["result"].to_string()],
    };
    out.sort();
    out
}

#[test]
fn single_node_and_cluster_answer_the_same_promql() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<StorageNode> = dirs
        .iter()
        .map(|dir| {
            let (ip, sp) = (free_port(), free_port());
            StorageNode {
                node: storage_node(dir.path(), ip, sp),
                insert_port: ip,
                select_port: sp,
            }
        })
        .collect();
    let insert_list: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.insert_port)).collect();
    let insert = Strata::builder()
        .role("insert")
        .arg("--storage-node")
        .arg(insert_list.join(","))
        .arg("--replication-factor")
        .arg("2")
        .start();
    let select = select_node(&nodes, 2, false);
    let single = Strata::single();

    let end = now_ms();
    let req = request("same_metric", 0, 25, end);
    assert_eq!(write(&insert, "0", &req).status, 204);
    let r = single.post_with(
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(&req),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for(&select, "0", "count(same_metric)", end, 25.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while single
        .get(&format!("/api/v1/query?query=count(same_metric)&time={}", end / 1000))
        .json()["data"]["result"][0]["value"][1]
        != "25"
    {
        assert!(std::time::Instant::now() < deadline, "single node never saw the data");
        std::thread::sleep(Duration::from_millis(200));
    }

    let t = end / 1000;
    for q in [
        "same_metric",
        "sum(same_metric)",
        "count(same_metric)",
        "rate(same_metric[1m])",
        "max by (instance) (same_metric)",
        "topk(3, same_metric)",
        "avg_over_time(same_metric[2m])",
        "same_metric{instance=~\"host-1.*\"} * 2",
        "sum(increase(same_metric[5m]))",
        "count_over_time(same_metric[10m])",
    ] {
        let c = query(&select, "0", q, end);
        let s = single.get(&format!("/api/v1/query?query={}&time={t}", encode(q)));
        assert_eq!(sorted_result(&c), sorted_result(&s), "{q}");
        assert_eq!(c.json()["isPartial"], false);
    }
    let range = |node: &Strata, prefix: &str| {
        node.get(&format!(
            "{prefix}/api/v1/query_range?query=sum%20by%20(instance)%20(same_metric)&start={}&end={t}&step=15",
            t - 120
        ))
    };
    assert_eq!(
        sorted_result(&range(&select, "/select/0/prometheus")),
        sorted_result(&range(&single, ""))
    );
}
