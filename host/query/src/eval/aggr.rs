//! Aggregations (`sum by`, `topk`, `quantile`, ...) and `histogram_quantile`.

use std::collections::HashMap;

use super::funcs::{scalar_arg, string_arg, vector_arg};
use super::rangefn::quantile;
use super::{Ctx, QueryError, StepSeries, Val, absent, is_absent};
use crate::ast::{AggOp, Expr};
use crate::labels::Labels;

/// The labels of the group a series belongs to.
pub(crate) fn group_key(labels: &Labels, grouping: &[String], without: bool) -> Labels {
    if without {
        labels.drop_names(grouping)
    } else {
        labels.keep_only(grouping)
    }
}

/// Assigns each series a group; returns the group of every series and each group's labels.
fn group_series(series: &[StepSeries], grouping: &[String], without: bool) -> (Vec<usize>, Vec<Labels>) {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups = Vec::new();
    let mut of = Vec::with_capacity(series.len());
    for s in series {
        let key = group_key(&s.labels, grouping, without);
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(key);
            groups.len() - 1
        });
        of.push(g);
    }
    (of, groups)
}

// `step` indexes several parallel per-step arrays at once; an iterator would obscure that.
#[allow(clippy::needless_range_loop)]
pub(crate) fn eval_aggregate(ctx: &Ctx<'_>, e: &Expr) -> Result<Val, QueryError> {
    let Expr::Aggregate {
        op,
        expr,
        param,
        grouping,
        without,
    } = e
    else {
        return Err(QueryError::Eval("not an aggregation".into()));
    };
    let n = ctx.nsteps;
    if matches!(
        op,
        AggOp::Sum | AggOp::Avg | AggOp::Min | AggOp::Max | AggOp::Count | AggOp::Group | AggOp::Stddev | AggOp::Stdvar
    ) && let Some(out) = super::stream::aggregate(ctx, *op, expr, grouping, *without)?
    {
        return Ok(Val::Vector(out));
    }
    let input = vector_arg(ctx, expr)?;
    match op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::Quantile => {
            let p = match param {
                Some(p) => scalar_arg(ctx, p)?,
                None => return Err(QueryError::Eval("missing aggregation parameter".into())),
            };
            let (of, groups) = group_series(&input, grouping, *without);
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
            for (i, g) in of.iter().enumerate() {
                members[*g].push(i);
            }
            if *op == AggOp::Quantile {
                let mut out: Vec<StepSeries> = groups
                    .into_iter()
                    .map(|labels| StepSeries {
                        labels,
                        vals: vec![absent(); n],
                    })
                    .collect();
                let mut buf = Vec::new();
                for step in 0..n {
                    for (g, m) in members.iter().enumerate() {
                        buf.clear();
                        buf.extend(m.iter().map(|&s| input[s].vals[step]).filter(|v| !is_absent(*v)));
                        if !buf.is_empty() {
                            out[g].vals[step] = quantile(p[step], &mut buf);
                        }
                    }
                }
                return Ok(Val::Vector(out));
            }
            // topk/bottomk/limitk keep the selected input series as they are.
            let mut keep = vec![vec![false; n]; input.len()];
            let mut buf: Vec<(usize, f64)> = Vec::new();
            for step in 0..n {
                let k = p[step];
                // NaN converts to the smallest integer in Prometheus, so it selects nothing.
                if k.is_nan() || k < 1.0 {
                    continue;
                }
                let k = if k > input.len() as f64 {
                    input.len()
                } else {
                    k as usize
                };
                for m in &members {
                    buf.clear();
                    buf.extend(
                        m.iter()
                            .map(|&s| (s, input[s].vals[step]))
                            .filter(|(_, v)| !is_absent(*v)),
                    );
                    match op {
                        AggOp::Topk => buf.sort_by(|a, b| rank_desc(a.1, b.1)),
                        AggOp::Bottomk => buf.sort_by(|a, b| rank_asc(a.1, b.1)),
                        _ => buf.sort_by(|a, b| input[a.0].labels.cmp(&input[b.0].labels)),
                    }
                    for &(s, _) in buf.iter().take(k) {
                        keep[s][step] = true;
                    }
                }
            }
            let out = input
                .into_iter()
                .zip(keep)
                .filter(|(_, k)| k.iter().any(|&x| x))
                .map(|(mut s, k)| {
                    for (v, keep) in s.vals.iter_mut().zip(k) {
                        if !keep {
                            *v = absent();
                        }
                    }
                    s
                })
                .collect();
            Ok(Val::Vector(out))
        }
        AggOp::CountValues => {
            let label = match param {
                Some(p) => string_arg(ctx, p)?,
                None => return Err(QueryError::Eval("missing aggregation parameter".into())),
            };
            let valid = label
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(QueryError::Eval(format!("invalid label name {label:?}")));
            }
            let (of, groups) = group_series(&input, grouping, *without);
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut out: Vec<StepSeries> = Vec::new();
            for (s, series) in input.iter().enumerate() {
                for (step, &v) in series.vals.iter().enumerate() {
                    if is_absent(v) {
                        continue;
                    }
                    let mut l = groups[of[s]].clone();
                    l.set(&label, &format_go_float(v));
                    let idx = *index.entry(l.clone()).or_insert_with(|| {
                        out.push(StepSeries {
                            labels: l,
                            vals: vec![absent(); n],
                        });
                        out.len() - 1
                    });
                    let slot = &mut out[idx].vals[step];
                    *slot = if is_absent(*slot) { 1.0 } else { *slot + 1.0 };
                }
            }
            Ok(Val::Vector(out))
        }
        _ => {
            let (of, groups) = group_series(&input, grouping, *without);
            let mut acc = Acc::new(*op, groups.len(), n);
            for (s, series) in input.iter().enumerate() {
                acc.add(of[s], &series.vals);
            }
            Ok(Val::Vector(acc.finish(groups)))
        }
    }
}

/// Accumulators of the simple aggregations, per group and step; mergeable, so that
/// threads can aggregate disjoint sets of series and combine at the end.
pub(crate) struct Acc {
    op: AggOp,
    n: usize,
    count: Vec<u32>,
    acc: Vec<f64>,
    aux: Vec<f64>,
}

impl Acc {
    pub(crate) fn new(op: AggOp, groups: usize, n: usize) -> Self {
        let stats = matches!(op, AggOp::Stddev | AggOp::Stdvar);
        Acc {
            op,
            n,
            count: vec![0; groups * n],
            acc: vec![0.0; groups * n],
            aux: if stats { vec![0.0; groups * n] } else { vec![] },
        }
    }

    /// Makes room for `groups` groups (groups appear as series stream in).
    pub(crate) fn ensure_groups(&mut self, groups: usize) {
        let cells = groups * self.n;
        if self.count.len() < cells {
            self.count.resize(cells, 0);
            self.acc.resize(cells, 0.0);
            if matches!(self.op, AggOp::Stddev | AggOp::Stdvar) {
                self.aux.resize(cells, 0.0);
            }
        }
    }

    /// Adds one series' per-step values to group `g`.
    pub(crate) fn add(&mut self, g: usize, vals: &[f64]) {
        let base = g * self.n;
        for (step, &v) in vals.iter().enumerate() {
            if is_absent(v) {
                continue;
            }
            let k = base + step;
            self.count[k] += 1;
            let c = self.count[k] as f64;
            let a = &mut self.acc[k];
            match self.op {
                AggOp::Sum => *a += v,
                AggOp::Min if c == 1.0 || v < *a || a.is_nan() => *a = v,
                AggOp::Max if c == 1.0 || v > *a || a.is_nan() => *a = v,
                AggOp::Avg => {
                    if c == 1.0 {
                        *a = v;
                    } else {
                        // Prometheus' incremental mean, which keeps +/-Inf stable.
                        if a.is_infinite() {
                            if v.is_infinite() && (*a > 0.0) == (v > 0.0) {
                                continue;
                            }
                            if !v.is_infinite() && !v.is_nan() {
                                continue;
                            }
                        }
                        *a += v / c - *a / c;
                    }
                }
                AggOp::Stddev | AggOp::Stdvar => {
                    let delta = v - *a;
                    *a += delta / c;
                    self.aux[k] += delta * (v - *a);
                }
                _ => {}
            }
        }
    }

    /// Folds group `src` of `o` (over the same steps) into group `dst` of this one.
    pub(crate) fn merge_group(&mut self, dst: usize, o: &Acc, src: usize) {
        self.ensure_groups(dst + 1);
        for step in 0..self.n {
            self.merge_cell(dst * self.n + step, o, src * self.n + step);
        }
    }

    fn merge_cell(&mut self, k: usize, o: &Acc, ko: usize) {
        let (c1, c2) = (self.count[k] as f64, o.count[ko] as f64);
        if c2 == 0.0 {
            return;
        }
        if c1 == 0.0 {
            self.count[k] = o.count[ko];
            self.acc[k] = o.acc[ko];
            if !self.aux.is_empty() {
                self.aux[k] = o.aux[ko];
            }
            return;
        }
        let (a, b) = (self.acc[k], o.acc[ko]);
        self.acc[k] = match self.op {
            AggOp::Sum => a + b,
            AggOp::Min => {
                if b < a || a.is_nan() {
                    b
                } else {
                    a
                }
            }
            AggOp::Max => {
                if b > a || a.is_nan() {
                    b
                } else {
                    a
                }
            }
            AggOp::Avg => {
                if a.is_infinite() || b.is_infinite() {
                    a + b
                } else {
                    a + (b - a) * c2 / (c1 + c2)
                }
            }
            AggOp::Stddev | AggOp::Stdvar => {
                let delta = b - a;
                let n = c1 + c2;
                self.aux[k] += o.aux[ko] + delta * delta * c1 * c2 / n;
                a + delta * c2 / n
            }
            _ => a,
        };
        self.count[k] += o.count[ko];
    }

    /// One output series per group.
    pub(crate) fn finish(self, groups: Vec<Labels>) -> Vec<StepSeries> {
        let n = self.n;
        groups
            .into_iter()
            .enumerate()
            .map(|(gi, labels)| {
                let vals = (0..n)
                    .map(|step| {
                        let k = gi * n + step;
                        let c = self.count[k];
                        if c == 0 {
                            return absent();
                        }
                        match self.op {
                            AggOp::Count => c as f64,
                            AggOp::Group => 1.0,
                            AggOp::Stdvar => self.aux[k] / c as f64,
                            AggOp::Stddev => (self.aux[k] / c as f64).sqrt(),
                            _ => self.acc[k],
                        }
                    })
                    .collect();
                StepSeries { labels, vals }
            })
            .collect()
    }
}

/// topk order: larger first, NaN last.
fn rank_desc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.total_cmp(&a),
    }
}

/// bottomk order: smaller first, NaN last.
fn rank_asc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.total_cmp(&b),
    }
}

/// Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses for label values.
pub(crate) fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// `histogram_quantile` over classic `le` buckets.
pub(crate) fn histogram_quantile(ctx: &Ctx<'_>, q: Vec<f64>, input: Vec<StepSeries>) -> Result<Val, QueryError> {
    let n = ctx.nsteps;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    for (i, s) in input.iter().enumerate() {
        let Ok(le) = s.labels.get("le").parse::<f64>() else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.remove("le");
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((le, i));
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (labels, members) in groups {
        let mut vals = vec![absent(); n];
        for (step, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .map(|&(le, i)| (le, input[i].vals[step]))
                    .filter(|(_, v)| !is_absent(*v)),
            );
            if !buckets.is_empty() {
                *slot = bucket_quantile(q[step], &mut buckets);
            }
        }
        out.push(StepSeries { labels, vals });
    }
    Ok(Val::Vector(out))
}

fn bucket_quantile(q: f64, b: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound are merged by summing their counts.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for &(le, c) in b.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Counts must not decrease with the bound; repair as Prometheus does.
    let mut max = f64::NEG_INFINITY;
    for m in merged.iter_mut() {
        if m.1 > max {
            max = m.1;
        } else if m.1 < max {
            m.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let total = merged[merged.len() - 1].1;
    if total == 0.0 || total.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * total;
    let last = merged.len() - 1;
    let idx = merged[..last].partition_point(|m| m.1 < rank);
    if idx == last {
        return merged[last - 1].0;
    }
    if idx == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[idx].0, merged[idx].1);
    if idx > 0 {
        start = merged[idx - 1].0;
        count -= merged[idx - 1].1;
        rank -= merged[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}
