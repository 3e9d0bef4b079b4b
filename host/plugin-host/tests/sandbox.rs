//! The sandbox: each hostile behaviour fails its own call with its reason, and the next call
//! on the same plugin succeeds.

mod common;

use common::{params, spec};
use strata_ingest::MetricBatch;
use strata_plugin_host::{CallFailure, HostOptions, PluginError, PluginHost};

fn hostile_host() -> PluginHost {
    PluginHost::load(HostOptions::default(), vec![spec("hostile", "strata_hostile")]).unwrap()
}

fn call(host: &PluginHost, mode: &str) -> Result<MetricBatch, PluginError> {
    let plugin = host.ingest_plugin("hostile").unwrap();
    let mut out = MetricBatch::new();
    plugin
        .parse_into(&params(&[("mode", mode)]), b"", 1000, &mut out)
        .map(|()| out)
}

fn failure(r: Result<MetricBatch, PluginError>) -> CallFailure {
    match r {
        Err(PluginError::Call { plugin, failure }) => {
            assert_eq!(plugin, "hostile");
            failure
        }
        other => panic!("expected a call failure, got {other:?}"),
    }
}

fn assert_next_call_works(host: &PluginHost) {
    let batch = call(host, "ok").expect("the call after a failure works");
    assert_eq!(batch.series_count(), 1);
    assert_eq!(batch.series(0).metric_name(), "hostile_ok");
}

#[test]
fn infinite_loop_times_out_and_the_host_goes_on() {
    let host = hostile_host();
    let f = failure(call(&host, "loop"));
    assert_eq!(f, CallFailure::Timeout { limit_ms: 300 });
    assert!(f.to_string().contains("300 ms"));
    assert_next_call_works(&host);
    let status = &host.list()[0];
    assert_eq!(status.failures["timeout"], 1);
}

#[test]
fn memory_bomb_hits_the_limit() {
    let host = hostile_host();
    assert_eq!(
        failure(call(&host, "bomb")),
        CallFailure::OutOfMemory { limit_bytes: 64 << 20 }
    );
    assert_next_call_works(&host);
    assert_eq!(host.list()[0].failures["out_of_memory"], 1);
}

#[test]
fn panic_is_a_trap() {
    let host = hostile_host();
    let f = failure(call(&host, "trap"));
    assert!(matches!(f, CallFailure::Trap(_)), "{f:?}");
    assert_next_call_works(&host);
    assert_eq!(host.list()[0].failures["trap"], 1);
}

#[test]
fn huge_output_within_memory_is_delivered_and_beyond_it_fails() {
    // This is about memory: a generous deadline so a loaded machine cannot turn the expected
    // out-of-memory into a timeout.
    let mut spec = spec("hostile", "strata_hostile");
    spec.limits.timeout = std::time::Duration::from_secs(20);
    let host = PluginHost::load(HostOptions::default(), vec![spec]).unwrap();
    let plugin = host.ingest_plugin("hostile").unwrap();
    let mut out = MetricBatch::new();
    plugin
        .parse_into(&params(&[("mode", "huge"), ("n", "20000")]), b"", 1, &mut out)
        .unwrap();
    assert_eq!(out.series_count(), 20_000);
    assert_eq!(out.series(19_999).label("i"), Some("19999"));
    // A million series do not fit in 64 MiB of guest memory.
    let r = plugin.parse_into(&params(&[("mode", "huge")]), b"", 1, &mut out);
    assert!(
        matches!(
            r,
            Err(PluginError::Call {
                failure: CallFailure::OutOfMemory { .. },
                ..
            })
        ),
        "{r:?}"
    );
    assert_next_call_works(&host);
}

#[test]
fn parse_errors_carry_line_and_offset() {
    let host = hostile_host();
    match call(&host, "error") {
        Err(PluginError::Parse {
            plugin,
            line,
            offset,
            message,
        }) => {
            assert_eq!((plugin.as_str(), line, offset), ("hostile", 3, 17));
            assert_eq!(message, "refused on purpose");
        }
        other => panic!("{other:?}"),
    }
    assert_next_call_works(&host);
}

#[test]
fn invalid_label_names_are_refused_by_validation() {
    let host = hostile_host();
    let mut batch = call(&host, "invalid").unwrap();
    let limits = strata_ingest::IngestLimits::default();
    let err = limits.validate(&mut batch, 1000).unwrap_err();
    assert_eq!(err.reason, strata_ingest::RejectReason::InvalidLabelName);
}

#[test]
fn a_component_without_the_contract_is_refused_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.wasm");
    // The smallest valid component: preamble only, no exports.
    std::fs::write(&path, b"\0asm\x0d\x00\x01\x00").unwrap();
    let mut s = spec("empty", "strata_hostile");
    s.path = path;
    let err = PluginHost::load(HostOptions::default(), vec![s]).unwrap_err();
    assert!(matches!(err, PluginError::Version { .. }), "{err:?}");
    assert!(err.to_string().contains("strata:plugin@0.1.0"), "{err}");
}

#[test]
fn compiled_components_are_cached_and_reload_keeps_the_old_version_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = HostOptions {
        cache_dir: Some(dir.path().join("cache")),
    };
    let copy = dir.path().join("hostile.wasm");
    std::fs::copy(common::component("strata_hostile"), &copy).unwrap();
    let mut s = spec("hostile", "strata_hostile");
    s.path = copy.clone();
    let first = PluginHost::load(options.clone(), vec![s.clone()]).unwrap();
    assert!(!first.list()[0].from_cache);
    let second = PluginHost::load(options, vec![s]).unwrap();
    assert!(
        second.list()[0].from_cache,
        "the second load reuses the compiled artifact"
    );

    std::fs::write(&copy, b"not a component").unwrap();
    let results = second.reload();
    assert_eq!(results.len(), 1);
    assert!(matches!(results[0].1, Err(PluginError::Load { .. })));
    assert_next_call_works(&second);
}

#[test]
fn influx_parses_through_the_host() {
    let host = PluginHost::load(HostOptions::default(), vec![spec("influx", "strata_influx")]).unwrap();
    let plugin = host.ingest_plugin("influx").unwrap();
    assert_eq!(plugin.info().name, "influx");
    assert_eq!(plugin.info().http_paths, ["/write", "/influx/write", "/api/v2/write"]);
    let mut out = MetricBatch::new();
    let body = b"cpu,host=a usage=0.5,idle=2i 1700000000\n";
    plugin
        .parse_into(&params(&[("precision", "s"), ("db", "t")]), body, 0, &mut out)
        .unwrap();
    assert_eq!(out.series_count(), 2);
    let s = out.series(1);
    assert_eq!(
        s.labels().collect::<Vec<_>>(),
        vec![("__name__", "cpu_idle"), ("host", "a"), ("db", "t")]
    );
    assert_eq!(s.timestamps(), &[1_700_000_000_000]);
    assert_eq!(s.values(), &[2.0]);
}
