//! Binary operators: scalar/scalar, vector/scalar, and vector/vector with label matching.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::{Ctx, QueryError, StepSeries, Val, absent, is_absent, merge_same_labels};
use crate::ast::{BinOp, Cardinality, Expr, VectorMatching};
use crate::labels::{Labels, METRIC_NAME};

/// Applies an arithmetic or comparison operator; the bool says whether a comparison holds.
fn apply(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eql => (l, l == r),
        BinOp::Neq => (l, l != r),
        BinOp::Gtr => (l, l > r),
        BinOp::Lss => (l, l < r),
        BinOp::Gte => (l, l >= r),
        BinOp::Lte => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
    }
}

/// Arithmetic drops the metric name; comparisons without `bool` keep it.
fn drops_name(op: BinOp) -> bool {
    matches!(
        op,
        // Prometheus 2.42 keeps the name for atan2 (it is not in its shouldDropMetricName).
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow
    )
}

pub(crate) fn eval_binary(ctx: &Ctx<'_>, e: &Expr) -> Result<Val, QueryError> {
    let Expr::Binary {
        op,
        lhs,
        rhs,
        return_bool,
        matching,
    } = e
    else {
        return Err(QueryError::Eval("not a binary expression".into()));
    };
    let (op, rb) = (*op, *return_bool);
    let l = ctx.eval(lhs)?;
    let r = ctx.eval(rhs)?;
    match (l, r) {
        (Val::Scalar(a), Val::Scalar(b)) => Ok(Val::Scalar(
            a.iter()
                .zip(&b)
                .map(|(&x, &y)| {
                    let (v, keep) = apply(op, x, y);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(v, &s, op, rb, false),
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(v, &s, op, rb, true),
        (Val::Vector(a), Val::Vector(b)) => {
            let default = VectorMatching {
                card: if op.is_set() {
                    Cardinality::ManyToMany
                } else {
                    Cardinality::OneToOne
                },
                on: false,
                labels: vec![],
                include: vec![],
                explicit: false,
            };
            let m = matching.as_ref().unwrap_or(&default);
            if op.is_set() {
                set_op(a, b, op, m, ctx.nsteps)
            } else {
                vector_vector(a, b, op, rb, m, ctx.nsteps)
            }
        }
        _ => Err(QueryError::Eval(
            "binary expression must contain only scalar and instant vector types".into(),
        )),
    }
}

fn vector_scalar(
    mut v: Vec<StepSeries>,
    s: &[f64],
    op: BinOp,
    return_bool: bool,
    swap: bool,
) -> Result<Val, QueryError> {
    let drop = drops_name(op) || return_bool;
    // Input labels are unique; dropping one shared name keeps them so, and then the merge
    // (a hash map of every label set) can be skipped.
    let one_name = v
        .windows(2)
        .all(|w| w[0].labels.get(METRIC_NAME) == w[1].labels.get(METRIC_NAME));
    for series in &mut v {
        for (i, x) in series.vals.iter_mut().enumerate() {
            if is_absent(*x) {
                continue;
            }
            let (l, r) = if swap { (s[i], *x) } else { (*x, s[i]) };
            let (mut value, keep) = apply(op, l, r);
            // The vector's own value is the result of a filter, whichever side it is on.
            if op.is_comparison() && swap {
                value = r;
            }
            *x = if return_bool {
                if keep { 1.0 } else { 0.0 }
            } else if keep {
                value
            } else {
                absent()
            };
        }
        if drop {
            series.labels = series.labels.without_name();
        }
    }
    v.retain(|s| s.vals.iter().any(|x| !is_absent(*x)));
    if !drop || one_name {
        return Ok(Val::Vector(v));
    }
    Ok(Val::Vector(merge_same_labels(v)?))
}

/// A 64-bit hash of the match key of a series under `on(...)`/`ignoring(...)`, computed
/// without building the key (Prometheus matches on such hashes too).
fn signature_hash(l: &Labels, m: &VectorMatching) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for lab in l.iter() {
        let listed = m.labels.iter().any(|n| n == &lab.name);
        let included = if m.on {
            listed
        } else {
            !listed && lab.name != METRIC_NAME
        };
        if included {
            lab.name.hash(&mut h);
            lab.value.hash(&mut h);
        }
    }
    h.finish()
}

/// The match key of a series under `on(...)`/`ignoring(...)`.
fn signature(l: &Labels, m: &VectorMatching) -> Labels {
    if m.on {
        l.keep_only(&m.labels)
    } else {
        l.drop_names(&m.labels)
    }
}

fn set_op(
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    op: BinOp,
    m: &VectorMatching,
    n: usize,
) -> Result<Val, QueryError> {
    // Per signature and step: is any rhs (resp. lhs) series present?
    let mut rhs_present: HashMap<u64, Vec<bool>> = HashMap::new();
    for s in &rhs {
        let p = rhs_present
            .entry(signature_hash(&s.labels, m))
            .or_insert_with(|| vec![false; n]);
        for (i, v) in s.vals.iter().enumerate() {
            p[i] |= !is_absent(*v);
        }
    }
    let none = vec![false; n];
    match op {
        BinOp::And | BinOp::Unless => {
            let want = op == BinOp::And;
            let mut out = lhs;
            for s in &mut out {
                let p = rhs_present.get(&signature_hash(&s.labels, m)).unwrap_or(&none);
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if p[i] != want {
                        *v = absent();
                    }
                }
            }
            out.retain(|s| s.vals.iter().any(|x| !is_absent(*x)));
            Ok(Val::Vector(out))
        }
        _ => {
            let mut lhs_present: HashMap<u64, Vec<bool>> = HashMap::new();
            for s in &lhs {
                let p = lhs_present
                    .entry(signature_hash(&s.labels, m))
                    .or_insert_with(|| vec![false; n]);
                for (i, v) in s.vals.iter().enumerate() {
                    p[i] |= !is_absent(*v);
                }
            }
            let mut out = lhs;
            for mut s in rhs {
                let p = lhs_present.get(&signature_hash(&s.labels, m)).unwrap_or(&none);
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if p[i] {
                        *v = absent();
                    }
                }
                if s.vals.iter().any(|x| !is_absent(*x)) {
                    out.push(s);
                }
            }
            Ok(Val::Vector(merge_same_labels(out)?))
        }
    }
}

/// Output labels of a matched pair (`many` is the side whose labels carry over).
fn result_labels(many: &Labels, one: &Labels, op: BinOp, return_bool: bool, m: &VectorMatching) -> Labels {
    let drop_name = drops_name(op) || return_bool;
    let mut l = match (m.card == Cardinality::OneToOne, m.on, drop_name) {
        (true, true, _) => {
            let mut x = many.keep_only(&m.labels);
            if drop_name {
                x.remove(METRIC_NAME);
            }
            x
        }
        (true, false, true) => many.drop_names(&m.labels),
        (true, false, false) => many.without_names(&m.labels),
        (false, _, true) => many.without_name(),
        (false, _, false) => many.clone(),
    };
    for name in &m.include {
        let v = one.get(name);
        l.set(name, v);
    }
    if return_bool {
        l.remove(METRIC_NAME);
    }
    l
}

fn vector_vector(
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    op: BinOp,
    return_bool: bool,
    m: &VectorMatching,
    n: usize,
) -> Result<Val, QueryError> {
    // With group_right the sides swap roles: `many` carries the labels, `one` must be unique.
    let swap = m.card == Cardinality::OneToMany;
    let (many, one) = if swap { (&rhs, &lhs) } else { (&lhs, &rhs) };
    let mut groups: HashMap<u64, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, s) in many.iter().enumerate() {
        groups.entry(signature_hash(&s.labels, m)).or_default().0.push(i);
    }
    for (i, s) in one.iter().enumerate() {
        if let Some(g) = groups.get_mut(&signature_hash(&s.labels, m)) {
            g.1.push(i);
        }
    }
    let mut out: Vec<StepSeries> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    for (many_ids, one_ids) in groups.values() {
        if one_ids.is_empty() {
            continue;
        }
        for step in 0..n {
            let mut one_present = one_ids.iter().filter(|&&i| !is_absent(one[i].vals[step]));
            let Some(&oi) = one_present.next() else {
                continue;
            };
            if one_present.next().is_some() {
                let sig = signature(&one[oi].labels, m);
                let side = if swap { "left" } else { "right" };
                return Err(QueryError::Eval(format!(
                    "found duplicate series for the match group {sig} on the {side} hand-side of the operation;many-to-many matching not allowed: matching labels must be unique on one side"
                )));
            }
            let mut matched = 0;
            for &mi in many_ids {
                let mv = many[mi].vals[step];
                if is_absent(mv) {
                    continue;
                }
                let ov = one[oi].vals[step];
                let (l, r) = if swap { (ov, mv) } else { (mv, ov) };
                let (value, keep) = apply(op, l, r);
                let value = if return_bool {
                    if keep { 1.0 } else { 0.0 }
                } else if keep {
                    value
                } else {
                    continue;
                };
                matched += 1;
                if m.card == Cardinality::OneToOne && matched > 1 {
                    return Err(QueryError::Eval(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                let idx = match pair_out.get(&(mi, oi)) {
                    Some(&i) => i,
                    None => {
                        let labels = result_labels(&many[mi].labels, &one[oi].labels, op, return_bool, m);
                        let i = *out_index.entry(labels.clone()).or_insert_with(|| {
                            out.push(StepSeries {
                                labels,
                                vals: vec![absent(); n],
                            });
                            out.len() - 1
                        });
                        pair_out.insert((mi, oi), i);
                        i
                    }
                };
                let slot = &mut out[idx].vals[step];
                if !is_absent(*slot) {
                    return Err(QueryError::Eval(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
                *slot = value;
            }
        }
    }
    Ok(Val::Vector(out))
}
