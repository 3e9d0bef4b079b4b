//! Query-function plugins: registration into the PromQL function table and calls.

mod common;

use std::sync::Arc;

use strata_plugin_host::{HostOptions, PluginHost, PluginKind};
use strata_query::functions::{CustomArg, CustomOutput, FunctionImpl};
use strata_query::{FunctionRegistry, Labels};

fn host() -> Arc<PluginHost> {
    let mut spec = common::spec("metricsql", "strata_metricsql");
    spec.kind = PluginKind::Function;
    Arc::new(PluginHost::load(HostOptions::default(), vec![spec]).unwrap())
}

#[test]
fn instant_vector_functions_register_and_run() {
    let host = host();
    let mut registry = FunctionRegistry::with_builtins();
    let errors = host.register_functions(&mut registry);
    let def = registry.get("label_set").expect("label_set is registered");
    let FunctionImpl::Custom(f) = &def.imp else {
        panic!("not custom")
    };
    let input = vec![(Labels::from_pairs([("__name__", "up"), ("job", "a")]), 1.0)];
    let out = f
        .call(
            &[
                CustomArg::Vector(input),
                CustomArg::String("env".into()),
                CustomArg::String("prod".into()),
            ],
            5000,
        )
        .unwrap();
    let CustomOutput::Vector(v) = out else {
        panic!("{out:?}")
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0.get("env"), "prod");
    assert_eq!(v[0].0.get("job"), "a");
    assert_eq!(v[0].1, 1.0);
    for name in [
        "label_del",
        "label_keep",
        "label_uppercase",
        "label_lowercase",
        "label_value",
    ] {
        assert!(registry.get(name).is_some(), "{name}");
    }
    // Range-vector functions register too.
    assert!(errors.is_empty(), "{errors:?}");
    for name in [
        "median_over_time",
        "zscore_over_time",
        "distinct_over_time",
        "range_over_time",
        "lag",
    ] {
        assert!(registry.get(name).is_some(), "{name}");
    }
    let status = &host.list()[0];
    assert!(status.functions.len() >= 12, "{:?}", status.functions);
}

#[test]
fn range_vector_functions_run_through_the_engine() {
    use strata_query::{Engine, MemSource, QueryOptions, QueryValue};
    let host = host();
    let mut registry = FunctionRegistry::with_builtins();
    assert!(host.register_functions(&mut registry).is_empty());
    let mut src = MemSource::new();
    // a: 1 2 3 4 100 -> median 3, range 99; b: 5 5 5 5 5 -> median 5, range 0.
    let a = [1.0, 2.0, 3.0, 4.0, 100.0];
    src.add(
        Labels::from_pairs([("__name__", "m"), ("s", "a")]),
        a.iter().enumerate().map(|(k, v)| (k as i64 * 10_000, *v)),
    );
    src.add(
        Labels::from_pairs([("__name__", "m"), ("s", "b")]),
        (0..5).map(|k| (k * 10_000, 5.0)),
    );
    let engine = Engine::with_registry(Arc::new(src), Arc::new(registry), QueryOptions::default());
    let value = |q: &str| -> Vec<(String, f64)> {
        let QueryValue::Vector(v) = engine.instant_query(q, 40_000).unwrap().value else {
            panic!("{q}: not a vector")
        };
        let mut out: Vec<(String, f64)> = v.iter().map(|s| (s.labels.to_string(), s.v)).collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    };
    let median = value("median_over_time(m[1m])");
    assert_eq!(
        median,
        vec![("{s=\"a\"}".to_string(), 3.0), ("{s=\"b\"}".to_string(), 5.0)]
    );
    let range = value("range_over_time(m[1m])");
    assert_eq!(range[0].1, 99.0);
    assert_eq!(range[1].1, 0.0);
    let inc = value("increases_over_time(m[1m])");
    assert_eq!(inc[0].1, 4.0);
    // A range query calls once per step over all series.
    let calls_before = host.list()[0].calls;
    let r = engine
        .range_query("median_over_time(m[1m])", 0, 40_000, 10_000)
        .unwrap();
    assert!(matches!(r.value, QueryValue::Matrix(_)));
    assert_eq!(host.list()[0].calls - calls_before, 5);
}

#[test]
fn a_name_clash_is_refused() {
    let host = host();
    let mut registry = FunctionRegistry::with_builtins();
    host.register_functions(&mut registry);
    // Registering the same plugin again clashes with its own earlier registration.
    let again = host.register_functions(&mut registry);
    assert!(
        again.iter().any(|e| e.to_string().contains("already registered")),
        "{again:?}"
    );
}
