//! The query-function side: the trait a plugin implements and the adapter that exports it.

use std::marker::PhantomData;

use crate::batch::Batch;
use crate::function_bindings::exports::strata::plugin::function as wit;
use crate::function_bindings::strata::plugin::types as wit_types;

/// The kind of an argument or a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Series with the samples of a window (`x[5m]`).
    RangeVector,
    /// Series with one sample each.
    InstantVector,
    /// A number.
    Scalar,
    /// A string literal.
    String,
}

/// One function a plugin provides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The name in queries.
    pub name: String,
    /// Argument kinds.
    pub args: Vec<ValueKind>,
    /// How many trailing arguments may be left out.
    pub optional_args: u32,
    /// Result kind (instant vector or scalar).
    pub result: ValueKind,
}

/// An argument value; vectors hold every series of the evaluation step.
#[derive(Clone, Debug, PartialEq)]
pub enum Argument {
    /// A range vector.
    RangeVector(Batch),
    /// An instant vector.
    InstantVector(Batch),
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
}

/// A result value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// One sample per series, at the evaluation time.
    InstantVector(Batch),
    /// A number.
    Scalar(f64),
}

/// Query functions. Implement it and call [`export_functions!`](crate::export_functions).
/// `call` runs once per evaluation step over all series, never per series.
pub trait FunctionPlugin: 'static {
    /// The functions provided. Cheap and constant.
    fn describe() -> Vec<FunctionInfo>;
    /// Evaluates `name` at `eval_ts_ms`; an error aborts the query with its message.
    fn call(name: &str, eval_ts_ms: i64, args: Vec<Argument>) -> Result<Value, String>;
}

/// Implements the generated `Guest` trait for any [`FunctionPlugin`]. Not used directly.
pub struct FunctionAdapter<T>(PhantomData<T>);

fn from_wit(b: wit_types::Batch) -> Batch {
    Batch {
        symbols: b.symbols,
        symbol_ends: b.symbol_ends,
        label_refs: b.label_refs,
        series_label_ends: b.series_label_ends,
        series_sample_ends: b.series_sample_ends,
        timestamps: b.timestamps,
        values: b.values,
    }
}

fn to_wit(b: Batch) -> wit_types::Batch {
    wit_types::Batch {
        symbols: b.symbols,
        symbol_ends: b.symbol_ends,
        label_refs: b.label_refs,
        series_label_ends: b.series_label_ends,
        series_sample_ends: b.series_sample_ends,
        timestamps: b.timestamps,
        values: b.values,
    }
}

fn kind(k: ValueKind) -> wit::ValueKind {
    match k {
        ValueKind::RangeVector => wit::ValueKind::RangeVector,
        ValueKind::InstantVector => wit::ValueKind::InstantVector,
        ValueKind::Scalar => wit::ValueKind::Scalar,
        ValueKind::String => wit::ValueKind::String,
    }
}

impl<T: FunctionPlugin> wit::Guest for FunctionAdapter<T> {
    fn describe() -> Vec<wit::FunctionInfo> {
        T::describe()
            .into_iter()
            .map(|f| wit::FunctionInfo {
                name: f.name,
                args: f.args.into_iter().map(kind).collect(),
                optional_args: f.optional_args,
                result: kind(f.result),
            })
            .collect()
    }

    fn call(name: String, eval_ts_ms: i64, args: Vec<wit::Argument>) -> Result<wit::Value, String> {
        let args = args
            .into_iter()
            .map(|a| match a {
                wit::Argument::RangeVector(b) => Argument::RangeVector(from_wit(b)),
                wit::Argument::InstantVector(b) => Argument::InstantVector(from_wit(b)),
                wit::Argument::Scalar(v) => Argument::Scalar(v),
                wit::Argument::String(s) => Argument::String(s),
            })
            .collect();
        Ok(match T::call(&name, eval_ts_ms, args)? {
            Value::InstantVector(b) => wit::Value::InstantVector(to_wit(b)),
            Value::Scalar(v) => wit::Value::Scalar(v),
        })
    }
}

/// Exports a [`FunctionPlugin`] implementation as the component's `function` interface.
#[macro_export]
macro_rules! export_functions {
    ($plugin:ty) => {
        // Exports exist only in the component; native builds (unit tests) skip them.
        #[cfg(target_arch = "wasm32")]
        type __StrataFunctionExport = $crate::FunctionAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::function_bindings::__export_query_function!(
            __StrataFunctionExport with_types_in $crate::function_bindings
        );
    };
}
