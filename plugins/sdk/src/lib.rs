//! The guest-side SDK for Strata plugins (`wit/`, package `strata:plugin@0.1.0`).
//!
//! An ingestion plugin implements [`IngestPlugin`] (its docs hold a complete example) and
//! exports it with one line, `strata_plugin_sdk::export_ingest!(MyPlugin);`.
//! docs/plugins.md walks from `cargo new` to a loaded plugin.
//!
//! Enable the crate feature `ingest`, or `function` for query functions ([`FunctionPlugin`],
//! exported with `export_functions!`).
//! Everything here also compiles for the host target, so parsers are unit-tested natively with
//! plain `cargo test`.
//! [`scan`] has word-at-a-time scanning and number parsing for parsers: the standard library's
//! versions are markedly slower inside a component.

mod batch;
#[cfg(feature = "function")]
mod function;
#[cfg(feature = "ingest")]
mod ingest;
pub mod scan;

pub use batch::{Batch, BatchBuilder};
#[cfg(feature = "function")]
pub use function::{Argument, FunctionAdapter, FunctionInfo, FunctionPlugin, Value, ValueKind};
#[cfg(feature = "ingest")]
pub use ingest::{IngestAdapter, IngestInfo, IngestPlugin, ParseError};

/// Key/value pairs: request parameters or the plugin's config.
pub type Params = [(String, String)];

/// Returns the value of the first `key` in `params`.
pub fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Generated bindings of the `ingest-protocol` world; used by [`export_ingest!`].
#[cfg(feature = "ingest")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)] // generated ABI glue
pub mod ingest_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "ingest-protocol",
        pub_export_macro: true,
        export_macro_name: "__export_ingest_protocol",
        default_bindings_module: "strata_plugin_sdk::ingest_bindings",
    });
}

/// Generated bindings of the `query-function` world.
#[cfg(feature = "function")]
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)] // generated ABI glue
pub mod function_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "query-function",
        pub_export_macro: true,
        export_macro_name: "__export_query_function",
        default_bindings_module: "strata_plugin_sdk::function_bindings",
    });
}

/// What the host offers every plugin: logging, the time, the plugin's config map.
///
/// On a non-wasm target (unit tests) these fall back to stderr, the system clock and an
/// empty config.
pub mod host {
    /// Severity of a log line.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Level {
        /// Something failed.
        Error,
        /// Something is odd.
        Warn,
        /// Normal operation.
        Info,
        /// Detail for debugging.
        Debug,
        /// Very fine detail.
        Trace,
    }

    #[cfg(all(target_arch = "wasm32", feature = "function", not(feature = "ingest")))]
    use crate::function_bindings::strata::plugin::host as imports;
    #[cfg(all(target_arch = "wasm32", feature = "ingest"))]
    use crate::ingest_bindings::strata::plugin::host as imports;

    /// Writes `message` to the host's log.
    pub fn log(level: Level, message: &str) {
        #[cfg(all(target_arch = "wasm32", any(feature = "ingest", feature = "function")))]
        {
            use imports::LogLevel as L;
            let l = match level {
                Level::Error => L::Error,
                Level::Warn => L::Warn,
                Level::Info => L::Info,
                Level::Debug => L::Debug,
                Level::Trace => L::Trace,
            };
            imports::log(l, message);
        }
        #[cfg(not(all(target_arch = "wasm32", any(feature = "ingest", feature = "function"))))]
        eprintln!("[{level:?}] {message}");
    }

    /// The host's current time in milliseconds since the epoch.
    pub fn now_ms() -> i64 {
        #[cfg(all(target_arch = "wasm32", any(feature = "ingest", feature = "function")))]
        {
            imports::now_ms()
        }
        #[cfg(not(all(target_arch = "wasm32", any(feature = "ingest", feature = "function"))))]
        {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        }
    }

    /// The plugin's `config` map from appliance.toml.
    pub fn config() -> Vec<(String, String)> {
        #[cfg(all(target_arch = "wasm32", any(feature = "ingest", feature = "function")))]
        {
            imports::config()
        }
        #[cfg(not(all(target_arch = "wasm32", any(feature = "ingest", feature = "function"))))]
        {
            Vec::new()
        }
    }
}
