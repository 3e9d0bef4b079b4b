//! Fused evaluation of `agg(f(selector[range]))` and `agg(selector)`: each series is read,
//! turned into per-step values and folded into the aggregation right away, on several threads,
//! so the per-series intermediate results of the whole query never exist at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::aggr::{Acc, group_key};
use super::rangefn::steps_of_raw;
use super::{Ctx, QueryError, StepSeries, min_max, selector_steps, unwrap_parens};
use crate::ast::{AggOp, Expr, VectorSelector};
use crate::functions::{Builtin, FunctionImpl};
use crate::labels::{Labels, METRIC_NAME, MatchOp};
use crate::source::Series;

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
            PerSeries::Range(b, _, range) => steps_of_raw(*b, &s.timestamps, &s.values, &refs, *range, &[], &eval_ts),
        }
    };
    // Two input series can only end up with the same labels when the name is dropped and
    // the selector may match several names; only then is a duplicate check needed.
    let check_dups = !keep_name
        && !vs
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal);
    let duplicate = AtomicBool::new(false);
    let by_name = grouping.iter().any(|g| g == METRIC_NAME);
    let scanned = ctx.scan(
        &vs.matchers,
        lo.saturating_sub(lookback),
        hi,
        || Worker {
            index: HashMap::new(),
            groups: Vec::new(),
            acc: Acc::new(op, 0, n),
            seen: HashSet::new(),
        },
        |w, _shard, s| {
            let vals = per_series(&s);
            // The group key straight from the stored labels when dropping the name cannot
            // change it (`without` drops the name anyway; `by` drops it unless listed).
            let key = if keep_name || without || !by_name {
                group_key(&s.labels, grouping, without)
            } else {
                group_key(&s.labels.without_name(), grouping, without)
            };
            if check_dups && !w.seen.insert(s.labels.without_name()) {
                duplicate.store(true, Ordering::Relaxed);
                return Err(QueryError::Eval("duplicate series".into()));
            }
            let g = match w.index.get(&key) {
                Some(&g) => g,
                None => {
                    w.groups.push(key.clone());
                    w.index.insert(key, w.groups.len() - 1);
                    w.acc.ensure_groups(w.groups.len());
                    w.groups.len() - 1
                }
            };
            w.acc.add(g, &vals);
            Ok(())
        },
    );
    if duplicate.load(Ordering::Relaxed) {
        // Leave the "same labelset" cases to the ordinary path, which reports them per step.
        return Ok(None);
    }
    let workers = scanned?;
    if check_dups {
        let mut all: HashSet<&Labels> = HashSet::new();
        for w in &workers {
            for l in &w.seen {
                if !all.insert(l) {
                    return Ok(None);
                }
            }
        }
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Labels> = Vec::new();
    let mut acc = Acc::new(op, 0, n);
    for w in workers {
        for (local, key) in w.groups.into_iter().enumerate() {
            let g = match index.get(&key) {
                Some(&g) => g,
                None => {
                    groups.push(key.clone());
                    index.insert(key, groups.len() - 1);
                    groups.len() - 1
                }
            };
            acc.merge_group(g, &w.acc, local);
        }
    }
    acc.ensure_groups(groups.len());
    Ok(Some(acc.finish(groups)))
}

/// One worker's share of a fused aggregation: its groups, their accumulators, and (when
/// duplicates are possible) the output labels it has seen.
struct Worker {
    index: HashMap<Labels, usize>,
    groups: Vec<Labels>,
    acc: Acc,
    seen: HashSet<Labels>,
}
