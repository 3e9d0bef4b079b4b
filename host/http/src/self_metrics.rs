//! The process's own metrics: the `metrics` facade's global recorder, rendered at `/metrics` in
//! Prometheus' text format, plus the standard `process_*` gauges and `strata_build_info`.
//!
//! Library crates record through the `metrics` macros only; this module is the one place that
//! installs a recorder, so libraries stay free of exporter code.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// What `strata_build_info` reports.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// Crate version.
    pub version: &'static str,
    /// The role this process runs.
    pub role: String,
}

/// A handle to render the process's metrics.
#[derive(Clone)]
pub struct MetricsHandle {
    prometheus: PrometheusHandle,
}

static HANDLE: OnceLock<MetricsHandle> = OnceLock::new();

impl MetricsHandle {
    /// Installs the global recorder once per process and records build info and the start time.
    /// Later calls return the same handle.
    pub fn install(build: &BuildInfo) -> MetricsHandle {
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let prometheus = recorder.handle();
            // If something else installed a recorder first (only possible in tests), we still
            // render our own handle; its metrics simply stay empty.
            let _ = metrics::set_global_recorder(recorder);
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            metrics::gauge!("process_start_time_seconds").set(start);
            MetricsHandle { prometheus }
        });
        metrics::gauge!(
            "strata_build_info",
            "version" => build.version,
            "role" => build.role.clone(),
            "rustc" => option_env!("STRATA_RUSTC_VERSION").unwrap_or("unknown"),
        )
        .set(1.0);
        handle.clone()
    }

    /// The metrics in Prometheus' text exposition format, process gauges refreshed first.
    pub fn render(&self) -> String {
        update_process_metrics();
        self.prometheus.run_upkeep();
        self.prometheus.render()
    }
}

/// Linux reports CPU times in clock ticks of USER_HZ, which the kernel ABI fixes at 100.
const USER_HZ: f64 = 100.0;

fn update_process_metrics() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for (field, name) in [
            ("VmRSS:", "process_resident_memory_bytes"),
            ("VmHWM:", "process_resident_memory_peak_bytes"),
            ("VmSize:", "process_virtual_memory_bytes"),
        ] {
            if let Some(kib) = status_kib(&status, field) {
                metrics::gauge!(name).set(kib as f64 * 1024.0);
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at index 3 (state).
        if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after ')'.
            let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let cpu = (ticks(11) + ticks(12)) as f64 / USER_HZ;
            metrics::gauge!("process_cpu_seconds_total").set(cpu);
            if let Some(threads) = fields.get(17).and_then(|v| v.parse::<f64>().ok()) {
                metrics::gauge!("process_threads").set(threads);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(entries.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
        && let Some(soft) = line.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok())
    {
        metrics::gauge!("process_max_fds").set(soft);
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tstrata\nVmRSS:\t  1234 kB\nVmHWM:\t2000 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1234));
        assert_eq!(status_kib(status, "VmSize:"), None);
    }

    #[test]
    fn renders_process_and_build_metrics() {
        let handle = MetricsHandle::install(&BuildInfo {
            version: "9.9.9",
            role: "single".into(),
        });
        let text = handle.render();
        assert!(text.contains("strata_build_info{"), "{text}");
        assert!(text.contains("version=\"9.9.9\""), "{text}");
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(name), "missing {name} in {text}");
        }
    }
}
