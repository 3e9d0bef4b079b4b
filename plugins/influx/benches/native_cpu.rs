//! The native benchmark as CPU time per parse of the calling thread (`/proc/thread-self/schedstat`)
//! beside wall time, to compare with the host's `plugin_cpu` bench under the same load: on a
//! shared machine wall time includes waiting for a core, CPU time does not. Linux only.

use std::time::{Duration, Instant};

use strata_influx::{Options, parse_lines};
use strata_plugin_sdk::BatchBuilder;

fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat format")
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
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
    let run = || {
        let mut out = BatchBuilder::new();
        parse_lines(&[], body.as_bytes(), 1, &opts, &mut out).unwrap();
        std::hint::black_box(out.finish());
    };
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        run();
    }
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let mut n = 0u64;
    while thread_cpu_ns() - cpu0 < 4_000_000_000 {
        run();
        n += 1;
    }
    let cpu = (thread_cpu_ns() - cpu0) as f64 / n as f64 / 1e6;
    let wall = wall0.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!(
        "influx_10k_lines_20k_samples/native        cpu {cpu:>8.3} ms / call   wall {wall:>8.3} ms / call   ({n} calls)"
    );
}
