//! What both plugin-host benches share: where the built components are.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use strata_plugin_host::{CallLimits, PluginKind, PluginSpec};

/// An ingestion plugin from `plugins/dist` (or `$STRATA_PLUGIN_DIST`, to compare other builds
/// of the components with one host binary), with generous limits.
pub fn spec(name: &str, file: &str) -> PluginSpec {
    let dist = std::env::var_os("STRATA_PLUGIN_DIST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"),
        PathBuf::from,
    );
    let path = dist.join(format!("{file}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    PluginSpec {
        name: name.into(),
        path,
        kind: PluginKind::Ingest,
        config: BTreeMap::new(),
        http_paths: None,
        limits: CallLimits {
            max_memory_bytes: 512 << 20,
            timeout: Duration::from_secs(10),
        },
    }
}
