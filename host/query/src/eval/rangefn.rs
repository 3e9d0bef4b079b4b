//! Functions over range vectors (`rate`, `*_over_time`, ...), computed for all steps in one
//! pass per series with a sliding window.

use super::{Ctx, MatrixVal, QueryError, StepSeries, absent, merge_same_labels, min_max};
use crate::ast::VectorSelector;
use crate::functions::Builtin;
use crate::source::is_stale_nan;

/// Evaluates range function `b` over `m`. `scalars[k][i]` is the k-th scalar argument at step
/// `i`; `eval_ts[i]` is the evaluation time of step `i` (used by `predict_linear`).
pub(crate) fn eval_range_fn(
    ctx: &Ctx<'_>,
    b: Builtin,
    m: MatrixVal,
    scalars: &[Vec<f64>],
) -> Result<Vec<StepSeries>, QueryError> {
    let MatrixVal { series, refs, range } = m;
    for s in &series {
        check_args(b, &s.ts, &refs, range, scalars)?;
    }
    let eval_ts: Vec<i64> = (0..ctx.nsteps).map(|i| ctx.t(i)).collect();
    let keep_name = b == Builtin::LastOverTime;
    let out = ctx.map_series(series, |s| StepSeries {
        vals: series_steps(b, &s.ts, &s.vals, &refs, range, scalars, &eval_ts),
        labels: if keep_name { s.labels } else { s.labels.without_name() },
    });
    let out: Vec<StepSeries> = out
        .into_iter()
        .filter(|s| s.vals.iter().any(|v| !super::is_absent(*v)))
        .collect();
    merge_same_labels(out)
}

/// Range function `b` over a matrix selector, computed per series as the series stream in
/// from the source (on the worker threads): the raw samples of the selection are never held
/// all at once.
pub(crate) fn eval_range_fn_selector(
    ctx: &Ctx<'_>,
    b: Builtin,
    vs: &VectorSelector,
    range: i64,
    scalars: &[Vec<f64>],
) -> Result<Vec<StepSeries>, QueryError> {
    let refs = ctx.refs(vs.offset, vs.at);
    let (lo, hi) = min_max(&refs);
    let eval_ts: Vec<i64> = (0..ctx.nsteps).map(|i| ctx.t(i)).collect();
    let keep_name = b == Builtin::LastOverTime;
    let states = ctx.scan(
        &vs.matchers,
        lo.saturating_sub(range),
        hi,
        Vec::new,
        |out: &mut Vec<(usize, StepSeries)>, shard, s| {
            if b == Builtin::HoltWinters {
                let ts: Vec<i64> = (0..s.values.len())
                    .filter(|&k| !is_stale_nan(s.values[k]))
                    .map(|k| s.timestamps[k])
                    .collect();
                check_args(b, &ts, &refs, range, scalars)?;
            }
            let vals = steps_of_raw(b, &s.timestamps, &s.values, &refs, range, scalars, &eval_ts);
            if vals.iter().any(|v| !super::is_absent(*v)) {
                out.push((
                    shard,
                    StepSeries {
                        vals,
                        labels: if keep_name { s.labels } else { s.labels.without_name() },
                    },
                ));
            }
            Ok(())
        },
    )?;
    let mut all: Vec<(usize, StepSeries)> = states.into_iter().flatten().collect();
    all.sort_by_key(|(shard, _)| *shard);
    merge_same_labels(all.into_iter().map(|(_, s)| s).collect())
}

/// [`series_steps`] over samples as stored: stale markers are skipped first.
pub(crate) fn steps_of_raw(
    b: Builtin,
    ts: &[i64],
    vs: &[f64],
    refs: &[i64],
    range: i64,
    scalars: &[Vec<f64>],
    eval_ts: &[i64],
) -> Vec<f64> {
    if vs.iter().any(|v| is_stale_nan(*v)) {
        let keep: Vec<usize> = (0..vs.len()).filter(|&i| !is_stale_nan(vs[i])).collect();
        let ts: Vec<i64> = keep.iter().map(|&i| ts[i]).collect();
        let vals: Vec<f64> = keep.iter().map(|&i| vs[i]).collect();
        series_steps(b, &ts, &vals, refs, range, scalars, eval_ts)
    } else {
        series_steps(b, ts, vs, refs, range, scalars, eval_ts)
    }
}

/// Argument checks that fail the whole query. Prometheus makes them inside the function,
/// which it only calls for a series with samples in the step's window; so a bad factor is an
/// error exactly when some series has a sample in the window of a step with a bad factor.
fn check_args(b: Builtin, ts: &[i64], refs: &[i64], range: i64, scalars: &[Vec<f64>]) -> Result<(), QueryError> {
    if b != Builtin::HoltWinters || ts.is_empty() {
        return Ok(());
    }
    for (i, &r) in refs.iter().enumerate() {
        let (sf, tf) = (scalars[0][i], scalars[1][i]);
        let bad_sf = sf <= 0.0 || sf >= 1.0 || sf.is_nan();
        let bad_tf = tf <= 0.0 || tf >= 1.0 || tf.is_nan();
        if !bad_sf && !bad_tf {
            continue;
        }
        let lo = ts.partition_point(|&t| t < r.saturating_sub(range));
        if lo >= ts.len() || ts[lo] > r {
            continue;
        }
        return Err(QueryError::Eval(if bad_sf {
            format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")
        } else {
            format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")
        }));
    }
    Ok(())
}

/// Computes range function `b` of one series (samples sorted, stale markers removed) for
/// every step: one forward pass with a sliding `[ref - range, ref]` window.
pub(crate) fn series_steps(
    b: Builtin,
    ts: &[i64],
    vs: &[f64],
    refs: &[i64],
    range: i64,
    scalars: &[Vec<f64>],
    eval_ts: &[i64],
) -> Vec<f64> {
    let mut vals = Vec::with_capacity(refs.len());
    // resets_before[k]: counter resets among samples 0..=k. Lets rate/increase skip the
    // per-window reset scan when a window has none (the common case), keeping them O(1).
    let resets_before: Vec<u32> = if matches!(b, Builtin::Rate | Builtin::Increase) {
        let mut acc = 0u32;
        let mut out = Vec::with_capacity(vs.len());
        for k in 0..vs.len() {
            if k > 0 && vs[k] < vs[k - 1] {
                acc += 1;
            }
            out.push(acc);
        }
        out
    } else {
        Vec::new()
    };
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut prev_ref = i64::MIN;
    for (i, &r) in refs.iter().enumerate() {
        let start = r.saturating_sub(range);
        if r < prev_ref {
            lo = ts.partition_point(|&t| t < start);
            hi = ts.partition_point(|&t| t <= r);
        } else {
            while lo < ts.len() && ts[lo] < start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < ts.len() && ts[hi] <= r {
                hi += 1;
            }
        }
        prev_ref = r;
        let w = Window {
            ts: &ts[lo..hi],
            vs: &vs[lo..hi],
            start,
            end: r,
            range,
            no_resets: hi > lo && !resets_before.is_empty() && resets_before[hi - 1] == resets_before[lo],
        };
        let v = if w.ts.is_empty() {
            None
        } else {
            apply(b, &w, scalars, i, eval_ts[i])
        };
        vals.push(v.unwrap_or_else(absent));
    }
    vals
}

/// The samples of one series inside one step's window `[start, end]`.
pub(crate) struct Window<'a> {
    pub ts: &'a [i64],
    pub vs: &'a [f64],
    pub start: i64,
    pub end: i64,
    pub range: i64,
    /// True when the caller knows the window holds no counter reset.
    pub no_resets: bool,
}

fn apply(b: Builtin, w: &Window<'_>, scalars: &[Vec<f64>], i: usize, eval_t: i64) -> Option<f64> {
    use Builtin as B;
    let vs = w.vs;
    let n = vs.len();
    match b {
        B::Rate => extrapolated_rate(w, true, true),
        B::Increase => extrapolated_rate(w, true, false),
        B::Delta => extrapolated_rate(w, false, false),
        B::Irate | B::Idelta => {
            if n < 2 {
                return None;
            }
            let (t0, t1) = (w.ts[n - 2], w.ts[n - 1]);
            let (v0, v1) = (vs[n - 2], vs[n - 1]);
            if b == B::Idelta {
                return Some(v1 - v0);
            }
            let dt = (t1 - t0) as f64 / 1000.0;
            if dt == 0.0 {
                return None;
            }
            let d = if v1 < v0 { v1 } else { v1 - v0 };
            Some(d / dt)
        }
        B::AvgOverTime => {
            let mut mean = 0.0f64;
            let mut count = 0.0f64;
            for &v in vs {
                count += 1.0;
                if mean.is_infinite() {
                    if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                mean += v / count - mean / count;
            }
            Some(mean)
        }
        B::SumOverTime => Some(vs.iter().sum()),
        B::CountOverTime => Some(n as f64),
        B::MinOverTime => Some(
            vs.iter()
                .skip(1)
                .fold(vs[0], |m, &v| if v < m || m.is_nan() { v } else { m }),
        ),
        B::MaxOverTime => Some(
            vs.iter()
                .skip(1)
                .fold(vs[0], |m, &v| if v > m || m.is_nan() { v } else { m }),
        ),
        B::LastOverTime => Some(vs[n - 1]),
        B::PresentOverTime => Some(1.0),
        B::StddevOverTime | B::StdvarOverTime => {
            let (mut count, mut mean, mut aux) = (0.0f64, 0.0f64, 0.0f64);
            for &v in vs {
                count += 1.0;
                let delta = v - mean;
                mean += delta / count;
                aux += delta * (v - mean);
            }
            let var = aux / count;
            Some(if b == B::StddevOverTime { var.sqrt() } else { var })
        }
        B::QuantileOverTime => Some(quantile(scalars[0][i], &mut vs.to_vec())),
        B::MadOverTime => {
            let mut v = vs.to_vec();
            let med = quantile(0.5, &mut v);
            let mut dev: Vec<f64> = vs.iter().map(|x| (x - med).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        B::Changes => {
            let mut c = 0;
            for p in vs.windows(2) {
                if !(p[0] == p[1] || (p[0].is_nan() && p[1].is_nan())) {
                    c += 1;
                }
            }
            Some(c as f64)
        }
        B::Resets => Some(vs.windows(2).filter(|p| p[1] < p[0]).count() as f64),
        B::Deriv => {
            if n < 2 {
                return None;
            }
            Some(linear_regression(w.ts, vs, w.ts[0]).0)
        }
        B::PredictLinear => {
            if n < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(w.ts, vs, eval_t);
            Some(slope * scalars[0][i] + intercept)
        }
        B::HoltWinters => {
            if n < 2 {
                return None;
            }
            let (sf, tf) = (scalars[0][i], scalars[1][i]);
            let (mut s0, mut s1) = (0.0f64, vs[0]);
            let mut trend = vs[1] - vs[0];
            for (k, &v) in vs.iter().enumerate().skip(1) {
                let x = sf * v;
                // The trend is only smoothed from the second step on.
                if k > 1 {
                    trend = tf * (s1 - s0) + (1.0 - tf) * trend;
                }
                let y = (1.0 - sf) * (s1 + trend);
                s0 = s1;
                s1 = x + y;
            }
            Some(s1)
        }
        // Not range functions; the caller never routes them here.
        _ => None,
    }
}

/// Prometheus' extrapolated rate/increase/delta over one window.
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let n = w.vs.len();
    if n < 2 {
        return None;
    }
    let (first_t, last_t) = (w.ts[0], w.ts[n - 1]);
    let (first_v, last_v) = (w.vs[0], w.vs[n - 1]);
    let mut result = last_v - first_v;
    if is_counter && !(w.no_resets && first_v >= 0.0) {
        let mut last = 0.0f64;
        for &v in w.vs {
            if v < last {
                result += last;
            }
            last = v;
        }
    }
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (n - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold { to_end } else { avg_between / 2.0 };
    result *= interval / sampled;
    if is_rate {
        result /= w.range as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_t`; the sums are
/// compensated (Kahan–Neumaier) as in Prometheus, which matters for large values.
pub(crate) fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0f64;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let init = vs[0];
    let mut const_y = true;
    for (k, (&t, &v)) in ts.iter().zip(vs).enumerate() {
        if const_y && k > 0 && v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// One step of Kahan–Neumaier summation: the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus' quantile with linear interpolation; sorts `v` in place.
pub(crate) fn quantile(q: f64, v: &mut [f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // total_cmp puts NaN with the sign bit first and positive NaN last; Prometheus' sort.Float64s
    // puts every NaN first.
    let nan_count = v.iter().filter(|x| x.is_nan()).count();
    if nan_count > 0 {
        let mut tmp: Vec<f64> = v.iter().copied().filter(|x| x.is_nan()).collect();
        tmp.extend(v.iter().copied().filter(|x| !x.is_nan()));
        v.copy_from_slice(&tmp);
    }
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight
}
