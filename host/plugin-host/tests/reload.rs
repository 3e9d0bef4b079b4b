//! Reloading on file change: only changed content reloads, a broken file is refused once and
//! not retried until it changes, and the old version serves meanwhile.

mod common;

use strata_ingest::MetricBatch;
use strata_plugin_host::{HostOptions, PluginError, PluginHost};

/// The same component with a custom section appended: valid, but different bytes.
fn variant(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(&[0, 5, 3, b't', b's', b't', tag]);
    v
}

fn parses(host: &PluginHost) -> bool {
    let mut out = MetricBatch::new();
    host.ingest_plugin("influx")
        .unwrap()
        .parse_into(&[], b"m value=1 1000000000\n", 0, &mut out)
        .is_ok()
        && out.series_count() == 1
}

#[test]
fn reload_changed_swaps_new_content_and_refuses_broken_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(common::component("strata_influx")).unwrap();
    let path = dir.path().join("influx.wasm");
    std::fs::write(&path, &original).unwrap();
    let mut spec = common::spec("influx", "strata_influx");
    spec.path = path.clone();
    let host = PluginHost::load(HostOptions::default(), vec![spec.clone()]).unwrap();
    assert!(host.reload_changed().is_empty(), "nothing changed");

    // Same content, new mtime: nothing to do.
    std::fs::write(&path, &original).unwrap();
    assert!(host.reload_changed().is_empty());

    std::fs::write(&path, variant(&original, 1)).unwrap();
    let r = host.reload_changed();
    assert_eq!(r.len(), 1);
    assert!(r[0].1.is_ok(), "{r:?}");
    assert!(parses(&host));

    std::fs::write(&path, b"\0asm not really").unwrap();
    let r = host.reload_changed();
    assert!(matches!(r[0].1, Err(PluginError::Load { .. })), "{r:?}");
    assert!(host.reload_changed().is_empty(), "the same broken file is not retried");
    assert!(parses(&host), "the previous version keeps serving");

    std::fs::remove_file(&path).unwrap();
    assert!(host.reload_changed().is_empty(), "a missing file is waited for");
    std::fs::write(&path, variant(&original, 2)).unwrap();
    assert!(host.reload_changed()[0].1.is_ok());
    assert!(parses(&host));
}

#[test]
fn a_missing_file_says_how_to_build_it() {
    let mut spec = common::spec("influx", "strata_influx");
    spec.path = "/nonexistent/strata_influx.wasm".into();
    let err = PluginHost::load(HostOptions::default(), vec![spec])
        .unwrap_err()
        .to_string();
    assert!(err.contains("scripts/build-plugins"), "{err}");
    assert!(err.contains("influx"), "{err}");
}

#[test]
fn warm_instances_serve_many_calls_and_a_failure_does_not_poison_the_pool() {
    let host = PluginHost::load(HostOptions::default(), vec![common::spec("hostile", "strata_hostile")]).unwrap();
    let plugin = host.ingest_plugin("hostile").unwrap();
    let mut out = MetricBatch::new();
    for round in 0..3 {
        for _ in 0..50 {
            plugin
                .parse_into(&common::params(&[("mode", "ok")]), b"", 1, &mut out)
                .unwrap();
            assert_eq!(out.series_count(), 1);
        }
        let err = plugin
            .parse_into(&common::params(&[("mode", "trap")]), b"", 1, &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("trap"), "round {round}: {err}");
    }
    plugin
        .parse_into(&common::params(&[("mode", "ok")]), b"", 1, &mut out)
        .unwrap();
}
