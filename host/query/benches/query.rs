//! Benchmarks: parsing a dashboard-like query, and a one-day range query of
//! `sum by (job) (rate(...[5m]))` over 10,000 series at a 15s step (15s scrape interval).
//!
//! Run: `cargo bench -p strata-query --bench query`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use strata_query::{Engine, FunctionRegistry, Labels, MemSource, QueryOptions, Series, parse};

const DASHBOARD_QUERY: &str = r#"
  histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job=~"api|web", code!~"5.."}[5m])))
  / on(job) group_left
  (sum by (job) (rate(http_requests_total{job=~"api|web"}[5m])) > 0)
  or topk(5, max_over_time(rate(process_cpu_seconds_total[1m])[1h:1m]) offset 5m)
"#;

fn bench_parse(c: &mut Criterion) {
    let reg = FunctionRegistry::with_builtins();
    c.bench_function("parse dashboard query", |b| {
        b.iter(|| parse(black_box(DASHBOARD_QUERY), &reg).map(|e| black_box(e).to_string().len()))
    });
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const STEP_MS: i64 = 15_000;

fn day_of_counters(series: usize) -> MemSource {
    let mut src = MemSource::new();
    // Samples from 10 minutes before the range (lookback and the 5m window) to its end.
    let start = -600_000i64;
    let n = ((DAY_MS - start) / STEP_MS + 1) as usize;
    for i in 0..series {
        let timestamps: Vec<i64> = (0..n).map(|k| start + k as i64 * STEP_MS).collect();
        let mut v = 0.0;
        let values: Vec<f64> = (0..n)
            .map(|k| {
                v += ((i * 31 + k * 17) % 100) as f64;
                v
            })
            .collect();
        src.push_series(Series {
            labels: Labels::from_pairs([
                ("__name__", "http_requests_total".to_string()),
                ("job", format!("job{}", i % 20)),
                ("instance", format!("host{i}:9100")),
            ]),
            timestamps,
            values,
        });
    }
    src
}

fn bench_range(c: &mut Criterion) {
    let src = Arc::new(day_of_counters(10_000));
    let engine = Engine::new(
        src,
        QueryOptions {
            max_samples: 100_000_000,
            ..Default::default()
        },
    );
    let mut g = c.benchmark_group("range query 10k series x 1 day, step 15s");
    g.sample_size(10);
    g.bench_function("sum by (job) (rate(x[5m]))", |b| {
        b.iter(|| {
            engine
                .range_query("sum by (job) (rate(http_requests_total[5m]))", 0, DAY_MS, STEP_MS)
                .map(|r| black_box(r.stats.samples_fetched))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_range);
criterion_main!(benches);
