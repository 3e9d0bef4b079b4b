//! The cost of the extra hop: ingestion through the insert router and the insert RPC into
//! storage, against `Storage::add_series` directly, on the same data in one process. Prints
//! samples/s (wall clock) and CPU microseconds per 1000 samples (user + system of the whole
//! process, from /proc/self/stat, so the router, the RPC server and storage all count).
//!
//! Run: `cargo bench -p strata-cluster --bench hop` (`STRATA_BENCH_SERIES`, default 20000;
//! 10 samples per series per round, 10 rounds).

// Benchmarks exist to print their figures.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use strata_cluster::client::ClientOptions;
use strata_cluster::insert::{ClusterSink, InsertOptions};
use strata_cluster::proto::Service;
use strata_cluster::select::SelectCluster;
use strata_cluster::server;
use strata_cluster::tenants::TenantRegistry;
use strata_ingest::{MetricBatch, SampleSink};
use strata_query::{LabelMatcher, MatchOp as QueryOp, SeriesSource};
use strata_storage::data::TableOptions;
use strata_storage::index::{IndexOptions, Label, MatchOp, TagFilter};
use strata_storage::{Storage, StorageOptions, Tenant, TimeRange};

const ROUNDS: i64 = 10;
const SAMPLES: i64 = 10;

/// CPU seconds (user + system) this process used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

fn open(dir: &std::path::Path) -> Arc<Storage> {
    Arc::new(
        Storage::open(StorageOptions {
            data_path: dir.to_path_buf(),
            table: TableOptions::default(),
            index: IndexOptions::default(),
        })
        .expect("open storage"),
    )
}

fn batch(series: usize, round: i64, now: i64) -> MetricBatch {
    let mut b = MetricBatch::new();
    for i in 0..series {
        let inst = format!("host-{}", i % 500);
        let id = format!("{i}");
        let base = now - (ROUNDS - round) * SAMPLES * 15_000;
        b.add_series(
            [
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", id.as_str()),
                ("instance", inst.as_str()),
                ("job", "node"),
            ],
            (0..SAMPLES).map(|k| (base + k * 15_000, (round * SAMPLES + k) as f64 * 1.5)),
        )
        .expect("batch");
    }
    b
}

fn report(name: &str, samples: f64, wall: f64, cpu: f64) -> f64 {
    let per_1000 = cpu / samples * 1e9;
    println!(
        "{name:<28} {:>12.0} samples/s   {:>8.1} CPU us per 1000 samples",
        samples / wall,
        per_1000
    );
    per_1000
}

fn main() {
    let series: usize = std::env::var("STRATA_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let batches: Vec<MetricBatch> = (0..ROUNDS).map(|r| batch(series, r, now)).collect();
    let samples = (series as i64 * SAMPLES * ROUNDS) as f64;

    // Direct: what the single role's sink does.
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(dir.path());
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let mut labels: Vec<Label<'_>> = Vec::new();
    for b in &batches {
        for s in b.iter() {
            labels.clear();
            labels.extend(s.labels().map(|(name, value)| Label { name, value }));
            storage
                .add_series(Tenant::default(), &labels, s.timestamps(), s.values())
                .expect("add");
        }
    }
    let direct = report(
        "single (add_series)",
        samples,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - c0,
    );
    drop(storage);

    // Through the insert router and the RPC server, one storage node on loopback.
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, select_addr) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(server::serve(
            l,
            Service::Insert,
            server::insert_handler(Arc::clone(&storage), Arc::new(TenantRegistry::in_memory())),
            std::future::pending(),
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let select_addr = l.local_addr().expect("addr");
        tokio::spawn(server::serve(
            l,
            Service::Select,
            server::select_handler(Arc::clone(&storage), Arc::new(TenantRegistry::in_memory())),
            std::future::pending(),
        ));
        (addr, select_addr)
    });
    let sink = ClusterSink::new(&[addr.to_string()], InsertOptions::default());
    let (c0, t0) = (cpu_seconds(), Instant::now());
    for b in &batches {
        sink.push(Tenant::default(), b).expect("push");
    }
    // Pushes only buffer; the hop's cost includes sending it all.
    assert!(sink.flush(std::time::Duration::from_secs(120)), "buffers drained");
    let hop = report(
        "cluster (insert -> storage)",
        samples,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - c0,
    );
    println!(
        "extra CPU per sample through the hop: {:+.0}%",
        (hop / direct - 1.0) * 100.0
    );

    // Query latency: one selector (the series of one instance, all samples) read from storage
    // directly and through the select RPC (one node), after a flush.
    storage.force_flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let filters = [TagFilter::new("instance", MatchOp::Equal, "host-7")];
    let matchers = [LabelMatcher::new(QueryOp::Equal, "instance", "host-7").expect("matcher")];
    let tr = TimeRange {
        min: 0,
        max: i64::MAX / 2,
    };
    let cluster = Arc::new(SelectCluster::new(
        &[select_addr.to_string()],
        1,
        1_000_000,
        ClientOptions::default(),
    ));
    let source = cluster.source(Tenant::default());
    let runs = 200;
    let t0 = Instant::now();
    let mut found = 0usize;
    for _ in 0..runs {
        found = 0;
        storage
            .search(Tenant::default(), &filters, tr, 1_000_000, &mut |_, _, _| {
                found += 1;
                Ok(())
            })
            .expect("search");
    }
    let direct = t0.elapsed().as_secs_f64() / runs as f64 * 1e3;
    let t0 = Instant::now();
    let mut via = 0usize;
    for _ in 0..runs {
        via = source.select(&matchers, 0, i64::MAX / 2).expect("select").len();
    }
    let fanned = t0.elapsed().as_secs_f64() / runs as f64 * 1e3;
    println!("select of {found} series: storage {direct:.2} ms, through select RPC {fanned:.2} ms ({via} series)");
}
