//! The function registry: built-in PromQL functions plus functions registered at run time
//! (plugins). The parser resolves calls against a registry, so new functions need no parser change.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::ast::ValueType;
use crate::labels::Labels;

/// Built-in functions, dispatched by the evaluator.
#[allow(missing_docs)] // Each variant is the PromQL function of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    Abs,
    Absent,
    AbsentOverTime,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    AvgOverTime,
    Ceil,
    Changes,
    Clamp,
    ClampMax,
    ClampMin,
    Cos,
    Cosh,
    CountOverTime,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Deg,
    Delta,
    Deriv,
    Exp,
    Floor,
    HistogramQuantile,
    HoltWinters,
    Hour,
    Idelta,
    Increase,
    Irate,
    LabelJoin,
    LabelReplace,
    LastOverTime,
    Ln,
    Log10,
    Log2,
    MadOverTime,
    MaxOverTime,
    MinOverTime,
    Minute,
    Month,
    Pi,
    PredictLinear,
    PresentOverTime,
    QuantileOverTime,
    Rad,
    Rate,
    Resets,
    Round,
    Scalar,
    Sgn,
    Sin,
    Sinh,
    Sort,
    SortDesc,
    Sqrt,
    StddevOverTime,
    StdvarOverTime,
    SumOverTime,
    Tan,
    Tanh,
    Time,
    Timestamp,
    Vector,
    Year,
}

/// One argument passed to a registered (non-built-in) function at one evaluation step.
#[derive(Debug, Clone)]
pub enum CustomArg {
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector: labels and values.
    Vector(Vec<(Labels, f64)>),
    /// A range vector: every series with its samples inside this step's window (series with
    /// none are left out; stale markers are removed).
    Matrix(Vec<WindowSeries>),
}

/// One series of a range-vector argument at one step, columnar.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSeries {
    /// Labels (with `__name__`).
    pub labels: Labels,
    /// Sample timestamps (ms), ascending.
    pub timestamps: Vec<i64>,
    /// Sample values, one per timestamp.
    pub values: Vec<f64>,
}

/// What a registered function returns at one step.
#[derive(Debug, Clone)]
pub enum CustomOutput {
    /// A scalar (the function must be declared with return type scalar).
    Scalar(f64),
    /// An instant vector (return type vector).
    Vector(Vec<(Labels, f64)>),
}

/// A function implemented outside the engine, e.g. by a wasm plugin. Called once per step.
pub trait CustomFunction: Send + Sync {
    /// Evaluates the function at `ts_ms`; an error aborts the query with that message.
    fn call(&self, args: &[CustomArg], ts_ms: i64) -> Result<CustomOutput, String>;
}

/// How a function is evaluated.
#[derive(Clone)]
pub enum FunctionImpl {
    /// Implemented by the engine.
    Builtin(Builtin),
    /// Registered at run time.
    Custom(Arc<dyn CustomFunction>),
}

impl fmt::Debug for FunctionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FunctionImpl::Builtin(b) => write!(f, "Builtin({b:?})"),
            FunctionImpl::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// A function signature plus its implementation.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Name as called in PromQL.
    pub name: String,
    /// Argument types; see `variadic` for optional trailing ones.
    pub arg_types: Vec<ValueType>,
    /// 0: exactly `arg_types.len()` arguments. n > 0: the last n are optional.
    /// -1: the last type repeats any number of times (at least `arg_types.len() - 1` args).
    pub variadic: i32,
    /// Result type.
    pub return_type: ValueType,
    /// Implementation.
    pub imp: FunctionImpl,
}

/// Why a function could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The name exists already.
    #[error("function {0:?} is already registered")]
    Duplicate(String),
    /// Name does not look like a PromQL identifier.
    #[error("invalid function name {0:?}")]
    BadName(String),
    /// Custom functions return scalars or instant vectors.
    #[error("function {0:?}: custom functions return a scalar or an instant vector")]
    BadSignature(String),
}

/// The set of functions a parser and evaluator know.
#[derive(Debug, Clone)]
pub struct FunctionRegistry {
    funcs: HashMap<String, Arc<FunctionDef>>,
}

impl Default for FunctionRegistry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl FunctionRegistry {
    /// A registry holding all of Prometheus' functions.
    pub fn with_builtins() -> Self {
        use Builtin as B;
        use ValueType::{Matrix as M, Scalar as S, String as Str, Vector as V};
        let table: Vec<(&str, Vec<ValueType>, i32, ValueType, Builtin)> = vec![
            ("abs", vec![V], 0, V, B::Abs),
            ("absent", vec![V], 0, V, B::Absent),
            ("absent_over_time", vec![M], 0, V, B::AbsentOverTime),
            ("acos", vec![V], 0, V, B::Acos),
            ("acosh", vec![V], 0, V, B::Acosh),
            ("asin", vec![V], 0, V, B::Asin),
            ("asinh", vec![V], 0, V, B::Asinh),
            ("atan", vec![V], 0, V, B::Atan),
            ("atanh", vec![V], 0, V, B::Atanh),
            ("avg_over_time", vec![M], 0, V, B::AvgOverTime),
            ("ceil", vec![V], 0, V, B::Ceil),
            ("changes", vec![M], 0, V, B::Changes),
            ("clamp", vec![V, S, S], 0, V, B::Clamp),
            ("clamp_max", vec![V, S], 0, V, B::ClampMax),
            ("clamp_min", vec![V, S], 0, V, B::ClampMin),
            ("cos", vec![V], 0, V, B::Cos),
            ("cosh", vec![V], 0, V, B::Cosh),
            ("count_over_time", vec![M], 0, V, B::CountOverTime),
            ("day_of_month", vec![V], 1, V, B::DayOfMonth),
            ("day_of_week", vec![V], 1, V, B::DayOfWeek),
            ("day_of_year", vec![V], 1, V, B::DayOfYear),
            ("days_in_month", vec![V], 1, V, B::DaysInMonth),
            ("deg", vec![V], 0, V, B::Deg),
            ("delta", vec![M], 0, V, B::Delta),
            ("deriv", vec![M], 0, V, B::Deriv),
            ("exp", vec![V], 0, V, B::Exp),
            ("floor", vec![V], 0, V, B::Floor),
            ("histogram_quantile", vec![S, V], 0, V, B::HistogramQuantile),
            ("holt_winters", vec![M, S, S], 0, V, B::HoltWinters),
            // Prometheus 3's name for the same function.
            ("double_exponential_smoothing", vec![M, S, S], 0, V, B::HoltWinters),
            ("hour", vec![V], 1, V, B::Hour),
            ("idelta", vec![M], 0, V, B::Idelta),
            ("increase", vec![M], 0, V, B::Increase),
            ("irate", vec![M], 0, V, B::Irate),
            ("label_join", vec![V, Str, Str, Str], -1, V, B::LabelJoin),
            ("label_replace", vec![V, Str, Str, Str, Str], 0, V, B::LabelReplace),
            ("last_over_time", vec![M], 0, V, B::LastOverTime),
            ("ln", vec![V], 0, V, B::Ln),
            ("log10", vec![V], 0, V, B::Log10),
            ("log2", vec![V], 0, V, B::Log2),
            ("mad_over_time", vec![M], 0, V, B::MadOverTime),
            ("max_over_time", vec![M], 0, V, B::MaxOverTime),
            ("min_over_time", vec![M], 0, V, B::MinOverTime),
            ("minute", vec![V], 1, V, B::Minute),
            ("month", vec![V], 1, V, B::Month),
            ("pi", vec![], 0, S, B::Pi),
            ("predict_linear", vec![M, S], 0, V, B::PredictLinear),
            ("present_over_time", vec![M], 0, V, B::PresentOverTime),
            ("quantile_over_time", vec![S, M], 0, V, B::QuantileOverTime),
            ("rad", vec![V], 0, V, B::Rad),
            ("rate", vec![M], 0, V, B::Rate),
            ("resets", vec![M], 0, V, B::Resets),
            ("round", vec![V, S], 1, V, B::Round),
            ("scalar", vec![V], 0, S, B::Scalar),
            ("sgn", vec![V], 0, V, B::Sgn),
            ("sin", vec![V], 0, V, B::Sin),
            ("sinh", vec![V], 0, V, B::Sinh),
            ("sort", vec![V], 0, V, B::Sort),
            ("sort_desc", vec![V], 0, V, B::SortDesc),
            ("sqrt", vec![V], 0, V, B::Sqrt),
            ("stddev_over_time", vec![M], 0, V, B::StddevOverTime),
            ("stdvar_over_time", vec![M], 0, V, B::StdvarOverTime),
            ("sum_over_time", vec![M], 0, V, B::SumOverTime),
            ("tan", vec![V], 0, V, B::Tan),
            ("tanh", vec![V], 0, V, B::Tanh),
            ("time", vec![], 0, S, B::Time),
            ("timestamp", vec![V], 0, V, B::Timestamp),
            ("vector", vec![S], 0, V, B::Vector),
            ("year", vec![V], 1, V, B::Year),
        ];
        let funcs = table
            .into_iter()
            .map(|(name, arg_types, variadic, return_type, b)| {
                (
                    name.to_string(),
                    Arc::new(FunctionDef {
                        name: name.to_string(),
                        arg_types,
                        variadic,
                        return_type,
                        imp: FunctionImpl::Builtin(b),
                    }),
                )
            })
            .collect();
        FunctionRegistry { funcs }
    }

    /// Looks a function up by name.
    pub fn get(&self, name: &str) -> Option<&Arc<FunctionDef>> {
        self.funcs.get(name)
    }

    /// All function names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.funcs.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Registers a custom function with its signature.
    pub fn register(
        &mut self,
        name: &str,
        arg_types: Vec<ValueType>,
        variadic: i32,
        return_type: ValueType,
        imp: Arc<dyn CustomFunction>,
    ) -> Result<(), RegisterError> {
        let valid = !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || crate::ast::AggOp::from_name(name).is_some() {
            return Err(RegisterError::BadName(name.to_string()));
        }
        if !matches!(return_type, ValueType::Scalar | ValueType::Vector) || variadic < -1 {
            return Err(RegisterError::BadSignature(name.to_string()));
        }
        if self.funcs.contains_key(name) {
            return Err(RegisterError::Duplicate(name.to_string()));
        }
        self.funcs.insert(
            name.to_string(),
            Arc::new(FunctionDef {
                name: name.to_string(),
                arg_types,
                variadic,
                return_type,
                imp: FunctionImpl::Custom(imp),
            }),
        );
        Ok(())
    }
}
