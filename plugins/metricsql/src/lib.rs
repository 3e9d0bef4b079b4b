//! MetricsQL-compatible functions PromQL lacks (semantics as VictoriaMetrics documents them).
//!
//! Range-vector functions (one result per series, `__name__` dropped as for PromQL's
//! `*_over_time`): `median_over_time`,
//! `zscore_over_time` (z-score of the last sample within the window), `distinct_over_time`
//! (distinct values), `increases_over_time` / `decreases_over_time` (how often the value rose /
//! fell), `range_over_time` (max - min), `lifetime` (seconds between the first and the last
//! sample), `lag` (seconds from the last sample to the evaluation time), `tmin_over_time` /
//! `tmax_over_time` (timestamp in seconds of the minimum / maximum), `tfirst_over_time`
//! (timestamp of the first sample).
//!
//! Instant-vector functions: `label_set(q, "k", "v", ...)`, `label_del(q, "k", ...)`,
//! `label_keep(q, "k", ...)`, `label_uppercase(q, "k", ...)`, `label_lowercase(q, "k", ...)`,
//! `label_value(q, "k")` (the label's value as a number; series where it is not a number drop).

use strata_plugin_sdk::{Argument, Batch, BatchBuilder, FunctionInfo, FunctionPlugin, Value, ValueKind};

/// The plugin.
pub struct MetricsQl;

// `mad_over_time` is not here: PromQL has it built in (Prometheus 3), and a plugin function may
// not shadow a built-in.
const RANGE_FUNCS: [&str; 11] = [
    "median_over_time",
    "zscore_over_time",
    "distinct_over_time",
    "increases_over_time",
    "decreases_over_time",
    "range_over_time",
    "lifetime",
    "lag",
    "tmin_over_time",
    "tmax_over_time",
    "tfirst_over_time",
];
const LABEL_FUNCS: [&str; 5] = [
    "label_set",
    "label_del",
    "label_keep",
    "label_uppercase",
    "label_lowercase",
];

impl FunctionPlugin for MetricsQl {
    fn describe() -> Vec<FunctionInfo> {
        let mut v: Vec<FunctionInfo> = RANGE_FUNCS
            .iter()
            .map(|n| FunctionInfo {
                name: n.to_string(),
                args: vec![ValueKind::RangeVector],
                optional_args: 0,
                result: ValueKind::InstantVector,
            })
            .collect();
        // Label functions take up to 16 string arguments after the vector.
        for n in LABEL_FUNCS {
            let mut args = vec![ValueKind::InstantVector];
            args.extend([ValueKind::String; 16]);
            v.push(FunctionInfo {
                name: n.into(),
                args,
                optional_args: 15,
                result: ValueKind::InstantVector,
            });
        }
        v.push(FunctionInfo {
            name: "label_value".into(),
            args: vec![ValueKind::InstantVector, ValueKind::String],
            optional_args: 0,
            result: ValueKind::InstantVector,
        });
        v
    }

    fn call(name: &str, ts: i64, args: Vec<Argument>) -> Result<Value, String> {
        let mut args = args.into_iter();
        let first = args.next().ok_or_else(|| format!("{name}: missing argument"))?;
        let strings: Vec<String> = args
            .map(|a| match a {
                Argument::String(s) => Ok(s),
                other => Err(format!("{name}: expected string arguments, got {other:?}")),
            })
            .collect::<Result<_, _>>()?;
        let out = match (name, first) {
            (n, Argument::RangeVector(b)) if RANGE_FUNCS.contains(&n) => over_time(n, &b, ts),
            (n, Argument::InstantVector(b)) if LABEL_FUNCS.contains(&n) || n == "label_value" => {
                label_func(n, &b, &strings)?
            }
            (n, a) => return Err(format!("{n}: unexpected arguments starting with {a:?}")),
        };
        Ok(Value::InstantVector(out))
    }
}

strata_plugin_sdk::export_functions!(MetricsQl);

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Evaluates one `*_over_time` function over the window of every series; `eval_ts` is the
/// evaluation time (ms).
pub fn window_value(name: &str, samples: &[(i64, f64)], eval_ts: i64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().map(|s| s.1).collect();
    if v.is_empty() {
        return None;
    }
    let secs = |t: i64| t as f64 / 1000.0;
    // Timestamp of the first sample whose value is extreme (`better(a, b)`: a beats b).
    let t_of = |better: fn(f64, f64) -> bool| {
        let mut best = samples[0];
        for &s in &samples[1..] {
            if better(s.1, best.1) || best.1.is_nan() {
                best = s;
            }
        }
        secs(best.0)
    };
    Some(match name {
        "range_over_time" => {
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            max - min
        }
        "lifetime" => secs(samples[samples.len() - 1].0 - samples[0].0),
        "lag" => secs(eval_ts - samples[samples.len() - 1].0),
        "tmin_over_time" => t_of(|a, b| a < b),
        "tmax_over_time" => t_of(|a, b| a > b),
        "tfirst_over_time" => secs(samples[0].0),
        "median_over_time" => median(&mut v),
        "zscore_over_time" => {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let last = *v.last()?;
            (last - mean) / var.sqrt()
        }
        "distinct_over_time" => {
            v.sort_by(f64::total_cmp);
            v.dedup_by(|a, b| a.to_bits() == b.to_bits());
            v.len() as f64
        }
        "increases_over_time" => v.windows(2).filter(|w| w[1] > w[0]).count() as f64,
        "decreases_over_time" => v.windows(2).filter(|w| w[1] < w[0]).count() as f64,
        _ => return None,
    })
}

fn over_time(name: &str, b: &Batch, ts: i64) -> Batch {
    let mut out = BatchBuilder::new();
    for s in 0..b.series_count() {
        let Some(value) = window_value(name, &b.samples(s), ts) else {
            continue;
        };
        for (k, v) in b.labels(s) {
            if k != "__name__" {
                out.label(k, v);
            }
        }
        out.sample(ts, value);
        out.finish_series();
    }
    out.finish()
}

fn label_func(name: &str, b: &Batch, args: &[String]) -> Result<Batch, String> {
    if name == "label_set" && !args.len().is_multiple_of(2) {
        return Err("label_set: expects name/value pairs".into());
    }
    if name == "label_value" && args.len() != 1 {
        return Err("label_value: expects one label name".into());
    }
    let mut out = BatchBuilder::new();
    for s in 0..b.series_count() {
        let labels = b.labels(s);
        let samples = b.samples(s);
        let mut new: Vec<(String, String)> = Vec::with_capacity(labels.len() + args.len() / 2);
        let mut value_override = None;
        match name {
            "label_set" => {
                let set: Vec<(&str, &str)> = args.chunks_exact(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
                new.extend(
                    labels
                        .iter()
                        .filter(|(k, _)| !set.iter().any(|(n, _)| n == k))
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                // An empty value deletes the label, as in MetricsQL.
                new.extend(
                    set.iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
            }
            "label_del" => new.extend(
                labels
                    .iter()
                    .filter(|(k, _)| !args.iter().any(|a| a == k))
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            "label_keep" => new.extend(
                labels
                    .iter()
                    .filter(|(k, _)| args.iter().any(|a| a == k))
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            ),
            "label_uppercase" | "label_lowercase" => new.extend(labels.iter().map(|(k, v)| {
                let v = if args.iter().any(|a| a == k) {
                    if name == "label_uppercase" {
                        v.to_uppercase()
                    } else {
                        v.to_lowercase()
                    }
                } else {
                    v.to_string()
                };
                (k.to_string(), v)
            })),
            _ => {
                // label_value
                let Some(v) = labels
                    .iter()
                    .find(|(k, _)| *k == args[0])
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                else {
                    continue;
                };
                value_override = Some(v);
                new.extend(
                    labels
                        .iter()
                        .filter(|(k, _)| *k != "__name__")
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
            }
        }
        for (k, v) in &new {
            out.label(k, v);
        }
        for (t, v) in samples {
            out.sample(t, value_override.unwrap_or(v));
        }
        out.finish_series();
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests;
