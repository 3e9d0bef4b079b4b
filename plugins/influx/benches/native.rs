//! The Influx parser compiled natively, on the same body as the host's plugin benchmark
//! (host/plugin-host/benches/plugin_calls.rs), for the plugin-vs-native ratio.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_influx::{Options, parse_lines};
use strata_plugin_sdk::BatchBuilder;

fn bench(c: &mut Criterion) {
    let mut body = String::new();
    for i in 0..10_000 {
        body.push_str(&format!(
            "cpu,host=server{},region=eu-{},cpu=cpu{} usage_user={}.5,usage_system={}i 1700000000000000000\n",
            i % 100,
            i % 7,
            i % 8,
            i,
            i % 13
        ));
    }
    let opts = Options::default();
    let mut g = c.benchmark_group("influx_10k_lines_20k_samples");
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("native", |b| {
        b.iter(|| {
            let mut out = BatchBuilder::new();
            parse_lines(&[], body.as_bytes(), 1, &opts, &mut out).unwrap();
            out.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
