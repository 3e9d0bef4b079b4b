//! The evaluator. Every expression is evaluated for all steps of the query at once: a node
//! yields one value per step (per series), selectors read each series once over the whole span
//! and slide their windows across the steps. An instant query is a range query with one step.

mod aggr;
mod binop;
mod funcs;
mod rangefn;
mod scan;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ast::{AtModifier, Expr, ValueType, VectorSelector};
use crate::functions::FunctionRegistry;
use crate::labels::{LabelMatcher, Labels};
use crate::parser::{ParseError, parse_with_limits};
use crate::regex_limits::RegexLimits;
use crate::source::{SeriesSource, SourceError, is_stale_nan};

/// Marks "no sample at this step" inside per-step value arrays. It is a signalling-NaN bit
/// pattern that neither storage (stale markers are 0x7ff0000000000002) nor arithmetic produces.
pub(crate) const ABSENT_BITS: u64 = 0x7ff0_0000_dead_0001;

pub(crate) fn absent() -> f64 {
    f64::from_bits(ABSENT_BITS)
}

pub(crate) fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

/// Engine limits and defaults; `Default` follows Prometheus' defaults.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Subquery step when none is written (Prometheus: the global evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
    /// Most series one selector may load.
    pub max_series: usize,
    /// Most samples a query may load in total (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Most points per series in a range query result (Prometheus: 11,000).
    pub max_points_per_series: usize,
    /// Wall-clock budget for one query (Prometheus: 2m).
    pub timeout: Duration,
    /// Threads used for per-series work; 0 means the number of CPUs.
    pub threads: usize,
    /// Most bytes of source in one regex (matchers, `label_replace`); longer ones are refused
    /// before compiling.
    pub max_regex_length: usize,
    /// Most bytes one compiled regex may take; larger ones (regex bombs) are refused while
    /// compiling. At most [`crate::regex_limits::MAX_REGEX_COMPILED_BYTES`].
    pub max_regex_compiled_bytes: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_series: 1_000_000,
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            timeout: Duration::from_secs(120),
            threads: 0,
            max_regex_length: crate::regex_limits::DEFAULT_MAX_REGEX_LENGTH,
            max_regex_compiled_bytes: crate::regex_limits::DEFAULT_MAX_REGEX_COMPILED_BYTES,
        }
    }
}

impl QueryOptions {
    /// The regex caps of these options.
    pub fn regex_limits(&self) -> RegexLimits {
        RegexLimits {
            max_length: self.max_regex_length,
            max_compiled_bytes: self.max_regex_compiled_bytes,
        }
    }
}

/// Why a query failed. `Parse` and `BadRequest` are the client's fault (HTTP 400),
/// `Timeout` maps to 503, the rest to 422 (execution error) as in Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query did not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// Bad parameters (step, range, result type for a range query).
    #[error("{0}")]
    BadRequest(String),
    /// Storage failed.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A selector matched more series than allowed.
    #[error("the query hit the max number of series limit (limit: {0})")]
    TooManySeries(usize),
    /// The query would load more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran out of time.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// An evaluation error with Prometheus' wording.
    #[error("{0}")]
    Eval(String),
}

/// One sample of an instant vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels.
    pub labels: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a matrix result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Labels.
    pub labels: Labels,
    /// Points `(timestamp ms, value)`.
    pub points: Vec<(i64, f64)>,
}

/// A query result in Prometheus' four shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// A scalar at a time.
    Scalar {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Timestamp (ms).
        t: i64,
        /// Value.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (instant query of a range selector, or any range query).
    Matrix(Vec<RangeSeries>),
}

/// Work counters of one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Series read from the source.
    pub series_fetched: usize,
    /// Samples read from the source.
    pub samples_fetched: usize,
}

/// A result plus its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: QueryValue,
    /// Counters.
    pub stats: QueryStats,
}

/// Parses and evaluates PromQL against a `SeriesSource`.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn SeriesSource>,
    registry: Arc<FunctionRegistry>,
    opts: QueryOptions,
}

impl Engine {
    /// An engine over `source` with the built-in functions.
    pub fn new(source: Arc<dyn SeriesSource>, opts: QueryOptions) -> Self {
        Self::with_registry(source, Arc::new(FunctionRegistry::with_builtins()), opts)
    }

    /// An engine with a custom function registry (built-ins plus plugin functions).
    pub fn with_registry(source: Arc<dyn SeriesSource>, registry: Arc<FunctionRegistry>, opts: QueryOptions) -> Self {
        Engine { source, registry, opts }
    }

    /// The limits and defaults this engine runs with.
    pub fn options(&self) -> &QueryOptions {
        &self.opts
    }

    /// The function registry used for parsing.
    pub fn registry(&self) -> &FunctionRegistry {
        &self.registry
    }

    /// The source queries read from.
    pub fn source(&self) -> &Arc<dyn SeriesSource> {
        &self.source
    }

    /// Parses `query` with this engine's registry and regex limits.
    pub fn parse(&self, query: &str) -> Result<Expr, QueryError> {
        Ok(parse_with_limits(query, &self.registry, self.opts.regex_limits())?)
    }

    /// Evaluates `query` at `t_ms`.
    pub fn instant_query(&self, query: &str, t_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = self.parse(query)?;
        self.instant_expr(&expr, t_ms)
    }

    /// Evaluates a parsed expression at `t_ms`.
    pub fn instant_expr(&self, expr: &Expr, t_ms: i64) -> Result<QueryResult, QueryError> {
        let ctx = Ctx::new(self, t_ms, t_ms, 1, t_ms, t_ms);
        let v = ctx.eval(expr)?;
        let value = match v {
            Val::Scalar(s) => QueryValue::Scalar { t: t_ms, v: s[0] },
            Val::String(s) => QueryValue::String { t: t_ms, v: s },
            Val::Vector(series) => {
                let mut out: Vec<Sample> = series
                    .into_iter()
                    .filter(|s| !is_absent(s.vals[0]))
                    .map(|s| Sample {
                        labels: s.labels,
                        t: t_ms,
                        v: s.vals[0],
                    })
                    .collect();
                if !matches!(unwrap_parens(expr), Expr::Call { func, .. } if matches!(func.imp, crate::functions::FunctionImpl::Builtin(crate::functions::Builtin::Sort | crate::functions::Builtin::SortDesc)))
                {
                    out.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
                QueryValue::Vector(out)
            }
            Val::Matrix(m) => {
                let mut out: Vec<RangeSeries> = m
                    .series
                    .into_iter()
                    .map(|s| RangeSeries {
                        labels: s.labels,
                        points: s.ts.into_iter().zip(s.vals).collect(),
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryValue::Matrix(out)
            }
        };
        Ok(QueryResult {
            value,
            stats: ctx.stats(),
        })
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms` inclusive.
    pub fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let expr = self.parse(query)?;
        self.range_expr(&expr, start_ms, end_ms, step_ms)
    }

    /// Evaluates a parsed expression over a range.
    pub fn range_expr(&self, expr: &Expr, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadRequest(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadRequest(
                "end timestamp must not be before start time".into(),
            ));
        }
        let nsteps = (end_ms.saturating_sub(start_ms) / step_ms).saturating_add(1) as usize;
        if nsteps > self.opts.max_points_per_series {
            return Err(QueryError::BadRequest(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                self.opts.max_points_per_series
            )));
        }
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            t => {
                return Err(QueryError::BadRequest(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    t.name()
                )));
            }
        }
        let ctx = Ctx::new(self, start_ms, end_ms, step_ms, start_ms, end_ms);
        let v = ctx.eval(expr)?;
        let series = match v {
            Val::Scalar(s) => vec![StepSeries {
                labels: Labels::new(),
                vals: s,
            }],
            Val::Vector(s) => s,
            _ => return Err(QueryError::Eval("unexpected result type".into())),
        };
        let mut out: Vec<RangeSeries> = series
            .into_iter()
            .map(|s| RangeSeries {
                points: s
                    .vals
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !is_absent(**v))
                    .map(|(i, v)| (ctx.t(i), *v))
                    .collect(),
                labels: s.labels,
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult {
            value: QueryValue::Matrix(out),
            stats: ctx.stats(),
        })
    }
}

pub(crate) fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(inner) => unwrap_parens(inner),
        e => e,
    }
}

/// One series with a value per step (`absent()` where it has none).
#[derive(Debug, Clone)]
pub(crate) struct StepSeries {
    pub labels: Labels,
    pub vals: Vec<f64>,
}

/// Raw samples of one series (stale markers removed), as range functions see them.
#[derive(Debug, Clone)]
pub(crate) struct RawSeries {
    pub labels: Labels,
    pub ts: Vec<i64>,
    pub vals: Vec<f64>,
}

/// A range vector argument: raw series plus, per step, the window end (`refs`) and length.
#[derive(Debug)]
pub(crate) struct MatrixVal {
    pub series: Vec<RawSeries>,
    pub refs: Vec<i64>,
    pub range: i64,
}

/// The value of an expression for all steps.
#[derive(Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    Matrix(MatrixVal),
}

/// Evaluation context: the steps, the query's own start/end (for `@ start()`), limits.
pub(crate) struct Ctx<'e> {
    pub engine: &'e Engine,
    pub start: i64,
    pub step: i64,
    pub nsteps: usize,
    pub query_start: i64,
    pub query_end: i64,
    pub deadline: Instant,
    pub series_fetched: Arc<AtomicUsize>,
    pub samples_fetched: Arc<AtomicUsize>,
}

impl<'e> Ctx<'e> {
    fn new(engine: &'e Engine, start: i64, end: i64, step: i64, query_start: i64, query_end: i64) -> Self {
        Ctx {
            engine,
            start,
            step,
            nsteps: (end.saturating_sub(start) / step).saturating_add(1) as usize,
            query_start,
            query_end,
            deadline: Instant::now() + engine.opts.timeout,
            series_fetched: Arc::new(AtomicUsize::new(0)),
            samples_fetched: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A context for a subquery's inner expression sharing counters and deadline.
    fn sub(&self, start: i64, end: i64, step: i64) -> Ctx<'e> {
        Ctx {
            engine: self.engine,
            start,
            step,
            nsteps: (end.saturating_sub(start) / step).saturating_add(1) as usize,
            query_start: self.query_start,
            query_end: self.query_end,
            deadline: self.deadline,
            series_fetched: self.series_fetched.clone(),
            samples_fetched: self.samples_fetched.clone(),
        }
    }

    fn stats(&self) -> QueryStats {
        QueryStats {
            series_fetched: self.series_fetched.load(Ordering::Relaxed),
            samples_fetched: self.samples_fetched.load(Ordering::Relaxed),
        }
    }

    pub fn opts(&self) -> &QueryOptions {
        &self.engine.opts
    }

    /// Timestamp of step `i`.
    pub fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            Err(QueryError::Timeout)
        } else {
            Ok(())
        }
    }

    /// The reference time of each step for a selector/subquery with `offset` and `at`.
    pub fn refs(&self, offset: i64, at: Option<AtModifier>) -> Vec<i64> {
        (0..self.nsteps)
            .map(|i| {
                let base = match at {
                    None => self.t(i),
                    Some(AtModifier::Timestamp(t)) => t,
                    Some(AtModifier::Start) => self.query_start,
                    Some(AtModifier::End) => self.query_end,
                };
                base.saturating_sub(offset)
            })
            .collect()
    }

    /// Reads series for `matchers` over `[mint, maxt]`, enforcing the limits. Holds every
    /// series at once: prefer [`Ctx::scan_map`], which computes per series as they arrive.
    pub fn fetch(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<crate::source::Series>, QueryError> {
        self.scan_map(matchers, mint, maxt, Some)
    }

    pub fn eval(&self, e: &Expr) -> Result<Val, QueryError> {
        self.check_deadline()?;
        match e {
            Expr::Number(v) => Ok(Val::Scalar(vec![*v; self.nsteps])),
            Expr::String(s) => Ok(Val::String(s.clone())),
            Expr::Paren(inner) => self.eval(inner),
            Expr::Vector(vs) => Ok(Val::Vector(self.eval_selector(vs)?)),
            Expr::Matrix { .. } | Expr::Subquery { .. } => Ok(Val::Matrix(self.eval_matrix(e)?)),
            Expr::Neg(inner) => Ok(match self.eval(inner)? {
                Val::Scalar(mut s) => {
                    s.iter_mut().for_each(|v| *v = -*v);
                    Val::Scalar(s)
                }
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.labels = s.labels.without_name();
                        s.vals.iter_mut().filter(|v| !is_absent(**v)).for_each(|v| *v = -*v);
                    }
                    Val::Vector(merge_same_labels(vs)?)
                }
                other => other,
            }),
            Expr::Binary { .. } => binop::eval_binary(self, e),
            Expr::Call { .. } => funcs::eval_call(self, e),
            Expr::Aggregate { .. } => aggr::eval_aggregate(self, e),
        }
    }

    /// An instant vector selector: the latest sample within the lookback window per step,
    /// unless that sample is a stale marker.
    pub fn eval_selector(&self, vs: &VectorSelector) -> Result<Vec<StepSeries>, QueryError> {
        let refs = self.refs(vs.offset, vs.at);
        let (lo, hi) = min_max(&refs);
        let lookback = self.opts().lookback_ms;
        // Series without a value at any step are dropped at once: they cannot affect a result.
        self.scan_map(&vs.matchers, lo.saturating_sub(lookback), hi, |s| {
            let vals = selector_steps(&s.timestamps, &s.values, &refs, lookback);
            vals.iter()
                .any(|v| !is_absent(*v))
                .then_some(StepSeries { vals, labels: s.labels })
        })
    }

    /// Worker threads for per-series work.
    pub fn threads(&self) -> usize {
        match self.opts().threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }

    /// Runs `f` over the series, in parallel chunks when there are many.
    pub fn map_series<T: Send, U: Send>(&self, items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
        let threads = self.threads();
        if threads <= 1 || items.len() < 256 {
            return items.into_iter().map(f).collect();
        }
        let chunk = items.len().div_ceil(threads);
        let mut chunks: Vec<Vec<T>> = Vec::new();
        let mut it = items.into_iter();
        loop {
            let c: Vec<T> = it.by_ref().take(chunk).collect();
            if c.is_empty() {
                break;
            }
            chunks.push(c);
        }
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<U>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    }

    /// A range vector: a matrix selector or a subquery.
    pub fn eval_matrix(&self, e: &Expr) -> Result<MatrixVal, QueryError> {
        match unwrap_parens(e) {
            Expr::Matrix { selector, range } => {
                let refs = self.refs(selector.offset, selector.at);
                let (lo, hi) = min_max(&refs);
                let series = self.scan_map(&selector.matchers, lo.saturating_sub(*range), hi, |s| {
                    Some(if s.values.iter().any(|v| is_stale_nan(*v)) {
                        let keep: Vec<usize> = (0..s.values.len()).filter(|&i| !is_stale_nan(s.values[i])).collect();
                        RawSeries {
                            ts: keep.iter().map(|&i| s.timestamps[i]).collect(),
                            vals: keep.iter().map(|&i| s.values[i]).collect(),
                            labels: s.labels,
                        }
                    } else {
                        RawSeries {
                            ts: s.timestamps,
                            vals: s.values,
                            labels: s.labels,
                        }
                    })
                })?;
                Ok(MatrixVal {
                    series,
                    refs,
                    range: *range,
                })
            }
            Expr::Subquery {
                expr,
                range,
                step,
                offset,
                at,
            } => {
                let step = step.unwrap_or(self.opts().default_subquery_step_ms);
                let refs = self.refs(*offset, *at);
                let (lo, hi) = min_max(&refs);
                let mint = lo.saturating_sub(*range);
                // Inner steps are aligned to multiples of the step, as Prometheus does.
                let mut start = mint.div_euclid(step) * step;
                if start < mint {
                    start += step;
                }
                if start > hi {
                    return Ok(MatrixVal {
                        series: vec![],
                        refs,
                        range: *range,
                    });
                }
                let inner_steps = (hi.saturating_sub(start) / step).saturating_add(1) as usize;
                if inner_steps > self.opts().max_samples {
                    return Err(QueryError::TooManySamples);
                }
                let sub = self.sub(start, hi, step);
                let series = match sub.eval(expr)? {
                    Val::Vector(v) => v
                        .into_iter()
                        .map(|s| {
                            let mut ts = Vec::new();
                            let mut vals = Vec::new();
                            for (i, v) in s.vals.iter().enumerate() {
                                if !is_absent(*v) {
                                    ts.push(sub.t(i));
                                    vals.push(*v);
                                }
                            }
                            RawSeries {
                                labels: s.labels,
                                ts,
                                vals,
                            }
                        })
                        .filter(|s| !s.ts.is_empty())
                        .collect(),
                    _ => return Err(QueryError::Eval("subquery of a non-vector".into())),
                };
                Ok(MatrixVal {
                    series,
                    refs,
                    range: *range,
                })
            }
            _ => Err(QueryError::Eval("expected a range vector".into())),
        }
    }
}

pub(crate) fn min_max(v: &[i64]) -> (i64, i64) {
    let lo = v.iter().copied().min().unwrap_or(0);
    let hi = v.iter().copied().max().unwrap_or(0);
    (lo, hi)
}

/// Per step: the latest sample in `[ref - lookback, ref]`, absent if none or stale.
/// `refs` may be in any order; the common ascending case runs in one forward pass.
pub(crate) fn selector_steps(ts: &[i64], vals: &[f64], refs: &[i64], lookback: i64) -> Vec<f64> {
    let mut out = Vec::with_capacity(refs.len());
    let mut idx = 0usize; // number of samples with t <= current ref
    let mut prev_ref = i64::MIN;
    for &r in refs {
        if r < prev_ref {
            idx = ts.partition_point(|&t| t <= r);
        } else {
            while idx < ts.len() && ts[idx] <= r {
                idx += 1;
            }
        }
        prev_ref = r;
        let v = if idx == 0 {
            absent()
        } else {
            let j = idx - 1;
            if ts[j] < r.saturating_sub(lookback) || is_stale_nan(vals[j]) {
                absent()
            } else {
                vals[j]
            }
        };
        out.push(v);
    }
    out
}

/// Merges series that ended up with the same labels (e.g. after dropping `__name__`); two of
/// them having a value at the same step is Prometheus' "same labelset" error.
pub(crate) fn merge_same_labels(series: Vec<StepSeries>) -> Result<Vec<StepSeries>, QueryError> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<StepSeries> = Vec::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                let dst = &mut out[i];
                for (d, v) in dst.vals.iter_mut().zip(s.vals) {
                    if is_absent(v) {
                        continue;
                    }
                    if !is_absent(*d) {
                        return Err(QueryError::Eval(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    *d = v;
                }
            }
        }
    }
    Ok(out)
}
