//! A storage node that hangs (SIGSTOP: the process is alive, its sockets accept, nothing
//! answers) must not stall writes: insert buffers per node, notices the node is slow, and
//! moves its share to the healthy nodes. Writes keep being answered quickly (their latency
//! percentiles are printed), the healthy nodes hold the hung node's share while it hangs, and
//! after SIGCONT every series reads back through select.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_e2e::{Reply, Strata, free_port};
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

const SERIES_PER_WRITE: usize = 20;
const WRITES_WHILE_HUNG: usize = 100;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000
}

fn request(first: usize, count: usize, t: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (first..first + count)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "hung_test".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: format!("host-{i}"),
                    },
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    }
}

fn write(insert: &Strata, req: &WriteRequest) -> Reply {
    insert.post_with(
        "/insert/0/prometheus/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(req),
    )
}

/// Series a storage node holds, from its own export endpoint (tenant 0:0).
fn exported(node: &Strata) -> std::collections::BTreeSet<String> {
    let r = node.get("/api/v1/export?match[]=hung_test");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["metric"]["instance"].as_str().unwrap().to_owned()
        })
        .collect()
}

struct Node {
    node: Strata,
    insert_port: u16,
    select_port: u16,
}

#[test]
fn a_hung_storage_node_does_not_stall_writes() {
    let nodes: Vec<Node> = (0..3)
        .map(|_| {
            let (ip, sp) = (free_port(), free_port());
            let node = Strata::builder()
                .role("storage")
                .arg("--insert-listen-addr")
                .arg(format!("127.0.0.1:{ip}"))
                .arg("--select-listen-addr")
                .arg(format!("127.0.0.1:{sp}"))
                .start();
            Node {
                node,
                insert_port: ip,
                select_port: sp,
            }
        })
        .collect();
    let list = |f: fn(&Node) -> u16| -> String {
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", f(n)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let insert = Strata::builder()
        .role("insert")
        .arg("--storage-node")
        .arg(list(|n| n.insert_port))
        .start();
    let select = Strata::builder()
        .role("select")
        .arg("--storage-node")
        .arg(list(|n| n.select_port))
        .start();

    let t = now_ms();
    // Warm up: every node has taken data (and insert holds pooled connections to each).
    let r = write(&insert, &request(0, 60, t));
    assert_eq!(r.status, 204, "{}", r.body);

    nodes[1].node.signal("STOP");
    let mut latencies = Vec::with_capacity(WRITES_WHILE_HUNG);
    for k in 0..WRITES_WHILE_HUNG {
        let first = 1000 + k * SERIES_PER_WRITE;
        let started = Instant::now();
        let r = write(&insert, &request(first, SERIES_PER_WRITE, t));
        latencies.push(started.elapsed());
        assert_eq!(r.status, 204, "write {k} while a node hangs: {}", r.body);
        std::thread::sleep(Duration::from_millis(30));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    eprintln!(
        "write latency while a storage node hangs: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    // The failure this guards against is a stall of the whole I/O timeout (tens of seconds).
    assert!(pct(0.99) < Duration::from_secs(2), "p99 {:?}", pct(0.99));

    // While it still hangs, the healthy nodes hold (nearly) everything written meanwhile: far
    // more than their own two thirds. Only the request in flight to the hung node is missing.
    let written: std::collections::BTreeSet<String> = (1000..1000 + WRITES_WHILE_HUNG * SERIES_PER_WRITE)
        .map(|i| format!("host-{i}"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let on_healthy = loop {
        let mut held = exported(&nodes[0].node);
        held.extend(exported(&nodes[2].node));
        let n = held.intersection(&written).count();
        if n + 3 * SERIES_PER_WRITE >= written.len() || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        on_healthy + 3 * SERIES_PER_WRITE >= written.len(),
        "healthy nodes hold {on_healthy} of {} series",
        written.len()
    );
    let metrics = insert.get("/metrics").body;
    assert!(metrics.contains("strata_cluster_rows_rerouted_total"), "{metrics}");

    // It wakes up: its in-flight request lands, and everything reads back through select.
    nodes[1].node.signal("CONT");
    let total = 60 + WRITES_WHILE_HUNG * SERIES_PER_WRITE;
    let q = format!(
        "/select/0/prometheus/api/v1/query?query=count(hung_test)&time={}",
        t / 1000
    );
    let r = select.poll(&q, Duration::from_secs(30), |r| {
        r.status == 200 && r.json()["data"]["result"][0]["value"][1] == total.to_string().as_str()
    });
    assert_eq!(
        r.json()["data"]["result"][0]["value"][1],
        total.to_string().as_str(),
        "{}",
        r.body
    );
    assert_eq!(r.json()["isPartial"], false);
}
