//! What the plugin-host benches share: where the built components are, the Influx body they
//! parse, and the calling thread's CPU clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use strata_plugin_host::{CallLimits, PluginKind, PluginSpec};

/// An ingestion plugin from `plugins/dist` (or `$STRATA_PLUGIN_DIST`, to compare other builds
/// of the components with one host binary), with generous limits.
pub fn spec(name: &str, file: &str) -> PluginSpec {
    let dist = std::env::var_os("STRATA_PLUGIN_DIST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"),
        PathBuf::from,
    );
    let path = dist.join(format!("{file}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    PluginSpec {
        name: name.into(),
        path,
        kind: PluginKind::Ingest,
        config: BTreeMap::new(),
        http_paths: None,
        limits: CallLimits {
            max_memory_bytes: 512 << 20,
            timeout: Duration::from_secs(10),
        },
    }
}

/// 10k Influx lines, 20k samples (two fields per line): the body every Influx figure parses.
/// The same lines as `plugins/influx/benches/native.rs`.
pub fn influx_body() -> String {
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
    body
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`; Linux only). On
/// a shared machine this leaves out the time spent waiting for a core, which wall time keeps.
// Not every bench that includes this module reads the CPU clock.
#[allow(dead_code)]
pub fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat format")
}
