//! `[[plugins]]`: WebAssembly plugins to load (DESIGN.md §4, docs/plugins.md).
//!
//! ```toml
//! [[plugins]]
//! name = "influx"
//! path = "plugins/dist/strata_influx.wasm"
//! kind = "ingest"
//! http_paths = ["/write", "/api/v2/write"]   # optional: the plugin's own defaults otherwise
//! max_memory = "256MiB"                      # per call
//! timeout = "5s"                             # per call
//! config = { measurement_field_separator = "_" }
//! tcp_listen_addr = "127.0.0.1:8089"         # optional: line-framed stream over TCP
//! udp_listen_addr = "127.0.0.1:8089"         # optional: one datagram = whole lines
//! ```
//!
//! A relative `path` is relative to the directory of the config file that names it
//! ([`resolve_relative_paths`]), so `strata --config /etc/strata/appliance.toml` finds
//! plugins beside it whatever the working directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ByteSize, HumanDuration};

/// What a plugin provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKindConfig {
    /// An ingestion protocol (WIT world `ingest-protocol`).
    Ingest,
    /// Query functions (WIT world `query-function`).
    Function,
}

/// One `[[plugins]]` entry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name, used in errors, metrics and `GET /api/v1/plugins`.
    pub name: String,
    /// The component file; a relative path is relative to the config file's directory (the
    /// working directory when there is no config file).
    pub path: PathBuf,
    /// `ingest` or `function`.
    pub kind: PluginKindConfig,
    /// The plugin's own settings, handed to it by the `config` host import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// HTTP paths to mount instead of the ones the plugin describes.
    #[serde(default)]
    pub http_paths: Option<Vec<String>>,
    /// Linear memory one call may use.
    #[serde(default = "default_max_memory")]
    pub max_memory: ByteSize,
    /// Wall-clock budget of one call.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Where to accept line-framed TCP streams (e.g. Graphite `:2003`); the plugin must
    /// describe itself as line-framed.
    #[serde(default)]
    pub tcp_listen_addr: Option<String>,
    /// Where to accept UDP datagrams of whole lines (e.g. Influx `:8089`).
    #[serde(default)]
    pub udp_listen_addr: Option<String>,
}

/// Makes every relative plugin `path` relative to `config_dir` (the directory of the config
/// file), leaving absolute paths alone.
pub fn resolve_relative_paths(plugins: &mut [PluginConfig], config_dir: &Path) {
    for p in plugins {
        if p.path.is_relative() {
            p.path = config_dir.join(&p.path);
        }
    }
}

fn default_max_memory() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        plugins: Vec<PluginConfig>,
    }

    #[test]
    fn parses_with_defaults_and_refuses_unknown_keys() {
        let doc: Doc = toml::from_str(
            "[[plugins]]\nname = \"influx\"\npath = \"a.wasm\"\nkind = \"ingest\"\nconfig = { skip_single_field = \"true\" }\n",
        )
        .unwrap();
        let p = &doc.plugins[0];
        assert_eq!(p.kind, PluginKindConfig::Ingest);
        assert_eq!(p.max_memory, ByteSize(256 << 20));
        assert_eq!(p.timeout.0, std::time::Duration::from_secs(5));
        assert_eq!(p.config["skip_single_field"], "true");
        assert!(p.http_paths.is_none());
        let err =
            toml::from_str::<Doc>("[[plugins]]\nname = \"x\"\npath = \"a\"\nkind = \"ingest\"\ntimeuot = \"1s\"\n")
                .err()
                .unwrap();
        assert!(err.to_string().contains("timeuot"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let doc: Doc = toml::from_str(
            "[[plugins]]\nname = \"a\"\npath = \"dist/a.wasm\"\nkind = \"ingest\"\ntcp_listen_addr = \"127.0.0.1:2003\"\n\n[[plugins]]\nname = \"b\"\npath = \"/abs/b.wasm\"\nkind = \"function\"\n",
        )
        .unwrap();
        let mut plugins = doc.plugins;
        resolve_relative_paths(&mut plugins, Path::new("/etc/strata"));
        assert_eq!(plugins[0].path, PathBuf::from("/etc/strata/dist/a.wasm"));
        assert_eq!(plugins[0].tcp_listen_addr.as_deref(), Some("127.0.0.1:2003"));
        assert_eq!(plugins[1].path, PathBuf::from("/abs/b.wasm"));
    }
}
