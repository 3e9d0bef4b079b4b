//! Query-function plugins: registration into the PromQL function table and calls.

mod common;

use std::sync::Arc;

use strata_plugin_host::{HostOptions, PluginError, PluginHost, PluginKind};
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
    // The function table does not take range-vector arguments from plugins yet: those six
    // functions are refused by name, the rest register.
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, PluginError::Config { .. })));
    assert!(errors.iter().any(|e| e.to_string().contains("median_over_time")));
    let status = &host.list()[0];
    assert_eq!(status.functions.len(), 12);
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
