//! The cost of the write-ahead log on ingestion: `Storage::add_series` for every series of a
//! remote-write-like request (1000 series × 1 sample, 6 labels each) and its acknowledgement
//! point, from 1 and from 4 concurrent writers: `no_wal` and `wal` call `Storage::add_batch`
//! once per request (the HTTP ingest path), `wal_per_series` calls `add_series` per series and
//! then `sync_wal` (no overlap of the fsync with the table work). Prints samples/s per case
//! (criterion throughput); docs/PERFORMANCE.md records the ratios. The series are known and
//! the benchmark writes them again and again, so with the compact record format (v2) each
//! sample costs about 12 bytes of log (ref, time delta, value) once a segment has defined its
//! series; the labels are written again after every checkpoint's rotation (5 s by default).
//!
//! `cargo bench -p strata-storage --bench wal`

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_storage::data::TableOptions;
use strata_storage::index::{IndexOptions, Label};
use strata_storage::{Storage, StorageOptions, Tenant};

const SERIES: usize = 1000;

struct Names {
    instance: Vec<String>,
    pod: Vec<String>,
}

fn names() -> Names {
    Names {
        instance: (0..SERIES)
            .map(|i| format!("10.0.{}.{}:9100", i / 250, i % 250))
            .collect(),
        pod: (0..SERIES).map(|i| format!("api-{:05}", i * 7919 % 100_000)).collect(),
    }
}

fn metric(i: usize) -> &'static str {
    [
        "node_cpu_seconds_total",
        "http_requests_total",
        "process_resident_memory_bytes",
    ][i % 3]
}

fn labels<'a>(n: &'a Names, i: usize, writer: &'a str) -> [Label<'a>; 6] {
    [
        Label {
            name: "__name__",
            value: metric(i),
        },
        Label {
            name: "job",
            value: "node",
        },
        Label {
            name: "instance",
            value: &n.instance[i],
        },
        Label {
            name: "pod",
            value: &n.pod[i],
        },
        Label {
            name: "writer",
            value: writer,
        },
        Label {
            name: "env",
            value: "prod",
        },
    ]
}

/// How a request reaches the storage.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    /// `add_series` per series, then `sync_wal` (the path before `add_batch` existed).
    PerSeries,
    /// One `add_batch` per request (what the HTTP ingest path calls).
    Batch,
}

fn request(s: &Storage, n: &Names, writer: usize, ts: i64, api: Api) {
    let w = writer.to_string();
    match api {
        Api::PerSeries => {
            for i in 0..SERIES {
                s.add_series(
                    Tenant::default(),
                    &labels(n, i, &w),
                    &[ts],
                    &[i as f64 + ts as f64 * 0.001],
                )
                .expect("add_series");
            }
            s.sync_wal().expect("sync_wal");
        }
        Api::Batch => {
            let added = s
                .add_batch(Tenant::default(), &|visit| {
                    for i in 0..SERIES {
                        visit(&labels(n, i, &w), &[ts], &[i as f64 + ts as f64 * 0.001])?;
                    }
                    Ok(())
                })
                .expect("add_batch");
            assert_eq!(added, SERIES as u64);
        }
    }
}

fn bench(c: &mut Criterion) {
    let n = names();
    let mut g = c.benchmark_group("ingest_wal");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    // (WAL on, API, sync interval, label): the default interval (written before the ack,
    // fsynced within 100 ms) and `0s` (fsynced before every ack).
    let fsync_each = Duration::ZERO;
    let default_sync = TableOptions::default().wal_sync_interval;
    let cases = [
        (false, Api::Batch, default_sync, "no_wal"),
        (true, Api::PerSeries, fsync_each, "wal_per_series_fsync_each"),
        (true, Api::Batch, fsync_each, "wal_fsync_each"),
        (true, Api::Batch, default_sync, "wal"),
    ];
    for writers in [1usize, 4] {
        for (wal, api, wal_sync_interval, label) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = Storage::open(StorageOptions {
                data_path: dir.path().join("data"),
                table: TableOptions {
                    wal,
                    wal_sync_interval,
                    min_free_disk_bytes: 0,
                    ..TableOptions::default()
                },
                index: IndexOptions::default(),
            })
            .expect("open");
            // Series exist before timing: steady-state ingestion, not series creation.
            let clock = AtomicI64::new(now - 3_600_000);
            for w in 0..writers {
                request(&s, &n, w, clock.fetch_add(1, Ordering::Relaxed), api);
            }
            g.throughput(Throughput::Elements((SERIES * writers) as u64));
            let name = format!("{writers}_writers/{label}");
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|sc| {
                        for w in 0..writers {
                            let (s, n, clock) = (&s, &n, &clock);
                            sc.spawn(move || {
                                for _ in 0..iters {
                                    request(s, n, w, clock.fetch_add(1, Ordering::Relaxed), api);
                                }
                            });
                        }
                    });
                    start.elapsed()
                });
            });
            s.close().expect("close");
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
