//! Ingestion-protocol plugins: the generated bindings, the host imports, and calls in warm
//! instances (made from a pre-linked [`InstancePre`](wasmtime::component::InstancePre) and
//! recycled; see `runtime::Pool`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use strata_ingest::MetricBatch;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::error::{CallFailure, PluginError};
use crate::runtime::{CallLimits, Pool, Runtime, State, classify, new_store};

#[allow(missing_docs)] // generated
pub(crate) mod bindings {
    wasmtime::component::bindgen!({ path: "../../wit", world: "ingest-protocol" });
}

use bindings::strata::plugin::{host as wit_host, types as wit_types};

impl wit_types::Host for State {}

impl wit_host::Host for State {
    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        // Bound what a plugin can put into one log line.
        let message: String = message.chars().take(4096).collect();
        let plugin = &*self.plugin;
        match level {
            wit_host::LogLevel::Error => tracing::error!(plugin, "{message}"),
            wit_host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            wit_host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            wit_host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            wit_host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
        }
    }

    fn now_ms(&mut self) -> i64 {
        strata_ingest::limits::now_ms()
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.config.as_ref().clone()
    }
}

/// What an ingestion plugin says about itself (`describe`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestInfo {
    /// Protocol name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Accepted content types.
    pub content_types: Vec<String>,
    /// Default HTTP paths.
    pub http_paths: Vec<String>,
    /// Whether it understands line-framed TCP/UDP streams.
    pub line_framed: bool,
}

/// Call counters of one plugin.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls refused by the plugin (its own parse errors).
    pub parse_errors: AtomicU64,
    /// Calls that timed out.
    pub timeouts: AtomicU64,
    /// Calls that hit the memory limit.
    pub out_of_memory: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls whose output broke the batch contract.
    pub invalid_output: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, failure: &CallFailure) {
        let c = match failure {
            CallFailure::Timeout { .. } => &self.timeouts,
            CallFailure::OutOfMemory { .. } => &self.out_of_memory,
            CallFailure::Trap(_) => &self.traps,
            CallFailure::InvalidOutput(_) => &self.invalid_output,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A loaded ingestion plugin. Cheap to share (`Arc`); calls run in warm instances, and an
/// instance that failed is dropped, so a trap in one request cannot break the next.
pub struct IngestPlugin {
    name: Arc<str>,
    info: IngestInfo,
    pre: bindings::IngestProtocolPre<State>,
    engine: wasmtime::Engine,
    config: Arc<Vec<(String, String)>>,
    limits: CallLimits,
    pool: Pool<bindings::IngestProtocol>,
    /// Counters, shared with the listing.
    pub counters: Counters,
}

impl std::fmt::Debug for IngestPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestPlugin")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The version of `strata:plugin` this host implements.
pub const PACKAGE_VERSION: &str = "0.1.0";
const PACKAGE_SERIES: &str = "0.1";

/// Checks that `component` exports an interface of a compatible `strata:plugin` version.
/// Compatible means the same major version (for 0.x, the same minor, as semver has it).
pub(crate) fn check_version(engine: &wasmtime::Engine, component: &Component, name: &str) -> Result<(), PluginError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (export, _) in ty.exports(engine) {
        if let Some(rest) = export.strip_prefix("strata:plugin/") {
            let version = rest.split_once('@').map_or("", |(_, v)| v);
            if version.split('.').take(2).eq(PACKAGE_SERIES.split('.')) {
                return Ok(());
            }
            found.push(export.to_string());
        }
    }
    Err(PluginError::Version {
        name: name.to_string(),
        found: if found.is_empty() {
            "no strata:plugin interface".into()
        } else {
            found.join(", ")
        },
        host: PACKAGE_VERSION,
        host_major: PACKAGE_SERIES,
    })
}

impl IngestPlugin {
    /// Links `component` (already compiled and version-checked) and asks it to describe itself.
    pub(crate) fn new(
        runtime: &Runtime,
        component: &Component,
        name: &str,
        config: Vec<(String, String)>,
        limits: CallLimits,
    ) -> Result<Self, String> {
        let engine = runtime.engine().clone();
        let mut linker = Linker::<State>::new(&engine);
        bindings::IngestProtocol::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| format!("{e:#}"))?;
        // Rust's wasm32-wasip2 std imports WASI (stdio, environment, clocks, filesystem, random)
        // whether or not the plugin uses it. Nothing is granted: any such call traps.
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| format!("{e:#}"))?;
        let pre = linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        let pre = bindings::IngestProtocolPre::new(pre).map_err(|e| format!("{e:#}"))?;
        let mut plugin = Self {
            name: name.into(),
            info: IngestInfo::default(),
            pre,
            engine,
            config: Arc::new(config),
            limits,
            pool: Pool::new(),
            counters: Counters::default(),
        };
        let info = plugin
            .call(|store, b| b.strata_plugin_ingest().call_describe(store))
            .map_err(|e| e.to_string())?;
        plugin.info = IngestInfo {
            name: info.name,
            version: info.version,
            content_types: info.content_types,
            http_paths: info.http_paths,
            line_framed: info.line_framed,
        };
        Ok(plugin)
    }

    /// The plugin's name (from the config).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the plugin said about itself when loaded.
    pub fn info(&self) -> &IngestInfo {
        &self.info
    }

    /// The call limits.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Runs `f` in a warm (or new) instance under the limits, mapping any failure to a named reason.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut wasmtime::Store<State>, &bindings::IngestProtocol) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let make = || {
            let mut store = new_store(&self.engine, self.name.clone(), self.config.clone(), self.limits);
            let b = self.pre.instantiate(&mut store);
            (store, b)
        };
        self.pool.call(self.limits, make, f).map_err(|(store, err)| {
            let failure = classify(&store, &err, self.limits);
            self.fail(failure)
        })
    }

    /// Counts and logs a failed call and names it as an error.
    pub(crate) fn fail(&self, failure: CallFailure) -> PluginError {
        self.counters.record(&failure);
        metrics::counter!("strata_plugin_failures_total", "plugin" => self.name.to_string(), "reason" => failure.reason())
            .increment(1);
        tracing::warn!(plugin = %self.name, reason = failure.reason(), "plugin call failed: {failure}");
        PluginError::Call {
            plugin: self.name.to_string(),
            failure,
        }
    }

    /// Parses one request body into `out` (cleared first). `params` are the request's query
    /// parameters. The batch is structurally checked here; label and timestamp rules are the
    /// caller's ([`strata_ingest::IngestLimits::validate`]).
    pub fn parse_into(
        &self,
        params: &[(String, String)],
        body: &[u8],
        default_ts_ms: i64,
        out: &mut MetricBatch,
    ) -> Result<(), PluginError> {
        out.clear();
        let params = params.to_vec();
        let batch = self.call(|store, b| b.strata_plugin_ingest().call_parse(store, &params, body, default_ts_ms))?;
        let batch = batch.map_err(|e| {
            self.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
            PluginError::Parse {
                plugin: self.name.to_string(),
                line: e.line,
                offset: e.offset,
                message: e.message,
            }
        })?;
        convert(&batch, out).map_err(|m| {
            out.clear();
            self.fail(CallFailure::InvalidOutput(m))
        })
    }
}

impl IngestPlugin {
    /// A new instance under the plugin's limits, for a caller that keeps it for a while (a
    /// stream session, see [`crate::session`]) instead of returning it to the pool.
    pub(crate) fn instantiate(&self) -> (wasmtime::Store<State>, wasmtime::Result<bindings::IngestProtocol>) {
        let mut store = new_store(&self.engine, self.name.clone(), self.config.clone(), self.limits);
        let b = self.pre.instantiate(&mut store);
        (store, b)
    }
}

impl IngestPlugin {
    /// Calls `parse` and returns how many samples came back, without converting or checking
    /// them: the benchmarks use it to tell the cost of the call (body in, parse, batch out)
    /// from that of the conversion. Not for production paths.
    #[doc(hidden)]
    pub fn parse_count(
        &self,
        params: &[(String, String)],
        body: &[u8],
        default_ts_ms: i64,
    ) -> Result<usize, PluginError> {
        let params = params.to_vec();
        let batch = self.call(|store, b| b.strata_plugin_ingest().call_parse(store, &params, body, default_ts_ms))?;
        batch.map(|b| b.values.len()).map_err(|e| PluginError::Parse {
            plugin: self.name.to_string(),
            line: e.line,
            offset: e.offset,
            message: e.message,
        })
    }
}

/// Copies a WIT batch into a [`MetricBatch`], checking every offset and reference.
pub(crate) fn convert(b: &wit_types::Batch, out: &mut MetricBatch) -> Result<(), String> {
    let mut symbols: Vec<&str> = Vec::with_capacity(b.symbol_ends.len());
    let mut start = 0usize;
    for (i, &end) in b.symbol_ends.iter().enumerate() {
        let end = end as usize;
        let bytes = b.symbols.get(start..end).ok_or_else(|| {
            format!(
                "symbol {i} ends at {end}, outside 0..{} or before its start",
                b.symbols.len()
            )
        })?;
        symbols.push(std::str::from_utf8(bytes).map_err(|_| format!("symbol {i} is not valid UTF-8"))?);
        start = end;
    }
    if !b.label_refs.len().is_multiple_of(2) {
        return Err("label-refs holds an odd number of entries".into());
    }
    if b.series_label_ends.len() != b.series_sample_ends.len() {
        return Err("series-label-ends and series-sample-ends differ in length".into());
    }
    if b.timestamps.len() != b.values.len() {
        return Err("timestamps and values differ in length".into());
    }
    let sym = |r: u32| {
        symbols
            .get(r as usize)
            .copied()
            .ok_or_else(|| format!("label ref {r} is out of range"))
    };
    let (mut label_start, mut sample_start) = (0usize, 0usize);
    for (s, (&le, &se)) in b.series_label_ends.iter().zip(&b.series_sample_ends).enumerate() {
        let (le, se) = (le as usize, se as usize);
        if le < label_start || le * 2 > b.label_refs.len() || se < sample_start || se > b.timestamps.len() {
            return Err(format!("series {s} has ends out of order or out of range"));
        }
        for pair in b.label_refs[label_start * 2..le * 2].chunks_exact(2) {
            out.push_label(sym(pair[0])?, sym(pair[1])?)
                .map_err(|e| e.to_string())?;
        }
        for i in sample_start..se {
            out.push_sample(b.timestamps[i], b.values[i]);
        }
        out.finish_series().map_err(|e| e.to_string())?;
        (label_start, sample_start) = (le, se);
    }
    if label_start * 2 != b.label_refs.len() || sample_start != b.timestamps.len() {
        return Err("labels or samples after the last series".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> wit_types::Batch {
        wit_types::Batch {
            symbols: b"__name__upab".to_vec(),
            symbol_ends: vec![8, 10, 11, 12],
            label_refs: vec![0, 1, 2, 3],
            series_label_ends: vec![1, 2],
            series_sample_ends: vec![1, 3],
            timestamps: vec![1, 2, 3],
            values: vec![1.0, 2.0, 3.0],
        }
    }

    #[test]
    fn converts_a_valid_batch() {
        let mut out = MetricBatch::new();
        convert(&batch(), &mut out).unwrap();
        assert_eq!(out.series_count(), 2);
        assert_eq!(out.series(0).labels().collect::<Vec<_>>(), vec![("__name__", "up")]);
        assert_eq!(out.series(1).labels().collect::<Vec<_>>(), vec![("a", "b")]);
        assert_eq!(out.series(1).timestamps(), &[2, 3]);
    }

    #[test]
    fn refuses_every_broken_reference() {
        type Breaker = Box<dyn Fn(&mut wit_types::Batch)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("symbol end past the bytes", Box::new(|b| b.symbol_ends[3] = 99)),
            ("symbol ends decreasing", Box::new(|b| b.symbol_ends[1] = 2)),
            ("invalid utf-8", Box::new(|b| b.symbols[9] = 0xff)),
            ("odd refs", Box::new(|b| b.label_refs.push(0))),
            ("ref out of range", Box::new(|b| b.label_refs[3] = 4)),
            ("label ends past refs", Box::new(|b| b.series_label_ends[1] = 3)),
            ("sample ends decreasing", Box::new(|b| b.series_sample_ends[0] = 4)),
            (
                "values shorter",
                Box::new(|b| {
                    b.values.pop();
                }),
            ),
            ("trailing samples", Box::new(|b| b.series_sample_ends[1] = 2)),
            (
                "ends length mismatch",
                Box::new(|b| {
                    b.series_label_ends.pop();
                }),
            ),
        ];
        for (what, break_it) in cases {
            let mut b = batch();
            break_it(&mut b);
            let mut out = MetricBatch::new();
            assert!(convert(&b, &mut out).is_err(), "{what} was accepted");
        }
    }
}
