//! The RPC servers over real storage on loopback: the insert router writes, the fan-out source
//! reads, a client of another protocol version is refused naming both versions.

use std::net::SocketAddr;
use std::sync::Arc;

use strata_cluster::client::{CallError, ClientOptions, NodeClient};
use strata_cluster::insert::{ClusterSink, InsertOptions};
use strata_cluster::proto::{Enc, PROTOCOL_VERSION, ProtoError, Service, op};
use strata_cluster::select::SelectCluster;
use strata_cluster::server;
use strata_cluster::tenants::TenantRegistry;
use strata_ingest::{MetricBatch, SampleSink, SinkError};
use strata_query::{LabelMatcher, MatchOp, SeriesSource};
use strata_storage::data::TableOptions;
use strata_storage::index::IndexOptions;
use strata_storage::{Storage, StorageOptions, Tenant};

struct Node {
    insert: SocketAddr,
    select: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start_node(rt: &tokio::runtime::Runtime) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(
        Storage::open(StorageOptions {
            data_path: dir.path().join("data"),
            table: TableOptions::default(),
            index: IndexOptions::default(),
        })
        .unwrap(),
    );
    let (insert, select) = rt.block_on(async {
        let il = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (il.local_addr().unwrap(), sl.local_addr().unwrap());
        tokio::spawn(server::serve(
            il,
            Service::Insert,
            server::insert_handler(Arc::clone(&storage), Arc::new(TenantRegistry::in_memory())),
            std::future::pending(),
        ));
        tokio::spawn(server::serve(
            sl,
            Service::Select,
            server::select_handler(Arc::clone(&storage), Arc::new(TenantRegistry::in_memory())),
            std::future::pending(),
        ));
        addrs
    });
    Node {
        insert,
        select,
        _dir: dir,
    }
}

fn batch(n: usize) -> MetricBatch {
    // Recent samples: older ones fall outside the default retention and are dropped.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = MetricBatch::new();
    for i in 0..n {
        let inst = format!("h{i}");
        b.add_series(
            [("__name__", "rpc_metric"), ("instance", inst.as_str())],
            [(now - 15_000, i as f64), (now, i as f64 + 1.0)],
        )
        .unwrap();
    }
    b
}

/// Runs `f` until it returns true, for at most 10 s: storage makes rows searchable only after
/// its pending-rows flush (about 2 s).
fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "condition not reached in 10 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn insert_router_and_fan_out_over_real_nodes() {
    let rt = runtime();
    let nodes: Vec<Node> = (0..3).map(|_| start_node(&rt)).collect();
    let insert_addrs: Vec<String> = nodes.iter().map(|n| n.insert.to_string()).collect();
    let select_addrs: Vec<String> = nodes.iter().map(|n| n.select.to_string()).collect();
    let sink = ClusterSink::new(
        &insert_addrs,
        InsertOptions {
            replication_factor: 2,
            ..InsertOptions::default()
        },
    );
    let tenant = Tenant {
        account_id: 3,
        project_id: 4,
    };
    let out = sink.push(tenant, &batch(50)).unwrap();
    assert_eq!(out.samples_written, 100);

    let cluster = Arc::new(SelectCluster::new(&select_addrs, 2, 10_000, ClientOptions::default()));
    let source = cluster.source(tenant);
    let m = [LabelMatcher::new(MatchOp::Equal, "__name__", "rpc_metric").unwrap()];
    eventually(|| source.select(&m, 0, i64::MAX / 2).unwrap().len() == 50);
    let series = source.select(&m, 0, i64::MAX / 2).unwrap();
    assert!(series.iter().all(|s| s.timestamps.len() == 2), "replicas merged once");
    assert!(!source.status().is_partial());
    // Names only (the series API): every replicated series once.
    let names = source.series_labels(&m, 0, i64::MAX / 2).unwrap();
    assert_eq!(names.len(), 50);
    assert!(names.iter().all(|l| l.get("__name__") == "rpc_metric"));
    assert_eq!(
        source.label_names(&[], 0, i64::MAX / 2).unwrap(),
        vec!["__name__".to_string(), "instance".to_string()]
    );
    assert_eq!(source.label_values("instance", &m, 0, i64::MAX / 2).unwrap().len(), 50);

    // Every node got a share, and no node got everything (rf 2 of 3). Insert answered once
    // buffered: wait for the buffers to drain and the nodes to make the rows searchable.
    assert!(sink.flush(std::time::Duration::from_secs(10)));
    let per_node = || -> Vec<usize> {
        select_addrs
            .iter()
            .map(|a| {
                let one = Arc::new(SelectCluster::new(
                    std::slice::from_ref(a),
                    1,
                    10_000,
                    ClientOptions::default(),
                ));
                one.source(tenant).select(&m, 0, i64::MAX / 2).unwrap().len()
            })
            .collect()
    };
    eventually(|| per_node().iter().sum::<usize>() == 100);
    let per_node = per_node();
    assert!(per_node.iter().all(|&n| n > 0 && n < 50), "{per_node:?}");

    // Another tenant sees nothing.
    let other = cluster.source(Tenant::default());
    assert!(other.select(&m, 0, i64::MAX / 2).unwrap().is_empty());
}

#[test]
fn dead_nodes_reroute_writes_and_mark_reads_partial() {
    let rt = runtime();
    let live = start_node(&rt);
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let sink = ClusterSink::new(&[live.insert.to_string(), dead.clone()], InsertOptions::default());
    sink.push(Tenant::default(), &batch(20)).unwrap();
    let cluster = Arc::new(SelectCluster::new(
        &[live.select.to_string(), dead.clone()],
        1,
        10_000,
        ClientOptions::default(),
    ));
    let source = cluster.source(Tenant::default());
    let m = [LabelMatcher::new(MatchOp::Equal, "__name__", "rpc_metric").unwrap()];
    // All rerouted to the live node.
    eventually(|| source.select(&m, 0, i64::MAX / 2).unwrap().len() == 20);
    assert!(source.status().is_partial());
    assert!(!source.status().is_unavailable());

    // With no live node: the first push may still be buffered (nothing is known yet); once
    // its send failed, pushes are refused.
    let none = ClusterSink::new(std::slice::from_ref(&dead), InsertOptions::default());
    eventually(|| matches!(none.push(Tenant::default(), &batch(1)), Err(SinkError::Unavailable(_))));
    let cluster = Arc::new(SelectCluster::new(&[dead], 1, 10_000, ClientOptions::default()));
    let source = cluster.source(Tenant::default());
    assert!(source.select(&m, 0, 1).is_err());
    assert!(source.status().is_unavailable());
}

#[test]
fn other_protocol_version_is_refused_naming_both_versions() {
    let rt = runtime();
    let node = start_node(&rt);
    let client = NodeClient::with_version(
        node.insert.to_string(),
        Service::Insert,
        ClientOptions::default(),
        PROTOCOL_VERSION + 1,
    );
    let err = client.call(&Enc::with_op(op::PING).0).unwrap_err();
    match &err {
        CallError::Unavailable {
            source: ProtoError::Version { ours, theirs },
            ..
        } => {
            assert_eq!((*ours, *theirs), (PROTOCOL_VERSION + 1, PROTOCOL_VERSION));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {PROTOCOL_VERSION}"))
            && text.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{text}"
    );
    // The right version on the wrong port is refused too, with a clear reason.
    let wrong = NodeClient::new(node.select.to_string(), Service::Insert, ClientOptions::default());
    let err = wrong.call(&Enc::with_op(op::PING).0).unwrap_err().to_string();
    assert!(err.contains("serves select RPC"), "{err}");
    let ok = NodeClient::new(node.insert.to_string(), Service::Insert, ClientOptions::default());
    ok.call(&Enc::with_op(op::PING).0).unwrap();
}
