//! Index benchmark that prints figures (not criterion: the 1M-series setup is the expensive
//! part and is shared by every measurement).
//!
//! `cargo bench -p strata-storage --bench index_series` (set `INDEX_BENCH_SERIES` to change
//! the series count, default 1,000,000). Prints: new-series creation rate, known-series rate
//! (cache hits), RSS growth per series, and search / label-values latencies.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use strata_storage::index::{IndexDb, IndexOptions, Label, MatchOp, TagFilter};
use strata_storage::{Tenant, TimeRange};

const T0: i64 = 1_700_000_000_000;

/// CPU seconds used by this process so far (all threads), from /proc/self/stat. The machine
/// is shared, so wall-clock rates understate what the code does per CPU second.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    // After the command name: state is field 3, utime field 14, stime field 15.
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Series {
    name: String,
    job: String,
    instance: String,
    env: &'static str,
    path: String,
}

fn series(i: usize) -> Series {
    Series {
        name: format!("metric_{}", i % 200),
        job: format!("job_{}", i % 20),
        instance: format!(
            "10.{}.{}.{}:9100",
            (i / 200) / 65536,
            (i / 200) / 256 % 256,
            (i / 200) % 256
        ),
        env: if i.is_multiple_of(2) { "prod" } else { "dev" },
        path: format!("/api/v{}", i % 7),
    }
}

fn labels(s: &Series) -> [Label<'_>; 5] {
    [
        Label {
            name: "__name__",
            value: &s.name,
        },
        Label {
            name: "job",
            value: &s.job,
        },
        Label {
            name: "instance",
            value: &s.instance,
        },
        Label {
            name: "env",
            value: s.env,
        },
        Label {
            name: "path",
            value: &s.path,
        },
    ]
}

fn f(name: &str, op: MatchOp, value: &str) -> TagFilter {
    TagFilter::new(name, op, value)
}

/// Mean time of `runs` calls after a warm-up call. Before each timed call a new series is
/// written, which invalidates the index's result cache: the figures are for evaluating the
/// filters, not for cache hits.
fn time<T>(db: &IndexDb, runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    static BUMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let bump = || {
        let name = format!("bump_{}", BUMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        db.get_or_create_tsid(
            Tenant::default(),
            &[Label {
                name: "__name__",
                value: &name,
            }],
            T0,
        )
        .expect("bump");
    };
    bump();
    let mut out = f();
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        bump();
        let start = Instant::now();
        out = f();
        total += start.elapsed();
    }
    (total / runs, out)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("index_series bench: pass --bench (cargo bench) to run");
        return;
    }
    let n: usize = std::env::var("INDEX_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = IndexOptions {
        max_series_per_search: usize::MAX,
        ..IndexOptions::default()
    };
    let db = IndexDb::open(dir.path(), opts).expect("open");
    let t = Tenant::default();
    let all: Vec<Series> = (0..n).map(series).collect();
    let rss0 = rss_bytes();

    let (start, cpu) = (Instant::now(), cpu_secs());
    for s in &all {
        db.get_or_create_tsid(t, &labels(s), T0).expect("create");
    }
    let (create, create_cpu) = (start.elapsed(), cpu_secs() - cpu);
    let rss1 = rss_bytes();
    println!(
        "new series: {n} in {:.2}s = {:.0} series/s wall (1 thread); {:.2} CPU s (all threads) = {:.0} per CPU second",
        create.as_secs_f64(),
        n as f64 / create.as_secs_f64(),
        create_cpu,
        n as f64 / create_cpu
    );

    let (start, cpu) = (Instant::now(), cpu_secs());
    for s in &all {
        db.get_or_create_tsid(t, &labels(s), T0).expect("known");
    }
    let (known, known_cpu) = (start.elapsed(), cpu_secs() - cpu);
    println!(
        "known series (cache hits): {:.0} lookups/s wall (1 thread); {:.0} per CPU second",
        n as f64 / known.as_secs_f64(),
        n as f64 / known_cpu
    );

    let start = Instant::now();
    db.flush().expect("flush");
    println!("flush: {:.2}s", start.elapsed().as_secs_f64());
    // Let background merges of the freshly flushed parts settle.
    std::thread::sleep(Duration::from_secs(3));
    let rss2 = rss_bytes();
    println!(
        "RSS growth per series: {:.0} B right after creation (includes unflushed index items), {:.0} B after flush",
        (rss1 - rss0) as f64 / n as f64,
        rss2.saturating_sub(rss0) as f64 / n as f64
    );
    let du: u64 = walk(dir.path());
    println!(
        "index on disk: {:.1} MB = {:.1} B/series",
        du as f64 / 1e6,
        du as f64 / n as f64
    );

    let day = TimeRange { min: T0, max: T0 };
    let wide = TimeRange { min: 0, max: i64::MAX };
    let queries: Vec<(&str, Vec<TagFilter>)> = vec![
        (
            "{__name__=\"metric_7\"}",
            vec![f("__name__", MatchOp::Equal, "metric_7")],
        ),
        (
            "{__name__=\"metric_7\",instance=~\"10.0.1.*\"}",
            vec![
                f("__name__", MatchOp::Equal, "metric_7"),
                f("instance", MatchOp::RegexMatch, "10.0.1.*"),
            ],
        ),
        (
            "{__name__=\"metric_7\",instance=\"10.0.1.7:9100\"}",
            vec![
                f("__name__", MatchOp::Equal, "metric_7"),
                f("instance", MatchOp::Equal, "10.0.1.7:9100"),
            ],
        ),
        (
            "{__name__=~\"metric_1|metric_2\",env!=\"prod\"}",
            vec![
                f("__name__", MatchOp::RegexMatch, "metric_1|metric_2"),
                f("env", MatchOp::NotEqual, "prod"),
            ],
        ),
        (
            "{job=\"job_3\",path!~\"/api/v[12]\"}",
            vec![
                f("job", MatchOp::Equal, "job_3"),
                f("path", MatchOp::RegexNoMatch, "/api/v[12]"),
            ],
        ),
        (
            "{__name__=~\"metric_1.*\",instance=~\".*:9100\"}",
            vec![
                f("__name__", MatchOp::RegexMatch, "metric_1.*"),
                f("instance", MatchOp::RegexMatch, ".*:9100"),
            ],
        ),
    ];
    let q0 = &queries[1].1;
    db.search_tsids(t, q0, day, usize::MAX).expect("warm");
    let start = Instant::now();
    for _ in 0..100 {
        db.search_tsids(t, q0, day, usize::MAX).expect("cached");
    }
    println!(
        "search_tsids {} [1 day], result cache hit: {:.3} ms",
        queries[1].0,
        start.elapsed().as_secs_f64() * 10.0
    );
    for (name, q) in &queries {
        for (trn, tr) in [("1 day", day), ("global", wide)] {
            let (d, r) = time(&db, 3, || db.search_tsids(t, q, tr, usize::MAX).expect("search").len());
            println!(
                "search_tsids {name} [{trn}]: {r} series in {:.2} ms",
                d.as_secs_f64() * 1e3
            );
        }
    }
    let (d, r) = time(&db, 3, || {
        db.label_values(t, "instance", &[], day, 0).expect("lv").len()
    });
    println!(
        "label_values(instance) [1 day]: {r} values in {:.2} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, r) = time(&db, 3, || {
        db.label_values(t, "instance", &[f("__name__", MatchOp::Equal, "metric_7")], day, 0)
            .expect("lv")
            .len()
    });
    println!(
        "label_values(instance){{__name__=\"metric_7\"}} [1 day]: {r} values in {:.2} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, r) = time(&db, 3, || {
        db.label_values(
            t,
            "job",
            &[
                f("instance", MatchOp::RegexMatch, "10.0.2.*"),
                f("env", MatchOp::NotEqual, "dev"),
            ],
            day,
            0,
        )
        .expect("lv")
        .len()
    });
    println!(
        "label_values(job){{instance=~\"10.0.2.*\",env!=\"dev\"}} [1 day]: {r} values in {:.2} ms",
        d.as_secs_f64() * 1e3
    );
    let (d, r) = time(&db, 3, || db.label_names(t, &[], day, 0).expect("ln").len());
    println!("label_names [1 day]: {r} names in {:.2} ms", d.as_secs_f64() * 1e3);
    let (d, r) = time(&db, 1, || db.series_count(t, day).expect("count"));
    println!("series_count [1 day]: {r} in {:.2} ms", d.as_secs_f64() * 1e3);
    db.close().expect("close");
}

fn walk(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            total += if path.is_dir() {
                walk(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}
