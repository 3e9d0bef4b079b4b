//! Remote-write decode throughput on a realistic request: 10,000 node_exporter-like series with
//! one sample each (what vmagent and Prometheus send per request), ~8 labels per series.
//!
//! Run: `cargo bench -p strata-ingest --bench decode`. Throughput is reported in samples/s.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use strata_ingest::limits::now_ms;
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};
use strata_ingest::{
    IngestLimits, Ingestor, MetricBatch, PushOutcome, RequestMeta, SampleSink, SinkError, Tenant, remote_write,
};

const SAMPLES: usize = 10_000;

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.to_owned(),
        value,
    }
}

/// Series shaped like node_exporter's: a metric name, job/instance, and per-metric labels.
fn request() -> WriteRequest {
    let metrics = [
        ("node_cpu_seconds_total", ["cpu", "mode"]),
        ("node_network_receive_bytes_total", ["device", "namespace"]),
        ("node_filesystem_avail_bytes", ["device", "mountpoint"]),
        ("node_disk_io_time_seconds_total", ["device", "controller"]),
    ];
    let now = now_ms();
    let timeseries = (0..SAMPLES)
        .map(|i| {
            let (name, extra) = metrics[i % metrics.len()];
            let mut labels = vec![
                label("__name__", name.to_owned()),
                label(extra[0], format!("value-{}", i % 64)),
                label(extra[1], format!("other-{}", (i / 64) % 8)),
                label("instance", format!("host-{:04}.example.internal:9100", i / 500)),
                label("job", "node".to_owned()),
                label("region", "eu-west-1".to_owned()),
                label("team", "platform".to_owned()),
                label("env", "production".to_owned()),
            ];
            // Prometheus and vmagent send labels sorted by name.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: (i as f64) * 1.5 + 0.25,
                    timestamp: now - 1000 + (i % 1000) as i64,
                }],
                exemplars: vec![],
                histograms: vec![],
            }
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

struct NullSink;

impl SampleSink for NullSink {
    fn push(&self, _tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        Ok(PushOutcome {
            samples_written: black_box(batch.sample_count()) as u64,
        })
    }
}

fn bench(c: &mut Criterion) {
    let req = request();
    let raw = req.encode_to_vec();
    let compressed = encode_snappy(&req);
    let mut group = c.benchmark_group("remote_write_10k_samples");
    group.throughput(Throughput::Elements(SAMPLES as u64));

    let mut batch = MetricBatch::new();
    group.bench_function("decode_protobuf_into_batch", |b| {
        b.iter(|| {
            batch.clear();
            remote_write::decode_v1(black_box(&raw), &mut batch).unwrap();
        })
    });
    group.bench_function("prost_decode_for_reference", |b| {
        b.iter(|| WriteRequest::decode(black_box(raw.as_slice())).unwrap())
    });
    let ingestor = Ingestor::new(Arc::new(NullSink), IngestLimits::default());
    let meta = RequestMeta::default();
    group.bench_function("snappy_decode_validate_push", |b| {
        b.iter(|| {
            ingestor
                .remote_write(Tenant::default(), black_box(&compressed), &meta)
                .unwrap()
        })
    });
    group.finish();
    eprintln!(
        "request: {} samples, {} bytes protobuf, {} bytes snappy",
        SAMPLES,
        raw.len(),
        compressed.len()
    );
}

/// CPU time this thread has run, from the scheduler (`/proc/thread-self/schedstat`, ns). Wall
/// time on a shared machine says little; CPU time per sample is what the goal compares.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Prints samples per CPU-second for the full path (snappy, decode, validate, push to a null sink).
fn cpu_per_sample(_c: &mut Criterion) {
    let compressed = encode_snappy(&request());
    let ingestor = Ingestor::new(Arc::new(NullSink), IngestLimits::default());
    let meta = RequestMeta::default();
    let rounds = 300;
    let Some(start) = thread_cpu_ns() else {
        eprintln!("cpu_per_sample: /proc/thread-self/schedstat unavailable, skipped");
        return;
    };
    for _ in 0..rounds {
        ingestor
            .remote_write(Tenant::default(), black_box(&compressed), &meta)
            .unwrap();
    }
    let Some(end) = thread_cpu_ns() else { return };
    let cpu_s = (end - start) as f64 / 1e9;
    let samples = (rounds * SAMPLES) as f64;
    eprintln!(
        "cpu_per_sample: {:.2} M samples per CPU-second, {:.3} CPU-seconds per million samples (snappy+decode+validate)",
        samples / cpu_s / 1e6,
        cpu_s / samples * 1e6
    );
}

criterion_group!(benches, bench, cpu_per_sample);
criterion_main!(benches);
