//! Function calls: dispatch to range functions, instant-vector functions, and run-time
//! registered (custom) functions.

use super::rangefn::{eval_range_fn, eval_range_fn_selector};
use super::{Ctx, QueryError, StepSeries, Val, absent, is_absent, merge_same_labels, min_max, unwrap_parens};
use crate::ast::{Expr, ValueType};
use crate::functions::{Builtin, CustomArg, CustomOutput, FunctionImpl};
use crate::labels::{Labels, METRIC_NAME, MatchOp};
use crate::source::is_stale_nan;

pub(crate) fn eval_call(ctx: &Ctx<'_>, e: &Expr) -> Result<Val, QueryError> {
    let Expr::Call { func, args } = e else {
        return Err(QueryError::Eval("not a call".into()));
    };
    let b = match &func.imp {
        FunctionImpl::Builtin(b) => *b,
        FunctionImpl::Custom(f) => return eval_custom(ctx, f.as_ref(), func.return_type, args),
    };
    use Builtin as B;
    // Range-vector functions.
    if let Some(mpos) = func.arg_types.iter().position(|t| *t == ValueType::Matrix) {
        if b == B::AbsentOverTime {
            return absent_over_time(ctx, &args[0]);
        }
        let mut scalars = Vec::new();
        for (k, a) in args.iter().enumerate() {
            if k != mpos {
                scalars.push(scalar_arg(ctx, a)?);
            }
        }
        // Over a plain matrix selector, compute per series as they stream in.
        if let Expr::Matrix { selector, range } = unwrap_parens(&args[mpos]) {
            return Ok(Val::Vector(eval_range_fn_selector(ctx, b, selector, *range, &scalars)?));
        }
        let m = ctx.eval_matrix(&args[mpos])?;
        return Ok(Val::Vector(eval_range_fn(ctx, b, m, &scalars)?));
    }
    match b {
        B::Time => Ok(Val::Scalar((0..ctx.nsteps).map(|i| ctx.t(i) as f64 / 1000.0).collect())),
        B::Pi => Ok(Val::Scalar(vec![std::f64::consts::PI; ctx.nsteps])),
        B::Vector => {
            let s = scalar_arg(ctx, &args[0])?;
            Ok(Val::Vector(vec![StepSeries {
                labels: Labels::new(),
                vals: s,
            }]))
        }
        B::Scalar => {
            let v = vector_arg(ctx, &args[0])?;
            let out = (0..ctx.nsteps)
                .map(|i| {
                    let mut present = v.iter().filter(|s| !is_absent(s.vals[i]));
                    match (present.next(), present.next()) {
                        (Some(s), None) => s.vals[i],
                        _ => f64::NAN,
                    }
                })
                .collect();
            Ok(Val::Scalar(out))
        }
        B::Absent => {
            let v = vector_arg(ctx, &args[0])?;
            let vals = (0..ctx.nsteps)
                .map(|i| {
                    if v.iter().any(|s| !is_absent(s.vals[i])) {
                        absent()
                    } else {
                        1.0
                    }
                })
                .collect();
            Ok(Val::Vector(vec![StepSeries {
                labels: absent_labels(&args[0]),
                vals,
            }]))
        }
        B::Timestamp => timestamp(ctx, &args[0]),
        B::Sort | B::SortDesc => {
            let mut v = vector_arg(ctx, &args[0])?;
            if ctx.nsteps == 1 {
                let desc = b == B::SortDesc;
                v.retain(|s| !is_absent(s.vals[0]));
                v.sort_by(|a, b| {
                    let (x, y) = (a.vals[0], b.vals[0]);
                    // NaN sorts last both ways, as in Prometheus.
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        B::LabelReplace => label_replace(ctx, args),
        B::LabelJoin => label_join(ctx, args),
        B::HistogramQuantile => {
            super::aggr::histogram_quantile(ctx, scalar_arg(ctx, &args[0])?, vector_arg(ctx, &args[1])?)
        }
        B::Round => {
            let to = match args.get(1) {
                Some(a) => scalar_arg(ctx, a)?,
                None => vec![1.0; ctx.nsteps],
            };
            map_values(ctx, &args[0], |v, i| {
                let inv = 1.0 / to[i];
                Some((v * inv + 0.5).floor() / inv)
            })
        }
        B::Clamp => {
            let lo = scalar_arg(ctx, &args[1])?;
            let hi = scalar_arg(ctx, &args[2])?;
            map_values(ctx, &args[0], |v, i| {
                (hi[i] >= lo[i]).then(|| go_max(lo[i], go_min(hi[i], v)))
            })
        }
        B::ClampMin => {
            let lo = scalar_arg(ctx, &args[1])?;
            map_values(ctx, &args[0], |v, i| Some(go_max(v, lo[i])))
        }
        B::ClampMax => {
            let hi = scalar_arg(ctx, &args[1])?;
            map_values(ctx, &args[0], |v, i| Some(go_min(v, hi[i])))
        }
        B::DayOfMonth | B::DayOfWeek | B::DayOfYear | B::DaysInMonth | B::Hour | B::Minute | B::Month | B::Year => {
            let f = move |v: f64, _: usize| Some(date_part(b, v));
            match args.first() {
                Some(a) => map_values(ctx, a, f),
                None => Ok(Val::Vector(vec![StepSeries {
                    labels: Labels::new(),
                    vals: (0..ctx.nsteps)
                        .map(|i| date_part(b, ctx.t(i) as f64 / 1000.0))
                        .collect(),
                }])),
            }
        }
        _ => {
            let f: fn(f64) -> f64 = match b {
                B::Abs => f64::abs,
                B::Ceil => f64::ceil,
                B::Floor => f64::floor,
                B::Exp => f64::exp,
                B::Sqrt => f64::sqrt,
                B::Ln => f64::ln,
                B::Log2 => f64::log2,
                B::Log10 => f64::log10,
                B::Sin => f64::sin,
                B::Cos => f64::cos,
                B::Tan => f64::tan,
                B::Asin => f64::asin,
                B::Acos => f64::acos,
                B::Atan => f64::atan,
                B::Sinh => f64::sinh,
                B::Cosh => f64::cosh,
                B::Tanh => f64::tanh,
                B::Asinh => f64::asinh,
                B::Acosh => f64::acosh,
                B::Atanh => f64::atanh,
                B::Deg => f64::to_degrees,
                B::Rad => f64::to_radians,
                B::Sgn => |v: f64| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                },
                other => {
                    return Err(QueryError::Eval(format!(
                        "function {other:?} is not an instant-vector function"
                    )));
                }
            };
            map_values(ctx, &args[0], |v, _| Some(f(v)))
        }
    }
}

/// Go's math.Max: NaN wins (Rust's f64::max ignores NaN).
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Go's math.Min: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

pub(crate) fn scalar_arg(ctx: &Ctx<'_>, e: &Expr) -> Result<Vec<f64>, QueryError> {
    match ctx.eval(e)? {
        Val::Scalar(s) => Ok(s),
        _ => Err(QueryError::Eval("expected a scalar argument".into())),
    }
}

pub(crate) fn string_arg(ctx: &Ctx<'_>, e: &Expr) -> Result<String, QueryError> {
    match ctx.eval(e)? {
        Val::String(s) => Ok(s),
        _ => Err(QueryError::Eval("expected a string argument".into())),
    }
}

pub(crate) fn vector_arg(ctx: &Ctx<'_>, e: &Expr) -> Result<Vec<StepSeries>, QueryError> {
    match ctx.eval(e)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::Eval("expected an instant vector argument".into())),
    }
}

/// Applies `f` to every present value, dropping the metric name; `None` removes the point.
fn map_values(ctx: &Ctx<'_>, arg: &Expr, f: impl Fn(f64, usize) -> Option<f64> + Sync) -> Result<Val, QueryError> {
    let v = vector_arg(ctx, arg)?;
    let out = ctx.map_series(v, |mut s| {
        s.labels = s.labels.without_name();
        for (i, x) in s.vals.iter_mut().enumerate() {
            if !is_absent(*x) {
                *x = f(*x, i).unwrap_or_else(absent);
            }
        }
        s
    });
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// Labels `absent()` gives its output: the selector's equality matchers, except the metric
/// name and names matched more than once.
fn absent_labels(e: &Expr) -> Labels {
    let matchers = match unwrap_parens(e) {
        Expr::Vector(vs) => &vs.matchers,
        Expr::Matrix { selector, .. } => &selector.matchers,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    for m in matchers {
        if m.name == METRIC_NAME || m.op != MatchOp::Equal {
            continue;
        }
        let times = matchers.iter().filter(|o| o.name == m.name).count();
        if times == 1 {
            out.set(&m.name, &m.value);
        }
    }
    out
}

fn absent_over_time(ctx: &Ctx<'_>, arg: &Expr) -> Result<Val, QueryError> {
    let m = ctx.eval_matrix(arg)?;
    let vals = m
        .refs
        .iter()
        .map(|&r| {
            let start = r.saturating_sub(m.range);
            let any = m.series.iter().any(|s| {
                let lo = s.ts.partition_point(|&t| t < start);
                lo < s.ts.len() && s.ts[lo] <= r
            });
            if any { absent() } else { 1.0 }
        })
        .collect();
    Ok(Val::Vector(vec![StepSeries {
        labels: absent_labels(arg),
        vals,
    }]))
}

/// `timestamp(v)`: the sample's own timestamp for a plain selector, else the evaluation time.
fn timestamp(ctx: &Ctx<'_>, arg: &Expr) -> Result<Val, QueryError> {
    if let Expr::Vector(vs) = unwrap_parens(arg) {
        let refs = ctx.refs(vs.offset, vs.at);
        let (lo, hi) = min_max(&refs);
        let lookback = ctx.opts().lookback_ms;
        let raw = ctx.fetch(&vs.matchers, lo.saturating_sub(lookback), hi)?;
        let out = ctx.map_series(raw, |s| {
            let vals = refs
                .iter()
                .map(|&r| {
                    let idx = s.timestamps.partition_point(|&t| t <= r);
                    if idx == 0 {
                        return absent();
                    }
                    let j = idx - 1;
                    if s.timestamps[j] < r.saturating_sub(lookback) || is_stale_nan(s.values[j]) {
                        absent()
                    } else {
                        s.timestamps[j] as f64 / 1000.0
                    }
                })
                .collect();
            StepSeries {
                labels: s.labels.without_name(),
                vals,
            }
        });
        return Ok(Val::Vector(merge_same_labels(out)?));
    }
    let v = vector_arg(ctx, arg)?;
    let out = v
        .into_iter()
        .map(|mut s| {
            s.labels = s.labels.without_name();
            for (i, x) in s.vals.iter_mut().enumerate() {
                if !is_absent(*x) {
                    *x = ctx.t(i) as f64 / 1000.0;
                }
            }
            s
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn label_replace(ctx: &Ctx<'_>, args: &[Expr]) -> Result<Val, QueryError> {
    let v = vector_arg(ctx, &args[0])?;
    let dst = string_arg(ctx, &args[1])?;
    let repl = string_arg(ctx, &args[2])?;
    let src = string_arg(ctx, &args[3])?;
    let re_src = string_arg(ctx, &args[4])?;
    // Uncached: a label_replace regex is compiled once per query, not once per series.
    let re = crate::regex_limits::compile_anchored_uncached(&re_src, ctx.opts().regex_limits()).map_err(|e| {
        QueryError::Eval(format!(
            "invalid regular expression in label_replace(): {}: {}",
            e.value, e.reason
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::Eval(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            if let Some(caps) = re.captures(s.labels.get(&src)) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                s.labels.set(&dst, &res);
            }
            s
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn label_join(ctx: &Ctx<'_>, args: &[Expr]) -> Result<Val, QueryError> {
    let v = vector_arg(ctx, &args[0])?;
    let dst = string_arg(ctx, &args[1])?;
    let sep = string_arg(ctx, &args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        srcs.push(string_arg(ctx, a)?);
    }
    if !valid_label_name(&dst) {
        return Err(QueryError::Eval(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n)).collect();
            let joined = joined.join(&sep);
            s.labels.set(&dst, &joined);
            s
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(b: Builtin, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs.floor() as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let month_len = |y: i64, m: u32| match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    match b {
        Builtin::DayOfMonth => d as f64,
        Builtin::DayOfWeek => (days + 4).rem_euclid(7) as f64,
        Builtin::DayOfYear => {
            let before: u32 = (1..m).map(|mm| month_len(y, mm)).sum();
            (before + d) as f64
        }
        Builtin::DaysInMonth => month_len(y, m) as f64,
        Builtin::Hour => (sod / 3600) as f64,
        Builtin::Minute => (sod % 3600 / 60) as f64,
        Builtin::Month => m as f64,
        Builtin::Year => y as f64,
        _ => f64::NAN,
    }
}

fn eval_custom(
    ctx: &Ctx<'_>,
    f: &dyn crate::functions::CustomFunction,
    ret: ValueType,
    args: &[Expr],
) -> Result<Val, QueryError> {
    let vals: Vec<Val> = args.iter().map(|a| ctx.eval(a)).collect::<Result<_, _>>()?;
    let mut scalar_out = Vec::with_capacity(ctx.nsteps);
    let mut vec_out: Vec<StepSeries> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = Default::default();
    for i in 0..ctx.nsteps {
        ctx.check_deadline()?;
        let cargs: Vec<CustomArg> = vals
            .iter()
            .map(|v| match v {
                Val::Scalar(s) => CustomArg::Scalar(s[i]),
                Val::String(s) => CustomArg::String(s.clone()),
                Val::Vector(vs) => CustomArg::Vector(
                    vs.iter()
                        .filter(|s| !is_absent(s.vals[i]))
                        .map(|s| (s.labels.clone(), s.vals[i]))
                        .collect(),
                ),
                Val::Matrix(m) => CustomArg::Matrix(custom_window(m, i)),
            })
            .collect();
        match (f.call(&cargs, ctx.t(i)).map_err(QueryError::Eval)?, ret) {
            (CustomOutput::Scalar(v), ValueType::Scalar) => scalar_out.push(v),
            (CustomOutput::Vector(samples), ValueType::Vector) => {
                for (labels, v) in samples {
                    let idx = *index.entry(labels.clone()).or_insert_with(|| {
                        vec_out.push(StepSeries {
                            labels,
                            vals: vec![absent(); ctx.nsteps],
                        });
                        vec_out.len() - 1
                    });
                    if !is_absent(vec_out[idx].vals[i]) {
                        return Err(QueryError::Eval(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    vec_out[idx].vals[i] = v;
                }
            }
            _ => {
                return Err(QueryError::Eval("function returned a value of the wrong type".into()));
            }
        }
    }
    Ok(match ret {
        ValueType::Scalar => Val::Scalar(scalar_out),
        _ => Val::Vector(vec_out),
    })
}

/// The samples of every series of `m` inside step `i`'s window, as range functions see them
/// (`ts` in `[ref - range, ref]`).
fn custom_window(m: &super::MatrixVal, i: usize) -> Vec<crate::functions::WindowSeries> {
    let Some(&end) = m.refs.get(i) else {
        return Vec::new();
    };
    let start = end.saturating_sub(m.range);
    m.series
        .iter()
        .filter_map(|s| {
            let lo = s.ts.partition_point(|&t| t < start);
            let hi = s.ts.partition_point(|&t| t <= end).max(lo);
            (hi > lo).then(|| crate::functions::WindowSeries {
                labels: s.labels.clone(),
                timestamps: s.ts[lo..hi].to_vec(),
                values: s.vals[lo..hi].to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the samples of each series in the window, once per step over all series.
    struct WindowLen;

    impl crate::functions::CustomFunction for WindowLen {
        fn call(&self, args: &[CustomArg], _ts: i64) -> Result<CustomOutput, String> {
            let [CustomArg::Matrix(m)] = args else {
                return Err(format!("want one range vector, got {args:?}"));
            };
            Ok(CustomOutput::Vector(
                m.iter()
                    .map(|s| (s.labels.without_name(), s.values.len() as f64))
                    .collect(),
            ))
        }
    }

    #[test]
    fn custom_functions_take_range_vectors() {
        use crate::{Engine, FunctionRegistry, MemSource, QueryOptions, QueryValue};
        let mut reg = FunctionRegistry::with_builtins();
        reg.register(
            "window_len",
            vec![ValueType::Matrix],
            0,
            ValueType::Vector,
            std::sync::Arc::new(WindowLen),
        )
        .unwrap();
        let mut src = MemSource::new();
        src.add(
            Labels::from_pairs([("__name__", "m"), ("a", "b")]),
            (0..10).map(|k| (k * 10_000, k as f64)),
        );
        let e = Engine::with_registry(
            std::sync::Arc::new(src),
            std::sync::Arc::new(reg),
            QueryOptions::default(),
        );
        let QueryValue::Vector(v) = e.instant_query("window_len(m[30s])", 90_000).unwrap().value else {
            panic!("not a vector");
        };
        // The same samples as the built-in range functions see.
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].v, custom_window_len_expected());
        assert_eq!(v[0].labels.get("__name__"), "");
    }

    fn custom_window_len_expected() -> f64 {
        // Mirrors the window the built-in range functions use.
        let mut src = crate::MemSource::new();
        src.add(
            Labels::from_pairs([("__name__", "m")]),
            (0..10).map(|k| (k * 10_000, k as f64)),
        );
        let e = crate::Engine::new(std::sync::Arc::new(src), crate::QueryOptions::default());
        let crate::QueryValue::Vector(v) = e.instant_query("count_over_time(m[30s])", 90_000).unwrap().value else {
            panic!("not a vector");
        };
        v[0].v
    }

    #[test]
    fn dates() {
        // 2024-02-29T13:45:00Z is 1709214300.
        let t = 1_709_214_300.0;
        assert_eq!(date_part(Builtin::Year, t), 2024.0);
        assert_eq!(date_part(Builtin::Month, t), 2.0);
        assert_eq!(date_part(Builtin::DayOfMonth, t), 29.0);
        assert_eq!(date_part(Builtin::DaysInMonth, t), 29.0);
        assert_eq!(date_part(Builtin::DayOfYear, t), 60.0);
        assert_eq!(date_part(Builtin::DayOfWeek, t), 4.0);
        assert_eq!(date_part(Builtin::Hour, t), 13.0);
        assert_eq!(date_part(Builtin::Minute, t), 45.0);
        assert_eq!(date_part(Builtin::Year, 0.0), 1970.0);
    }
}
