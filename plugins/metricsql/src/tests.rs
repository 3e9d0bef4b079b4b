use super::*;

/// Labels and values of one series.
type Series<'a> = (&'a [(&'a str, &'a str)], &'a [f64]);

fn range(series: &[Series<'_>]) -> Argument {
    let mut b = BatchBuilder::new();
    for (labels, values) in series {
        let samples: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 1000, *v)).collect();
        b.series(labels, &samples);
    }
    Argument::RangeVector(b.finish())
}

fn eval(name: &str, args: Vec<Argument>) -> Batch {
    match MetricsQl::call(name, 99, args).unwrap() {
        Value::InstantVector(b) => b,
        other => panic!("{other:?}"),
    }
}

fn value(name: &str, values: &[f64]) -> f64 {
    eval(name, vec![range(&[(&[("__name__", "m")], values)])]).values[0]
}

#[test]
fn window_statistics_match_metricsql() {
    assert_eq!(value("median_over_time", &[5.0, 1.0, 3.0]), 3.0);
    assert_eq!(value("median_over_time", &[4.0, 1.0, 3.0, 2.0]), 2.5);
    // mean 2, population stddev sqrt(2/3*...) : values [1, 2, 3] -> (3 - 2) / 0.8165
    let z = value("zscore_over_time", &[1.0, 2.0, 3.0]);
    assert!((z - 1.224_744_871).abs() < 1e-6, "{z}");
    assert_eq!(value("distinct_over_time", &[1.0, 1.0, 2.0, 3.0, 2.0]), 3.0);
    assert_eq!(value("increases_over_time", &[1.0, 2.0, 1.0, 5.0]), 2.0);
    assert_eq!(value("decreases_over_time", &[1.0, 2.0, 1.0, 5.0]), 1.0);
    assert_eq!(value("range_over_time", &[3.0, -1.0, 7.0]), 8.0);
}

#[test]
fn timestamp_functions_are_in_seconds() {
    // Samples at 0, 1, 2, 3 s; evaluated at 99 ms... use a later time to see lag.
    let out = |name: &str, values: &[f64], at: i64| match MetricsQl::call(
        name,
        at,
        vec![range(&[(&[("__name__", "m")], values)])],
    )
    .unwrap()
    {
        Value::InstantVector(b) => b.values[0],
        other => panic!("{other:?}"),
    };
    let v = [5.0, 1.0, 9.0, 1.0];
    assert_eq!(out("lifetime", &v, 10_000), 3.0);
    assert_eq!(out("lag", &v, 10_000), 7.0);
    assert_eq!(out("tmin_over_time", &v, 10_000), 1.0);
    assert_eq!(out("tmax_over_time", &v, 10_000), 2.0);
    assert_eq!(out("tfirst_over_time", &v, 10_000), 0.0);
}

#[test]
fn over_time_drops_the_name_keeps_labels_and_skips_empty_windows() {
    let out = eval(
        "median_over_time",
        vec![range(&[
            (&[("__name__", "m"), ("job", "a")], &[1.0]),
            (&[("__name__", "m"), ("job", "b")], &[]),
        ])],
    );
    assert_eq!(out.series_count(), 1);
    assert_eq!(out.labels(0), vec![("job", "a")]);
    assert_eq!(out.samples(0), vec![(99, 1.0)]);
}

fn instant(labels: &[(&str, &str)], v: f64) -> Argument {
    let mut b = BatchBuilder::new();
    b.series(labels, &[(99, v)]);
    Argument::InstantVector(b.finish())
}

fn s(x: &str) -> Argument {
    Argument::String(x.into())
}

#[test]
fn label_functions() {
    let q = || instant(&[("__name__", "m"), ("a", "x"), ("b", "42")], 1.0);
    let out = eval("label_set", vec![q(), s("a"), s("y"), s("c"), s("z")]);
    assert_eq!(
        out.labels(0),
        vec![("__name__", "m"), ("b", "42"), ("a", "y"), ("c", "z")]
    );
    let out = eval("label_del", vec![q(), s("a")]);
    assert_eq!(out.labels(0), vec![("__name__", "m"), ("b", "42")]);
    let out = eval("label_keep", vec![q(), s("a")]);
    assert_eq!(out.labels(0), vec![("a", "x")]);
    let out = eval("label_uppercase", vec![q(), s("a")]);
    assert_eq!(out.labels(0)[1], ("a", "X"));
    let out = eval("label_value", vec![q(), s("b")]);
    assert_eq!(out.samples(0), vec![(99, 42.0)]);
    assert_eq!(eval("label_value", vec![q(), s("a")]).series_count(), 0, "not a number");
    assert!(MetricsQl::call("label_set", 0, vec![q(), s("odd")]).is_err());
    assert!(MetricsQl::call("nope", 0, vec![q()]).is_err());
}

#[test]
fn describe_lists_every_function() {
    let names: Vec<String> = MetricsQl::describe().into_iter().map(|f| f.name).collect();
    assert_eq!(names.len(), 17);
    assert!(!names.iter().any(|n| n == "mad_over_time"), "a PromQL built-in");
    assert!(names.iter().any(|n| n == "zscore_over_time"));
}
