//! Tests of the insert router against fake storage nodes served by [`crate::server::serve`]:
//! their handler records what arrives and can be made to hang like a stopped process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use strata_ingest::{MetricBatch, SampleSink, SinkError};
use strata_storage::Tenant;

use super::*;
use crate::proto::{Dec, Enc, Service, op, status};
use crate::server;

/// What a fake node saw, and a gate that blocks its handler while closed.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<(Tenant, String)>>,
    gate_closed: Mutex<bool>,
    gate: Condvar,
}

impl Fake {
    fn set_hung(&self, hung: bool) {
        *self.gate_closed.lock().unwrap() = hung;
        self.gate.notify_all();
    }

    fn instances(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().iter().map(|(_, i)| i.clone()).collect()
    }
}

/// Opens a fake's gate when dropped, so a failing assertion cannot leave a handler blocked
/// (the test runtime waits for its blocking tasks when it is dropped).
struct Release(Arc<Fake>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.set_hung(false);
    }
}

fn handler(fake: Arc<Fake>) -> server::Handler {
    server::single(move |payload: &[u8]| {
        let mut d = Dec::new(payload);
        let code = d.u8().unwrap();
        if code == op::WRITE {
            let tenant = d.tenant().unwrap();
            let n = d.u32().unwrap();
            let mut rows = 0u64;
            for _ in 0..n {
                let s = proto::get_series(&mut d).unwrap();
                rows += s.timestamps.len() as u64;
                let inst = s.labels.iter().find(|(k, _)| k == "instance").unwrap().1.clone();
                // Recorded on arrival: a hung node has the request, it just never answers.
                fake.seen.lock().unwrap().push((tenant, inst));
            }
            let mut closed = fake.gate_closed.lock().unwrap();
            while *closed {
                closed = fake.gate.wait(closed).unwrap();
            }
            let mut e = Enc::default();
            e.u8(status::OK).u64(rows);
            return e.0;
        }
        vec![status::OK]
    })
}

struct Cluster {
    _rt: tokio::runtime::Runtime,
    fakes: HashMap<String, Arc<Fake>>,
    addrs: Vec<String>,
}

fn cluster(n: usize) -> Cluster {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut fakes = HashMap::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let fake = Arc::new(Fake::default());
        let l = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        rt.spawn(server::serve(
            l,
            Service::Insert,
            handler(Arc::clone(&fake)),
            std::future::pending(),
        ));
        fakes.insert(addr.clone(), fake);
        addrs.push(addr);
    }
    Cluster { _rt: rt, fakes, addrs }
}

fn batch(first: usize, count: usize) -> MetricBatch {
    let mut b = MetricBatch::new();
    for i in first..first + count {
        let inst = format!("host-{i:05}");
        b.add_series(
            [("__name__", "m"), ("instance", inst.as_str())],
            [(1_000, i as f64), (2_000, i as f64)],
        )
        .unwrap();
    }
    b
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_instances(count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("host-{i:05}")).collect()
}

#[test]
fn replicates_to_distinct_nodes_and_flush_drains_the_buffers() {
    let c = cluster(3);
    let sink = ClusterSink::new(
        &c.addrs,
        InsertOptions {
            replication_factor: 2,
            ..InsertOptions::default()
        },
    );
    for k in 0..3 {
        sink.push(Tenant::default(), &batch(k * 100, 100)).unwrap();
    }
    assert!(sink.flush(Duration::from_secs(10)));
    let mut copies: HashMap<String, usize> = HashMap::new();
    for fake in c.fakes.values() {
        let seen = fake.seen.lock().unwrap();
        // Each node holds a series at most once.
        let distinct: BTreeSet<&String> = seen.iter().map(|(_, i)| i).collect();
        assert_eq!(distinct.len(), seen.len());
        for (_, inst) in seen.iter() {
            *copies.entry(inst.clone()).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), 300);
    assert!(copies.values().all(|&n| n == 2), "every series on exactly two nodes");
    // Each node got a fair share (rendezvous spreads evenly).
    for fake in c.fakes.values() {
        let n = fake.seen.lock().unwrap().len();
        assert!((120..=280).contains(&n), "uneven share {n}");
    }
}

#[test]
fn a_hung_nodes_share_is_rerouted_and_nothing_is_lost() {
    let c = cluster(3);
    let sink = ClusterSink::new(
        &c.addrs,
        InsertOptions {
            slow_after: Duration::from_millis(200),
            ..InsertOptions::default()
        },
    );
    let hung_addr = sink.node_addrs()[1].to_owned();
    let hung = Arc::clone(&c.fakes[&hung_addr]);
    hung.set_hung(true);
    let _release = Release(Arc::clone(&hung));
    // Every push is answered while the node hangs: they only fill buffers.
    for k in 0..20 {
        sink.push(Tenant::default(), &batch(k * 50, 50)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Everything reaches some node while the hung one is still hung: the healthy nodes took
    // what was queued for it (it holds only the request it got before hanging).
    let want = all_instances(1000);
    wait_until("rerouting", || {
        let mut union = BTreeSet::new();
        for fake in c.fakes.values() {
            union.extend(fake.instances());
        }
        union == want
    });
    let others: BTreeSet<String> = c
        .fakes
        .iter()
        .filter(|(a, _)| **a != hung_addr)
        .flat_map(|(_, f)| f.instances())
        .collect();
    assert!(
        others.len() > 700,
        "healthy nodes got the hung node's share: {}",
        others.len()
    );
    assert!(hung.instances().len() < 300, "{}", hung.instances().len());
    // It comes back: its in-flight request completes and it takes new data again.
    hung.set_hung(false);
    assert!(sink.flush(Duration::from_secs(10)));
    let before = hung.instances().len();
    wait_until("the node to take data again", || {
        sink.push(Tenant::default(), &batch(5000, 50)).unwrap();
        sink.flush(Duration::from_secs(5));
        hung.instances().len() > before
    });
}

#[test]
fn down_nodes_make_pushes_fail_only_when_no_node_is_left() {
    // Addresses where nothing listens.
    let dead: Vec<String> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        })
        .collect();
    let sink = ClusterSink::new(
        &dead,
        InsertOptions {
            retry_after: Duration::from_millis(100),
            ..InsertOptions::default()
        },
    );
    // The first push is buffered (nothing is known yet); its sends fail and mark the nodes
    // down, after which pushes are refused.
    let _ = sink.push(Tenant::default(), &batch(0, 10));
    wait_until("503", || {
        matches!(
            sink.push(Tenant::default(), &batch(0, 10)),
            Err(SinkError::Unavailable(_))
        )
    });
    // One live node is enough to take everything.
    let c = cluster(1);
    let mut addrs = dead.clone();
    addrs.push(c.addrs[0].clone());
    let sink = ClusterSink::new(
        &addrs,
        InsertOptions {
            replication_factor: 2,
            slow_after: Duration::from_millis(200),
            ..InsertOptions::default()
        },
    );
    for k in 0..10 {
        sink.push(Tenant::default(), &batch(k * 30, 30)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    wait_until("the live node to hold everything", || {
        c.fakes[&c.addrs[0]].instances() == all_instances(300)
    });
}

#[test]
fn without_rerouting_a_hung_node_keeps_its_share_until_its_buffer_is_full() {
    let c = cluster(2);
    let sink = ClusterSink::new(
        &c.addrs,
        InsertOptions {
            reroute: false,
            slow_after: Duration::from_millis(100),
            buffer_bytes: 20_000,
            ..InsertOptions::default()
        },
    );
    let hung_addr = sink.node_addrs()[0].to_owned();
    c.fakes[&hung_addr].set_hung(true);
    let _release = Release(Arc::clone(&c.fakes[&hung_addr]));
    let mut refused = false;
    for k in 0..200 {
        match sink.push(Tenant::default(), &batch(k * 20, 20)) {
            Ok(_) => {}
            Err(SinkError::Unavailable(_)) => {
                refused = true;
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused, "a full buffer refuses writes");
    let other = c.addrs.iter().find(|a| **a != hung_addr).unwrap();
    // Nothing of the hung node's share went elsewhere.
    let hashes: Vec<u64> = sink.node_addrs().iter().map(|a| hash::node_hash(a)).collect();
    for inst in c.fakes[other].instances() {
        let key = hash::series_key(
            Tenant::default(),
            [("__name__", "m"), ("instance", inst.as_str())].into_iter(),
        );
        assert_eq!(sink.node_addrs()[hash::ranking(&hashes, key)[0]], other.as_str());
    }
    c.fakes[&hung_addr].set_hung(false);
    assert!(sink.flush(Duration::from_secs(10)));
}

#[test]
fn requests_group_items_of_one_tenant_up_to_the_size_limit() {
    let item = |account_id, len| Item {
        tenant: Tenant {
            account_id,
            project_id: 0,
        },
        series: 1,
        rows: 1,
        bytes: vec![0; len],
    };
    let mut q = Queue::default();
    for it in [item(1, 10), item(1, 10), item(1, 10), item(2, 10), item(2, 50)] {
        q.push_back(it);
    }
    assert_eq!(take_request(&mut q, 25).len(), 2);
    assert_eq!(take_request(&mut q, 25).len(), 1);
    assert_eq!(take_request(&mut q, 25).len(), 1);
    // An item larger than the limit still goes, alone.
    assert_eq!(take_request(&mut q, 25).len(), 1);
    assert_eq!(q.bytes, 0);
    assert!(take_request(&mut q, 25).is_empty());
}
