//! Query-function plugins: the generated bindings and the adapter that makes each function a
//! [`strata_query::functions::CustomFunction`] of the PromQL function table.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use strata_query::functions::{CustomArg, CustomFunction, CustomOutput, WindowSeries};
use strata_query::{FunctionRegistry, Labels, ValueType};
use wasmtime::component::{Component, HasSelf, Linker};

use crate::error::{CallFailure, PluginError};
use crate::ingest::Counters;
use crate::runtime::{CallLimits, Pool, Runtime, State, classify, new_store};

#[allow(missing_docs)] // generated
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "query-function",
        with: {
            "strata:plugin/host": crate::ingest::bindings::strata::plugin::host,
            "strata:plugin/types": crate::ingest::bindings::strata::plugin::types,
        },
    });
}

use crate::ingest::bindings::strata::plugin::types::Batch;
use bindings::exports::strata::plugin::function as wit;

/// An argument or result kind, as the plugin declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `x[5m]`.
    RangeVector,
    /// One sample per series.
    InstantVector,
    /// A number.
    Scalar,
    /// A string literal.
    String,
}

impl From<wit::ValueKind> for Kind {
    fn from(k: wit::ValueKind) -> Self {
        match k {
            wit::ValueKind::RangeVector => Kind::RangeVector,
            wit::ValueKind::InstantVector => Kind::InstantVector,
            wit::ValueKind::Scalar => Kind::Scalar,
            wit::ValueKind::String => Kind::String,
        }
    }
}

impl Kind {
    fn value_type(self) -> ValueType {
        match self {
            Kind::RangeVector => ValueType::Matrix,
            Kind::InstantVector => ValueType::Vector,
            Kind::Scalar => ValueType::Scalar,
            Kind::String => ValueType::String,
        }
    }
}

/// One function a plugin provides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionSig {
    /// Name in queries.
    pub name: String,
    /// Argument kinds.
    pub args: Vec<Kind>,
    /// Trailing arguments that may be left out.
    pub optional_args: u32,
    /// Result kind.
    pub result: Kind,
}

/// A loaded query-function plugin; calls run in warm instances, dropped after a failure.
pub struct FunctionPlugin {
    name: Arc<str>,
    functions: Vec<FunctionSig>,
    pre: bindings::QueryFunctionPre<State>,
    engine: wasmtime::Engine,
    config: Arc<Vec<(String, String)>>,
    limits: CallLimits,
    pool: Pool<bindings::QueryFunction>,
    /// Counters, shared with the listing.
    pub counters: Counters,
}

impl FunctionPlugin {
    pub(crate) fn new(
        runtime: &Runtime,
        component: &Component,
        name: &str,
        config: Vec<(String, String)>,
        limits: CallLimits,
    ) -> Result<Self, String> {
        let engine = runtime.engine().clone();
        let mut linker = Linker::<State>::new(&engine);
        bindings::QueryFunction::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| format!("{e:#}"))?;
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| format!("{e:#}"))?;
        let pre = linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        let pre = bindings::QueryFunctionPre::new(pre).map_err(|e| format!("{e:#}"))?;
        let mut plugin = Self {
            name: name.into(),
            functions: Vec::new(),
            pre,
            engine,
            config: Arc::new(config),
            limits,
            pool: Pool::new(),
            counters: Counters::default(),
        };
        let described = plugin
            .run(|store, b| b.strata_plugin_function().call_describe(store))
            .map_err(|e| e.to_string())?;
        plugin.functions = described
            .into_iter()
            .map(|f| FunctionSig {
                name: f.name,
                args: f.args.into_iter().map(Kind::from).collect(),
                optional_args: f.optional_args,
                result: f.result.into(),
            })
            .collect();
        Ok(plugin)
    }

    /// The plugin's name (from the config).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The functions it provides.
    pub fn functions(&self) -> &[FunctionSig] {
        &self.functions
    }

    fn run<R>(
        &self,
        f: impl FnOnce(&mut wasmtime::Store<State>, &bindings::QueryFunction) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let make = || {
            let mut store = new_store(&self.engine, self.name.clone(), self.config.clone(), self.limits);
            let b = self.pre.instantiate(&mut store);
            (store, b)
        };
        self.pool.call(self.limits, make, f).map_err(|(store, err)| {
            let failure = classify(&store, &err, self.limits);
            self.counters.record(&failure);
            metrics::counter!("strata_plugin_failures_total", "plugin" => self.name.to_string(), "reason" => failure.reason())
                .increment(1);
            PluginError::Call { plugin: self.name.to_string(), failure }
        })
    }

    /// Evaluates `function` once for one step over all series.
    pub fn call(&self, function: &str, ts_ms: i64, args: &[CustomArg]) -> Result<CustomOutput, PluginError> {
        let wit_args: Vec<wit::Argument> = args
            .iter()
            .map(|a| match a {
                CustomArg::Scalar(v) => wit::Argument::Scalar(*v),
                CustomArg::String(s) => wit::Argument::String(s.clone()),
                CustomArg::Vector(v) => wit::Argument::InstantVector(vector_to_batch(v, ts_ms)),
                CustomArg::Matrix(m) => wit::Argument::RangeVector(matrix_to_batch(m)),
            })
            .collect();
        let result = self.run(|store, b| b.strata_plugin_function().call_call(store, function, ts_ms, &wit_args))?;
        let value = result.map_err(|m| PluginError::Parse {
            plugin: self.name.to_string(),
            line: 0,
            offset: 0,
            message: m,
        })?;
        match value {
            wit::Value::Scalar(v) => Ok(CustomOutput::Scalar(v)),
            wit::Value::InstantVector(b) => batch_to_vector(&b).map(CustomOutput::Vector).map_err(|m| {
                let failure = CallFailure::InvalidOutput(m);
                self.counters.record(&failure);
                PluginError::Call {
                    plugin: self.name.to_string(),
                    failure,
                }
            }),
        }
    }
}

fn vector_to_batch(v: &[(Labels, f64)], ts: i64) -> Batch {
    let mut b = Batch {
        symbols: Vec::new(),
        symbol_ends: Vec::new(),
        label_refs: Vec::new(),
        series_label_ends: Vec::with_capacity(v.len()),
        series_sample_ends: Vec::with_capacity(v.len()),
        timestamps: Vec::with_capacity(v.len()),
        values: Vec::with_capacity(v.len()),
    };
    let mut dict = Dict::new();
    for (labels, value) in v {
        dict.push_labels(&mut b, labels);
        b.timestamps.push(ts);
        b.values.push(*value);
        b.series_sample_ends.push(b.timestamps.len() as u32);
    }
    b
}

/// Symbols interned once per batch: every distinct string crosses the boundary once.
struct Dict<'a> {
    ids: std::collections::HashMap<&'a str, u32>,
}

impl<'a> Dict<'a> {
    fn new() -> Self {
        Self {
            ids: std::collections::HashMap::new(),
        }
    }

    fn push_labels(&mut self, b: &mut Batch, labels: &'a Labels) {
        for l in labels.iter() {
            for s in [l.name.as_str(), l.value.as_str()] {
                let id = *self.ids.entry(s).or_insert_with(|| {
                    b.symbols.extend_from_slice(s.as_bytes());
                    b.symbol_ends.push(b.symbols.len() as u32);
                    (b.symbol_ends.len() - 1) as u32
                });
                b.label_refs.push(id);
            }
        }
        b.series_label_ends.push((b.label_refs.len() / 2) as u32);
    }
}

fn matrix_to_batch(m: &[WindowSeries]) -> Batch {
    let samples: usize = m.iter().map(|s| s.values.len()).sum();
    let mut b = Batch {
        symbols: Vec::new(),
        symbol_ends: Vec::new(),
        label_refs: Vec::new(),
        series_label_ends: Vec::with_capacity(m.len()),
        series_sample_ends: Vec::with_capacity(m.len()),
        timestamps: Vec::with_capacity(samples),
        values: Vec::with_capacity(samples),
    };
    let mut dict = Dict::new();
    for s in m {
        dict.push_labels(&mut b, &s.labels);
        b.timestamps.extend_from_slice(&s.timestamps);
        b.values.extend_from_slice(&s.values);
        b.series_sample_ends.push(b.timestamps.len() as u32);
    }
    b
}

fn batch_to_vector(b: &Batch) -> Result<Vec<(Labels, f64)>, String> {
    let mut m = strata_ingest::MetricBatch::new();
    crate::ingest::convert(b, &mut m)?;
    let mut out = Vec::with_capacity(m.series_count());
    for s in m.iter() {
        let Some(&v) = s.values().last() else { continue };
        out.push((Labels::from_pairs(s.labels()), v));
    }
    Ok(out)
}

/// One plugin function as the PromQL engine sees it. Looks its plugin up on every call so a
/// reload takes effect at once.
pub(crate) struct PluginFunction {
    pub(crate) host: Arc<crate::PluginHost>,
    pub(crate) plugin: String,
    pub(crate) function: String,
}

impl CustomFunction for PluginFunction {
    fn call(&self, args: &[CustomArg], ts_ms: i64) -> Result<CustomOutput, String> {
        let plugin = self
            .host
            .function_plugin(&self.plugin)
            .ok_or_else(|| format!("plugin {} is not loaded", self.plugin))?;
        plugin.call(&self.function, ts_ms, args).map_err(|e| e.to_string())
    }
}

/// Registers every function of `plugin` into `registry`; errors name the function.
pub(crate) fn register(
    host: &Arc<crate::PluginHost>,
    plugin: &FunctionPlugin,
    registry: &mut FunctionRegistry,
) -> Vec<PluginError> {
    let mut errors = Vec::new();
    for f in plugin.functions() {
        let imp = Arc::new(PluginFunction {
            host: host.clone(),
            plugin: plugin.name().to_string(),
            function: f.name.clone(),
        });
        let args = f.args.iter().map(|k| k.value_type()).collect();
        let variadic = i32::try_from(f.optional_args).unwrap_or(i32::MAX);
        if let Err(e) = registry.register(&f.name, args, variadic, f.result.value_type(), imp) {
            errors.push(PluginError::Config {
                name: plugin.name().to_string(),
                message: e.to_string(),
            });
        }
    }
    errors
}
