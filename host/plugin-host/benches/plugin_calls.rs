//! Per-call cost of a plugin (warm instance from the pool + call + batch conversion) and Influx line-protocol
//! throughput through the plugin. Needs `scripts/build-plugins` first.
//!
//! `STRATA_PLUGIN_DIST=<dir>` loads the components from another directory than plugins/dist
//! (to compare builds of the guests with one host binary).

mod common;

use common::{influx_body, spec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_ingest::MetricBatch;
use strata_plugin_host::{HostOptions, PluginHost};

fn bench(c: &mut Criterion) {
    let host = PluginHost::load(
        HostOptions::default(),
        vec![spec("hostile", "strata_hostile"), spec("influx", "strata_influx")],
    )
    .unwrap();
    let hostile = host.ingest_plugin("hostile").unwrap();
    let influx = host.ingest_plugin("influx").unwrap();
    let mut out = MetricBatch::new();
    let ok = vec![("mode".to_string(), "ok".to_string())];
    // A whole small request: one parameter in, one series out and converted.
    c.bench_function("call_fixed_cost_warm_instance", |b| {
        b.iter(|| hostile.parse_into(&ok, b"", 1, &mut out).unwrap())
    });
    // The fixed cost alone: no parameters, an empty body, an empty batch back.
    c.bench_function("call_fixed_cost_empty_request", |b| {
        b.iter(|| influx.parse_into(&[], b"", 1, &mut out).unwrap())
    });

    let body = influx_body();
    let mut g = c.benchmark_group("influx_10k_lines_20k_samples");
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("plugin", |b| {
        b.iter(|| influx.parse_into(&[], body.as_bytes(), 1, &mut out).unwrap())
    });
    // The same call without converting the returned batch into a MetricBatch: the work the
    // native benchmark does (parse and build the SDK batch) plus the crossing in and out.
    g.bench_function("plugin_call_only", |b| {
        b.iter(|| influx.parse_count(&[], body.as_bytes(), 1).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
