//! Fused evaluation of `agg(f(selector[range]))` and `agg(selector)`: each series is read,
//! turned into per-step values and folded into the aggregation right away, on several threads,
//! so the per-series intermediate results of the whole query never exist at once.

use std::collections::{HashMap, HashSet};

use super::aggr::{Acc, group_key};
use super::rangefn::series_steps;
use super::{Ctx, QueryError, StepSeries, min_max, selector_steps, unwrap_parens};
use crate::ast::{AggOp, Expr, VectorSelector};
use crate::functions::{Builtin, FunctionImpl};
use crate::labels::Labels;
use crate::source::{Series, is_stale_nan};

/// What to compute per series before aggregating.
enum PerSeries<'a> {
    /// Instant selector values.
    Selector(&'a VectorSelector),
    /// A range function without scalar arguments over a matrix selector.
    Range(Builtin, &'a VectorSelector, i64),
}

/// Range functions whose only argument is the range vector.
fn plain_range_fn(b: Builtin) -> bool {
    use Builtin as B;
    matches!(
        b,
        B::Rate
            | B::Increase
            | B::Delta
            | B::Irate
            | B::Idelta
            | B::AvgOverTime
            | B::SumOverTime
            | B::CountOverTime
            | B::MinOverTime
            | B::MaxOverTime
            | B::LastOverTime
            | B::PresentOverTime
            | B::StddevOverTime
            | B::StdvarOverTime
            | B::Changes
            | B::Resets
            | B::Deriv
    )
}

fn classify(e: &Expr) -> Option<PerSeries<'_>> {
    match unwrap_parens(e) {
        Expr::Vector(vs) => Some(PerSeries::Selector(vs)),
        Expr::Call { func, args } => {
            let FunctionImpl::Builtin(b) = func.imp else {
                return None;
            };
            if !plain_range_fn(b) || args.len() != 1 {
                return None;
            }
            match unwrap_parens(&args[0]) {
                Expr::Matrix { selector, range } => Some(PerSeries::Range(b, selector, *range)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Evaluates the aggregation fused with its input when the input has a supported shape;
/// `Ok(None)` means "not applicable, evaluate the ordinary way".
pub(crate) fn aggregate(
    ctx: &Ctx<'_>,
    op: AggOp,
    inner: &Expr,
    grouping: &[String],
    without: bool,
) -> Result<Option<Vec<StepSeries>>, QueryError> {
    let Some(kind) = classify(inner) else {
        return Ok(None);
    };
    let n = ctx.nsteps;
    let (vs, lookback) = match &kind {
        PerSeries::Selector(vs) => (*vs, ctx.opts().lookback_ms),
        PerSeries::Range(_, vs, range) => (*vs, *range),
    };
    let refs = ctx.refs(vs.offset, vs.at);
    let (lo, hi) = min_max(&refs);
    // Output labels of the per-series step; duplicates would be Prometheus' "same labelset"
    // error or merge, which the ordinary path handles, so leave those to it.
    let keep_name = matches!(
        kind,
        PerSeries::Selector(_) | PerSeries::Range(Builtin::LastOverTime, _, _)
    );
    let eval_ts: Vec<i64> = (0..n).map(|i| ctx.t(i)).collect();
    let per_series = |s: &Series| -> Vec<f64> {
        match &kind {
            PerSeries::Selector(_) => selector_steps(&s.timestamps, &s.values, &refs, lookback),
            PerSeries::Range(b, _, range) => {
                if s.values.iter().any(|v| is_stale_nan(*v)) {
                    let keep: Vec<usize> = (0..s.values.len()).filter(|&i| !is_stale_nan(s.values[i])).collect();
                    let ts: Vec<i64> = keep.iter().map(|&i| s.timestamps[i]).collect();
                    let vals: Vec<f64> = keep.iter().map(|&i| s.values[i]).collect();
                    series_steps(*b, &ts, &vals, &refs, *range, &[], &eval_ts)
                } else {
                    series_steps(*b, &s.timestamps, &s.values, &refs, *range, &[], &eval_ts)
                }
            }
        }
    };
    let threads = ctx.threads().max(1);
    let mut seen: HashSet<Labels> = HashSet::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Labels> = Vec::new();
    // One accumulator per thread, kept across batches and merged at the end.
    let mut accs: Vec<Acc> = (0..threads).map(|_| Acc::new(op, 0, n)).collect();
    let mut duplicate = false;
    ctx.fetch_batches(&vs.matchers, lo.saturating_sub(lookback), hi, &mut |batch| {
        let mut group_of = Vec::with_capacity(batch.len());
        for s in &batch {
            let l = if keep_name {
                s.labels.clone()
            } else {
                s.labels.without_name()
            };
            let key = group_key(&l, grouping, without);
            if !seen.insert(l) {
                duplicate = true;
                return Ok(false);
            }
            let g = *index.entry(key.clone()).or_insert_with(|| {
                groups.push(key);
                groups.len() - 1
            });
            group_of.push(g);
        }
        // Each thread holds a full accumulator; with many groups that costs memory, so stay serial.
        let serial = threads == 1 || batch.len() < 64 || groups.len().saturating_mul(n) > 20_000_000;
        if serial {
            accs[0].ensure_groups(groups.len());
            for (s, &g) in batch.iter().zip(&group_of) {
                accs[0].add(g, &per_series(s));
            }
            return Ok(true);
        }
        for a in accs.iter_mut() {
            a.ensure_groups(groups.len());
        }
        let chunk = batch.len().div_ceil(threads);
        let per_series = &per_series;
        let all_ok = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .zip(group_of.chunks(chunk))
                .zip(accs.iter_mut())
                .map(|((series, gs), acc)| {
                    scope.spawn(move || {
                        for (s, &g) in series.iter().zip(gs) {
                            acc.add(g, &per_series(s));
                        }
                    })
                })
                .collect();
            handles.into_iter().all(|h| h.join().is_ok())
        });
        if !all_ok {
            return Err(QueryError::Eval("a worker thread panicked".into()));
        }
        Ok(true)
    })?;
    if duplicate {
        return Ok(None);
    }
    let mut it = accs.into_iter();
    let mut acc = it.next().unwrap_or_else(|| Acc::new(op, 0, n));
    for p in it {
        acc.merge(p);
    }
    acc.ensure_groups(groups.len());
    Ok(Some(acc.finish(groups)))
}
