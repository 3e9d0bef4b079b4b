//! Finding the plugin components `scripts/build-plugins` builds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use strata_plugin_host::{CallLimits, PluginKind, PluginSpec};

/// `plugins/dist/<name>.wasm`, or a panic that says how to build it.
pub fn component(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("plugins/dist").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does) to build the plugin components",
        path.display()
    );
    path
}

/// An ingestion spec with tight limits so hostile calls end quickly.
pub fn spec(name: &str, file: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path: component(file),
        kind: PluginKind::Ingest,
        config: BTreeMap::new(),
        http_paths: None,
        limits: CallLimits {
            max_memory_bytes: 64 << 20,
            timeout: Duration::from_millis(300),
        },
    }
}

/// Query parameters. (Not every test binary that includes this module uses it.)
#[allow(dead_code)]
pub fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
