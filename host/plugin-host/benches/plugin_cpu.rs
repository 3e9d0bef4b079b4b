//! The figures of `plugin_calls`, as CPU time per call of the calling thread
//! (`/proc/thread-self/schedstat`) beside wall time. On a machine shared with other work the
//! wall time of a call includes the time the thread waited for a core; its CPU time does not,
//! so this is the figure to compare across runs under different load. Needs
//! `scripts/build-plugins` first; `STRATA_PLUGIN_DIST=<dir>` loads the components from another
//! directory. Linux only (it reads /proc).

// Printing the figures is what this benchmark is for.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{influx_body, spec, thread_cpu_ns};
use strata_ingest::MetricBatch;
use strata_plugin_host::{HostOptions, PluginHost};

/// Runs `f` for about `secs` seconds of this thread's CPU time after a short warm-up; prints
/// CPU and wall nanoseconds per call.
fn measure(name: &str, secs: f64, mut f: impl FnMut()) {
    let warm = Instant::now();
    let mut calls = 0u64;
    while warm.elapsed() < Duration::from_millis(300) {
        f();
        calls += 1;
    }
    // Read the clock (a /proc read, a few µs of system time) about every 10 ms only.
    let per_batch = (calls / 30).max(1);
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let mut n = 0u64;
    let budget = (secs * 1e9) as u64;
    while thread_cpu_ns() - cpu0 < budget {
        for _ in 0..per_batch {
            f();
        }
        n += per_batch;
    }
    let cpu = (thread_cpu_ns() - cpu0) as f64 / n as f64;
    let wall = wall0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{name:<44} cpu {:>12} / call   wall {:>12} / call   ({n} calls)",
        fmt(cpu),
        fmt(wall)
    );
}

fn fmt(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |n: &str| filter.as_deref().is_none_or(|f| n.contains(f));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let host = PluginHost::load(
        HostOptions::default(),
        vec![spec("hostile", "strata_hostile"), spec("influx", "strata_influx")],
    )
    .unwrap();
    let hostile = host.ingest_plugin("hostile").unwrap();
    let influx = host.ingest_plugin("influx").unwrap();
    let mut out = MetricBatch::new();
    let ok = vec![("mode".to_string(), "ok".to_string())];
    if wanted("call_fixed_cost_warm_instance") {
        measure("call_fixed_cost_warm_instance", 2.0, || {
            hostile.parse_into(&ok, b"", 1, &mut out).unwrap()
        });
    }
    if wanted("call_fixed_cost_empty_request") {
        measure("call_fixed_cost_empty_request", 2.0, || {
            influx.parse_into(&[], b"", 1, &mut out).unwrap()
        });
    }
    let body = influx_body();
    if wanted("influx_10k_lines_20k_samples/plugin") {
        measure("influx_10k_lines_20k_samples/plugin", 4.0, || {
            influx.parse_into(&[], body.as_bytes(), 1, &mut out).unwrap()
        });
    }
    if wanted("influx_10k_lines_20k_samples/plugin_call_only") {
        measure("influx_10k_lines_20k_samples/plugin_call_only", 4.0, || {
            assert_eq!(influx.parse_count(&[], body.as_bytes(), 1).unwrap(), 20_000);
        });
    }
}
