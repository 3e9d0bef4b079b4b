//! Engine-level tests: fused/parallel aggregation against the plain path, limits, custom
//! functions registered at run time, and result shapes.

use std::sync::Arc;

use strata_query::functions::{CustomArg, CustomFunction, CustomOutput};
use strata_query::{
    Engine, FunctionRegistry, Labels, MemSource, QueryError, QueryOptions, QueryValue, Series, ValueType, stale_nan,
};

/// 1100 series (more than one source batch) over 2 hours at 15s with counter resets, gaps and stale markers.
fn source() -> MemSource {
    let mut src = MemSource::new();
    let mut seed = 42u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    for i in 0..1100 {
        let labels = Labels::from_pairs([
            ("__name__", "req_total".to_string()),
            ("job", format!("job{}", i % 7)),
            ("instance", format!("i{i}")),
        ]);
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        let mut v = 0.0;
        for k in 0..480i64 {
            if rnd() < 0.05 {
                continue;
            }
            v += rnd() * 10.0;
            if rnd() < 0.01 {
                v = 0.0;
            }
            ts.push(k * 15_000);
            vals.push(if rnd() < 0.005 { stale_nan() } else { v });
        }
        src.push_series(Series {
            labels,
            timestamps: ts,
            values: vals,
        });
    }
    src
}

fn matrix(v: QueryValue) -> Vec<(Labels, Vec<(i64, f64)>)> {
    match v {
        QueryValue::Matrix(m) => m.into_iter().map(|s| (s.labels, s.points)).collect(),
        other => panic!("expected a matrix, got {other:?}"),
    }
}

fn assert_close(a: &[(Labels, Vec<(i64, f64)>)], b: &[(Labels, Vec<(i64, f64)>)], q: &str) {
    assert_eq!(a.len(), b.len(), "{q}: series count");
    for ((la, pa), (lb, pb)) in a.iter().zip(b) {
        assert_eq!(la, lb, "{q}");
        assert_eq!(pa.len(), pb.len(), "{q}: points of {la}");
        for ((ta, va), (tb, vb)) in pa.iter().zip(pb) {
            assert_eq!(ta, tb, "{q}");
            let ok = (va.is_nan() && vb.is_nan()) || (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs()).max(1e-300);
            assert!(ok, "{q}: {la} at {ta}: {va} vs {vb}");
        }
    }
}

#[test]
fn fused_parallel_aggregation_matches_plain_evaluation() {
    let src: Arc<MemSource> = Arc::new(source());
    let par = Engine::new(
        src.clone(),
        QueryOptions {
            threads: 2,
            ..Default::default()
        },
    );
    let serial = Engine::new(
        src,
        QueryOptions {
            threads: 1,
            ..Default::default()
        },
    );
    for agg in ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"] {
        for inner in ["rate(req_total[5m])", "req_total", "max_over_time(req_total[2m])"] {
            let fused = format!("{agg} by (job) ({inner})");
            // `+ 0` keeps the values but takes the unfused path.
            let plain = format!("{agg} by (job) ({inner} + 0)");
            let a = matrix(par.range_query(&fused, 600_000, 7_200_000, 60_000).unwrap().value);
            let b = matrix(serial.range_query(&plain, 600_000, 7_200_000, 60_000).unwrap().value);
            assert!(!a.is_empty(), "{fused}");
            assert_close(&a, &b, &fused);
        }
    }
}

#[test]
fn range_query_equals_instant_queries_at_each_step() {
    let engine = Engine::new(Arc::new(source()), QueryOptions::default());
    for q in [
        "sum by (job) (rate(req_total[5m]))",
        "topk(3, req_total)",
        "histogram_quantile(0.9, sum by (le) (label_replace(rate(req_total[5m]), \"le\", \"$1\", \"job\", \"job(.*)\")))",
        "max_over_time(rate(req_total{job=\"job1\"}[2m])[10m:1m])",
        "req_total{job=\"job2\"} > bool on(instance) group_left req_total{job=\"job2\"} offset 1m",
    ] {
        let range = matrix(engine.range_query(q, 1_800_000, 2_400_000, 60_000).unwrap().value);
        for step in 0..=10i64 {
            let t = 1_800_000 + step * 60_000;
            let QueryValue::Vector(inst) = engine.instant_query(q, t).unwrap().value else {
                panic!("{q}: not a vector");
            };
            for s in &inst {
                let series = range.iter().find(|(l, _)| *l == s.labels);
                let point = series.and_then(|(_, p)| p.iter().find(|(pt, _)| *pt == t));
                let Some((_, v)) = point else {
                    panic!("{q}: {} missing at {t} in range result", s.labels);
                };
                assert!(
                    (v.is_nan() && s.v.is_nan()) || (v - s.v).abs() <= 1e-9 * v.abs().max(1e-300),
                    "{q} at {t}"
                );
            }
            let in_range = range.iter().filter(|(_, p)| p.iter().any(|(pt, _)| *pt == t)).count();
            assert_eq!(in_range, inst.len(), "{q} at {t}");
        }
    }
}

#[test]
fn limits_give_clear_errors() {
    let src = Arc::new(source());
    let e = Engine::new(
        src.clone(),
        QueryOptions {
            max_series: 10,
            ..Default::default()
        },
    );
    let err = e.instant_query("req_total", 600_000).unwrap_err();
    assert!(matches!(err, QueryError::TooManySeries(10)), "{err}");
    assert_eq!(
        err.to_string(),
        "the query hit the max number of series limit (limit: 10)"
    );
    // The fused (streaming) aggregation path enforces the same limit.
    let err = e.instant_query("sum(rate(req_total[5m]))", 600_000).unwrap_err();
    assert!(matches!(err, QueryError::TooManySeries(10)), "{err}");
    let e = Engine::new(
        src.clone(),
        QueryOptions {
            max_samples: 1000,
            ..Default::default()
        },
    );
    assert!(matches!(
        e.instant_query("rate(req_total[1h])", 3_600_000),
        Err(QueryError::TooManySamples)
    ));
    let e = Engine::new(src, QueryOptions::default());
    let err = e.range_query("req_total", 0, 100_000_000, 1000).unwrap_err();
    assert!(
        err.to_string().contains("exceeded maximum resolution of 11000 points"),
        "{err}"
    );
    let err = e.range_query("req_total[5m]", 0, 1000, 1000).unwrap_err();
    assert!(
        err.to_string().contains("invalid expression type \"range vector\""),
        "{err}"
    );
    let err = e.instant_query("sum(", 0).unwrap_err();
    assert!(matches!(err, QueryError::Parse(_)));
    assert_eq!(err.to_string(), "1:5: parse error: unexpected end of input");
}

struct Double;

impl CustomFunction for Double {
    fn call(&self, args: &[CustomArg], _ts_ms: i64) -> Result<CustomOutput, String> {
        match args {
            [CustomArg::Vector(v), CustomArg::Scalar(f)] => Ok(CustomOutput::Vector(
                v.iter().map(|(l, x)| (l.without_name(), x * f)).collect(),
            )),
            _ => Err("bad arguments".into()),
        }
    }
}

#[test]
fn custom_functions_parse_and_evaluate() {
    let mut reg = FunctionRegistry::with_builtins();
    reg.register(
        "scale_by",
        vec![ValueType::Vector, ValueType::Scalar],
        0,
        ValueType::Vector,
        Arc::new(Double),
    )
    .unwrap();
    assert!(
        reg.register("rate", vec![], 0, ValueType::Scalar, Arc::new(Double))
            .is_err()
    );
    assert!(
        reg.register("bad name", vec![], 0, ValueType::Scalar, Arc::new(Double))
            .is_err()
    );
    let mut src = MemSource::new();
    src.add(Labels::from_pairs([("__name__", "m"), ("a", "b")]), [(0, 2.0)]);
    let e = Engine::with_registry(Arc::new(src), Arc::new(reg), QueryOptions::default());
    let QueryValue::Vector(v) = e.instant_query("sum(scale_by(m, 3))", 0).unwrap().value else {
        panic!("not a vector");
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].v, 6.0);
    let err = e.instant_query("scale_by(m)", 0).unwrap_err();
    assert!(err.to_string().contains("expected 2 argument(s)"), "{err}");
}

#[test]
fn result_shapes() {
    let mut src = MemSource::new();
    src.add(
        Labels::from_pairs([("__name__", "m")]),
        [(0, 1.0), (60_000, 2.0), (120_000, 3.0)],
    );
    let e = Engine::new(Arc::new(src), QueryOptions::default());
    assert_eq!(
        e.instant_query("1 + 1", 5000).unwrap().value,
        QueryValue::Scalar { t: 5000, v: 2.0 }
    );
    assert_eq!(
        e.instant_query("\"x\"", 5000).unwrap().value,
        QueryValue::String { t: 5000, v: "x".into() }
    );
    let QueryValue::Matrix(m) = e.instant_query("m[2m]", 120_000).unwrap().value else {
        panic!("not a matrix");
    };
    assert_eq!(m[0].points, vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]);
    let r = e.range_query("time()", 0, 120_000, 60_000).unwrap();
    assert_eq!(matrix(r.value)[0].1, vec![(0, 0.0), (60_000, 60.0), (120_000, 120.0)]);
    assert!(r.stats.samples_fetched == 0);
    let r = e.instant_query("m", 120_000).unwrap();
    assert_eq!(r.stats.series_fetched, 1);
}

#[test]
fn sharded_streaming_reads_match_across_thread_counts() {
    // MemSource hands out shards of 16 series, so 1100 series are read by several workers.
    let src: Arc<MemSource> = Arc::new(source());
    let engine = |threads| {
        Engine::new(
            src.clone(),
            QueryOptions {
                threads,
                ..Default::default()
            },
        )
    };
    let (one, four) = (engine(1), engine(4));
    for q in [
        "req_total",
        "rate(req_total[5m])",
        "holt_winters(req_total[10m], 0.5, 0.5)",
        "req_total / on (instance) req_total",
        "topk(5, increase(req_total[10m]))",
        "timestamp(req_total)",
        "quantile_over_time(0.5, req_total[5m])",
    ] {
        let a = matrix(one.range_query(q, 600_000, 7_200_000, 60_000).unwrap().value);
        let b = matrix(four.range_query(q, 600_000, 7_200_000, 60_000).unwrap().value);
        assert!(!a.is_empty(), "{q}");
        assert_close(&a, &b, q);
    }
}

#[test]
fn limits_fail_while_series_stream_in() {
    let src: Arc<MemSource> = Arc::new(source());
    let few_series = Engine::new(
        src.clone(),
        QueryOptions {
            max_series: 100,
            threads: 3,
            ..Default::default()
        },
    );
    for q in ["req_total", "rate(req_total[5m])", "sum(rate(req_total[5m]))"] {
        let err = few_series.instant_query(q, 3_600_000).unwrap_err();
        assert!(matches!(err, QueryError::TooManySeries(100)), "{q}: {err}");
    }
    let few_samples = Engine::new(
        src,
        QueryOptions {
            max_samples: 10_000,
            threads: 3,
            ..Default::default()
        },
    );
    let err = few_samples
        .instant_query("sum(sum_over_time(req_total[1h]))", 3_600_000)
        .unwrap_err();
    assert!(matches!(err, QueryError::TooManySamples), "{err}");
}

/// A source without its own sharding: the engine gets the default single shard.
struct OneShard(MemSource);

impl strata_query::SeriesSource for OneShard {
    fn select(
        &self,
        matchers: &[strata_query::LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, strata_query::SourceError> {
        self.0.select(matchers, start_ms, end_ms)
    }

    fn label_names(
        &self,
        matchers: &[strata_query::LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, strata_query::SourceError> {
        self.0.label_names(matchers, start_ms, end_ms)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[strata_query::LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, strata_query::SourceError> {
        self.0.label_values(name, matchers, start_ms, end_ms)
    }
}

#[test]
fn a_single_shard_is_computed_by_all_workers_in_order() {
    use strata_query::SeriesSource as _;
    let sharded = Engine::new(
        Arc::new(source()),
        QueryOptions {
            threads: 1,
            ..Default::default()
        },
    );
    let single = Engine::new(
        Arc::new(OneShard(source())),
        QueryOptions {
            threads: 3,
            ..Default::default()
        },
    );
    for q in [
        "req_total",
        "rate(req_total[5m])",
        "sum by (job) (rate(req_total[5m]))",
        "topk(3, req_total)",
        "rate(req_total{instance=~\"i1.?\"}[5m])",
    ] {
        let a = matrix(sharded.range_query(q, 600_000, 7_200_000, 60_000).unwrap().value);
        let b = matrix(single.range_query(q, 600_000, 7_200_000, 60_000).unwrap().value);
        assert!(!a.is_empty(), "{q}");
        assert_close(&a, &b, q);
    }
    let limited = Engine::new(
        Arc::new(OneShard(source())),
        QueryOptions {
            max_series: 300,
            threads: 3,
            ..Default::default()
        },
    );
    let err = limited.instant_query("rate(req_total[5m])", 3_600_000).unwrap_err();
    assert!(matches!(err, QueryError::TooManySeries(300)), "{err}");
    assert_eq!(
        OneShard(source()).select_shards(&[], 0, 1).map(|s| s.len()).ok(),
        Some(1)
    );
}
