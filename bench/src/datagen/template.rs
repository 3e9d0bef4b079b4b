//! The per-instance template: what one node_exporter-like host exposes and how each series moves.

use super::LabelPair;

/// How one group of series evolves.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A monotonic counter growing at about `rate` per second, rounded to `decimals`.
    Counter { rate: f64, decimals: u32 },
    /// A bounded random walk, rounded to `decimals`; `step` is the largest move per scrape.
    Gauge {
        min: f64,
        max: f64,
        step: f64,
        decimals: u32,
    },
    /// A value that never changes (sizes, totals, `up`).
    Const(f64),
    /// Cumulative buckets (one series per bound, the last +Inf), then `_sum`, then `_count`.
    /// `rate` is observations per second; latencies are log-normal around `median` seconds.
    Histogram { bounds: Vec<f64>, rate: f64, median: f64 },
}

/// Series per instance of the node template.
pub const SERIES_PER_INSTANCE: usize = 134;

/// Histogram bounds of a typical HTTP latency histogram (seconds), +Inf last.
const LATENCY_BOUNDS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// One family member of the per-instance template: metric name, extra labels, kind.
pub(super) struct Member {
    pub(super) name: String,
    pub(super) labels: Vec<LabelPair>,
    pub(super) kind: Kind,
}

fn member(name: &str, labels: &[(&str, &str)], kind: Kind) -> Member {
    Member {
        name: name.to_owned(),
        labels: labels.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        kind,
    }
}

fn counter(rate: f64, decimals: u32) -> Kind {
    Kind::Counter { rate, decimals }
}

fn gauge(min: f64, max: f64, step: f64, decimals: u32) -> Kind {
    Kind::Gauge {
        min,
        max,
        step,
        decimals,
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What one node_exporter-like instance exposes ([`SERIES_PER_INSTANCE`] series).
pub(super) fn instance_template() -> Vec<Member> {
    let mut m = Vec::new();
    let modes = [
        ("idle", 0.6),
        ("iowait", 0.01),
        ("irq", 0.0),
        ("nice", 0.0),
        ("softirq", 0.005),
        ("steal", 0.002),
        ("system", 0.08),
        ("user", 0.3),
    ];
    for cpu in ["0", "1", "2", "3"] {
        for (mode, rate) in modes {
            m.push(member(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                counter(rate, 2),
            ));
        }
    }
    m.push(member("node_memory_MemTotal_bytes", &[], Kind::Const(16.0 * GIB)));
    m.push(member("node_memory_SwapTotal_bytes", &[], Kind::Const(2.0 * GIB)));
    for name in [
        "node_memory_MemFree_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_Buffers_bytes",
        "node_memory_Cached_bytes",
        "node_memory_SwapFree_bytes",
        "node_memory_Active_bytes",
        "node_memory_Inactive_bytes",
        "node_memory_Dirty_bytes",
    ] {
        // Memory moves in whole pages.
        m.push(member(name, &[], gauge(0.05 * GIB, 12.0 * GIB, 4096.0 * 2000.0, 0)));
    }
    for name in ["node_load1", "node_load5", "node_load15"] {
        m.push(member(name, &[], gauge(0.0, 8.0, 0.3, 2)));
    }
    for (device, mountpoint, fstype, size) in [
        ("/dev/sda1", "/", "ext4", 100.0 * GIB),
        ("/dev/sdb1", "/var/lib/data", "xfs", 1000.0 * GIB),
        ("tmpfs", "/run", "tmpfs", 1.6 * GIB),
    ] {
        let labels = [("device", device), ("fstype", fstype), ("mountpoint", mountpoint)];
        m.push(member("node_filesystem_size_bytes", &labels, Kind::Const(size)));
        m.push(member(
            "node_filesystem_avail_bytes",
            &labels,
            gauge(0.1 * size, 0.9 * size, 4096.0 * 500.0, 0),
        ));
        m.push(member(
            "node_filesystem_free_bytes",
            &labels,
            gauge(0.15 * size, 0.95 * size, 4096.0 * 500.0, 0),
        ));
    }
    for device in ["sda", "nvme0n1"] {
        let labels = [("device", device)];
        m.push(member("node_disk_read_bytes_total", &labels, counter(2.0e6, 0)));
        m.push(member("node_disk_written_bytes_total", &labels, counter(5.0e6, 0)));
        m.push(member("node_disk_reads_completed_total", &labels, counter(40.0, 0)));
        m.push(member("node_disk_writes_completed_total", &labels, counter(120.0, 0)));
        m.push(member("node_disk_io_time_seconds_total", &labels, counter(0.05, 3)));
    }
    for (device, scale) in [("eth0", 1.0), ("lo", 0.1)] {
        let labels = [("device", device)];
        for dir in ["receive", "transmit"] {
            m.push(member(
                &format!("node_network_{dir}_bytes_total"),
                &labels,
                counter(3.0e5 * scale, 0),
            ));
            m.push(member(
                &format!("node_network_{dir}_packets_total"),
                &labels,
                counter(400.0 * scale, 0),
            ));
            m.push(member(
                &format!("node_network_{dir}_errs_total"),
                &labels,
                counter(0.001, 0),
            ));
            m.push(member(
                &format!("node_network_{dir}_drop_total"),
                &labels,
                counter(0.01, 0),
            ));
        }
    }
    m.push(member("node_context_switches_total", &[], counter(3000.0, 0)));
    m.push(member("node_intr_total", &[], counter(2000.0, 0)));
    m.push(member("node_forks_total", &[], counter(3.0, 0)));
    for (chip, sensor) in [("platform_coretemp_0", "temp1"), ("platform_coretemp_0", "temp2")] {
        m.push(member(
            "node_hwmon_temp_celsius",
            &[("chip", chip), ("sensor", sensor)],
            gauge(35.0, 85.0, 1.0, 1),
        ));
    }
    for collector in ["cpu", "diskstats", "filesystem", "meminfo", "netdev", "loadavg"] {
        m.push(member(
            "node_scrape_collector_duration_seconds",
            &[("collector", collector)],
            gauge(0.0001, 0.05, 0.002, 6),
        ));
    }
    m.push(member("up", &[], Kind::Const(1.0)));
    for (handler, rate, median) in [("/", 50.0, 0.02), ("/api/v1/query", 5.0, 0.2), ("/metrics", 0.1, 0.005)] {
        m.push(member(
            "http_request_duration_seconds",
            &[("handler", handler), ("method", "GET")],
            Kind::Histogram {
                bounds: LATENCY_BOUNDS.to_vec(),
                rate,
                median,
            },
        ));
    }
    m
}

/// How many series a template member expands to.
pub(super) fn member_series(kind: &Kind) -> usize {
    match kind {
        Kind::Histogram { bounds, .. } => bounds.len() + 2,
        _ => 1,
    }
}

/// Formats a histogram bound the way Prometheus client libraries do.
pub(super) fn format_le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{bound}")
    }
}
