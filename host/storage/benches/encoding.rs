//! Codec speed: nanoseconds per sample to encode and decode blocks of 8192 samples
//! (timestamps at 15 s with jitter; a counter, a gauge and a decimal gauge).
//!
//! Run: `cargo bench -p strata-storage --bench encoding`

// Benchmarks exist to print their figures.
#![allow(clippy::print_stdout)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_storage::data::block::{decode_block, encode_block};
use strata_storage::encoding::decimal::{decimals_to_floats, floats_to_decimals};
use strata_storage::{Tsid, encoding};

const N: usize = 8192;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn timestamps(rng: &mut Rng) -> Vec<i64> {
    (0..N as i64)
        .map(|i| 1_700_000_000_000 + i * 15_000 + rng.below(21) as i64 - 10)
        .collect()
}

fn series(rng: &mut Rng) -> Vec<(&'static str, Vec<f64>)> {
    let mut c = 0u64;
    let counter = (0..N)
        .map(|_| {
            c += rng.below(1_000_000);
            c as f64
        })
        .collect();
    let mut g = 5000i64;
    let gauge = (0..N)
        .map(|_| {
            g += rng.below(201) as i64 - 100;
            (g * 4096) as f64
        })
        .collect();
    let mut cpu = 12_345_678_u64;
    let decimal = (0..N)
        .map(|_| {
            cpu += 1400 + rng.below(100);
            cpu as f64 / 100.0
        })
        .collect();
    vec![("counter", counter), ("gauge", gauge), ("decimal_counter", decimal)]
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ts = timestamps(&mut rng);
    let tsid = Tsid::default();
    let mut g = c.benchmark_group("encoding");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("timestamps_encode", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            black_box(encoding::marshal_timestamps(&mut out, black_box(&ts)).unwrap());
        })
    });
    for (name, vals) in series(&mut rng) {
        let (mut tb, mut vb) = (Vec::new(), Vec::new());
        let h = encode_block(&tsid, &ts, &vals, &mut tb, &mut vb).unwrap();
        println!(
            "{name}: {:.3} bytes/sample (timestamps {:.3}, values {:.3}; types {:?}/{:?})",
            (tb.len() + vb.len()) as f64 / N as f64,
            tb.len() as f64 / N as f64,
            vb.len() as f64 / N as f64,
            h.timestamps_marshal_type,
            h.values_marshal_type
        );
        g.bench_function(format!("block_encode_{name}"), |b| {
            b.iter(|| {
                tb.clear();
                vb.clear();
                black_box(encode_block(&tsid, &ts, black_box(&vals), &mut tb, &mut vb).unwrap());
            })
        });
        let (mut ts_out, mut v_out) = (Vec::with_capacity(N), Vec::with_capacity(N));
        g.bench_function(format!("block_decode_{name}"), |b| {
            b.iter(|| {
                ts_out.clear();
                v_out.clear();
                decode_block(&h, &tb, &vb, &mut ts_out, &mut v_out).unwrap();
                black_box(&v_out);
            })
        });
        let mut m = Vec::with_capacity(N);
        g.bench_function(format!("decimal_roundtrip_{name}"), |b| {
            b.iter(|| {
                m.clear();
                let s = floats_to_decimals(&mut m, black_box(&vals));
                v_out.clear();
                decimals_to_floats(&mut v_out, &m, s);
                black_box(&v_out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
