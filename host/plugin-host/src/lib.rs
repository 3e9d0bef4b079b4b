//! The WebAssembly plugin host (DESIGN.md §4): the only crate that depends on wasmtime, so that
//! edits elsewhere never rebuild it.
//!
//! - [`PluginHost`] loads the components listed in the config (`[[plugins]]`), checks that they
//!   implement a compatible `strata:plugin` version, compiles them once (cached on disk by
//!   content hash and engine), and swaps a plugin atomically on reload.
//! - Calls run in warm instances (a small pool per plugin; a new one from a pre-linked
//!   `InstancePre` costs ~12 µs; one that failed or grew past 16 MiB is dropped), bounded in memory
//!   (a store limiter that traps on a refused grow) and time (epoch interruption, a 10 ms
//!   ticker, per-call deadline). A trap, timeout or memory overrun fails that request with the
//!   plugin's name and reason and bumps a counter; the next request is unaffected.
//! - Plugins get no WASI: the only imports granted are `strata:plugin/host` (log, time, own
//!   config). Rust's wasip2 std imports WASI anyway; those imports are linked as traps.
//! - [`routes::ingest_routes`] mounts ingestion plugins on HTTP; [`routes::admin_routes`] serves
//!   `GET /api/v1/plugins` and `POST /api/v1/plugins/reload`.
//!
//! Metrics: `strata_plugin_failures_total{plugin,reason}` (reason: `timeout`, `out_of_memory`,
//! `trap`, `invalid_output`), `strata_plugin_loads_total{plugin,result}`.

pub mod error;
pub mod function;
pub mod ingest;
pub mod lines;
pub mod routes;
pub mod runtime;
pub mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;
use sha2::Digest;

pub use error::{CallFailure, PluginError};
pub use function::{FunctionPlugin, FunctionSig};
pub use ingest::{IngestInfo, IngestPlugin, PACKAGE_VERSION};
pub use lines::{ListenerStats, ListenerStatus};
pub use runtime::{CallLimits, Runtime};
pub use session::StreamSession;

/// What a plugin provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// An ingestion protocol (world `ingest-protocol`).
    Ingest,
    /// Query functions (world `query-function`).
    Function,
}

/// One plugin to load: the plain-options form of appliance.toml's `[[plugins]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSpec {
    /// Unique name; used in errors, metrics and the listing.
    pub name: String,
    /// The component file (`.wasm`).
    pub path: PathBuf,
    /// What it provides.
    pub kind: PluginKind,
    /// The plugin's own config map, returned by the `config` host import.
    pub config: BTreeMap<String, String>,
    /// HTTP paths to mount instead of the plugin's defaults (`None`: its defaults).
    pub http_paths: Option<Vec<String>>,
    /// Memory and time bounds per call.
    pub limits: CallLimits,
}

/// Host-wide options.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Where compiled components are cached (e.g. `<data>/plugin-cache`); `None` disables the
    /// cache and every load compiles (80–150 ms per plugin).
    pub cache_dir: Option<PathBuf>,
}

/// A loaded plugin of either kind.
#[derive(Clone)]
enum Plugin {
    Ingest(Arc<IngestPlugin>),
    Function(Arc<FunctionPlugin>),
}

struct Loaded {
    spec: PluginSpec,
    plugin: Plugin,
    loaded_at_ms: i64,
    from_cache: bool,
    /// SHA-256 of the component file this version was loaded from.
    content_hash: [u8; 32],
}

/// A plugin as listed by `GET /api/v1/plugins`.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    /// Name from the config.
    pub name: String,
    /// Kind.
    pub kind: PluginKind,
    /// The component file.
    pub path: String,
    /// What an ingestion plugin said about itself (`None` for query functions).
    pub info: Option<IngestInfo>,
    /// The functions a query-function plugin provides.
    pub functions: Vec<FunctionSig>,
    /// HTTP paths it is mounted on.
    pub http_paths: Vec<String>,
    /// When the current version was loaded (ms since the epoch).
    pub loaded_at_ms: i64,
    /// Whether the compiled form came from the on-disk cache.
    pub from_cache: bool,
    /// Calls made.
    pub calls: u64,
    /// Calls the plugin refused as bad input.
    pub parse_errors: u64,
    /// Calls that failed by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// The TCP/UDP listeners feeding it (line-framed ingestion plugins only).
    pub listeners: Vec<ListenerStatus>,
}

/// A registered listener: plugin name, protocol, bound address and counters.
type ListenerEntry = (String, &'static str, String, Arc<ListenerStats>);

/// The loaded plugins. Share it as `Arc<PluginHost>`.
pub struct PluginHost {
    runtime: Runtime,
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    /// Serialises loads and reloads so two reloads never race to swap the same plugin.
    loading: Mutex<()>,
    /// Content hashes of files that failed to load, per plugin, so that polling for changes
    /// does not retry (and log) the same broken file every time.
    refused: Mutex<BTreeMap<String, [u8; 32]>>,
    /// TCP/UDP listeners, registered by [`lines`] when they start; they outlive reloads.
    listeners: Mutex<Vec<ListenerEntry>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with no plugins.
    pub fn new(options: HostOptions) -> Result<Self, PluginError> {
        Ok(Self {
            runtime: Runtime::new(options.cache_dir)?,
            plugins: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(()),
            refused: Mutex::new(BTreeMap::new()),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// A host with every plugin of `specs` loaded; any failure is an error naming the plugin
    /// (startup refuses a broken config rather than running without a configured protocol).
    pub fn load(options: HostOptions, specs: Vec<PluginSpec>) -> Result<Self, PluginError> {
        let host = Self::new(options)?;
        for spec in specs {
            if host.plugins.read().is_ok_and(|p| p.contains_key(&spec.name)) {
                return Err(PluginError::Config {
                    name: spec.name,
                    message: "the name is used twice".into(),
                });
            }
            host.add(spec)?;
        }
        Ok(host)
    }

    /// Loads `spec`, replacing a loaded plugin of the same name atomically: calls in flight
    /// finish on the old version, later calls use the new one. On error the old one stays.
    pub fn add(&self, spec: PluginSpec) -> Result<(), PluginError> {
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let result = self.compile(&spec);
        let result_label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("strata_plugin_loads_total", "plugin" => spec.name.clone(), "result" => result_label)
            .increment(1);
        let (plugin, from_cache, content_hash) = match result {
            Ok(r) => r,
            Err((e, Some(hash))) => {
                self.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(spec.name.clone(), hash);
                return Err(e);
            }
            Err((e, None)) => return Err(e),
        };
        let paths = match &plugin {
            Plugin::Ingest(p) => spec.http_paths.clone().unwrap_or_else(|| p.info().http_paths.clone()),
            Plugin::Function(_) => Vec::new(),
        };
        {
            let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
            for (other, loaded) in plugins.iter().filter(|(n, _)| **n != spec.name) {
                if let Some(p) = loaded.http_paths().into_iter().find(|p| paths.contains(p)) {
                    return Err(PluginError::Config {
                        name: spec.name.clone(),
                        message: format!("HTTP path {p} is already mounted by plugin {other}"),
                    });
                }
            }
        }
        tracing::info!(
            plugin = %spec.name,
            from_cache,
            ms = started.elapsed().as_millis() as u64,
            "plugin loaded"
        );
        let loaded = Arc::new(Loaded {
            spec: spec.clone(),
            plugin,
            loaded_at_ms: strata_ingest::limits::now_ms(),
            from_cache,
            content_hash,
        });
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&spec.name);
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.name, loaded);
        Ok(())
    }

    /// Compiles the plugin's file. Errors carry the file's hash when it could be read.
    #[allow(clippy::type_complexity)]
    fn compile(&self, spec: &PluginSpec) -> Result<(Plugin, bool, [u8; 32]), (PluginError, Option<[u8; 32]>)> {
        let load_err = |message: String| PluginError::Load {
            name: spec.name.clone(),
            path: spec.path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(&spec.path).map_err(|e| (load_err(read_error(&e)), None))?;
        let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        self.compile_bytes(spec, &bytes)
            .map(|(p, c)| (p, c, hash))
            .map_err(|e| (e, Some(hash)))
    }

    fn compile_bytes(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<(Plugin, bool), PluginError> {
        let load_err = |message: String| PluginError::Load {
            name: spec.name.clone(),
            path: spec.path.display().to_string(),
            message,
        };
        let (component, from_cache) = self.runtime.compile(bytes).map_err(load_err)?;
        ingest::check_version(self.runtime.engine(), &component, &spec.name)?;
        let config = spec.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let plugin = match spec.kind {
            PluginKind::Ingest => Plugin::Ingest(Arc::new(
                IngestPlugin::new(&self.runtime, &component, &spec.name, config, spec.limits).map_err(load_err)?,
            )),
            PluginKind::Function => Plugin::Function(Arc::new(
                FunctionPlugin::new(&self.runtime, &component, &spec.name, config, spec.limits).map_err(load_err)?,
            )),
        };
        Ok((plugin, from_cache))
    }

    /// Reloads every plugin from its file. Each result names the plugin; a failed reload
    /// keeps the previous version serving.
    pub fn reload(&self) -> Vec<(String, Result<(), PluginError>)> {
        let specs: Vec<PluginSpec> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|l| l.spec.clone())
            .collect();
        specs
            .into_iter()
            .map(|spec| {
                let name = spec.name.clone();
                let r = self.add(spec);
                if let Err(e) = &r {
                    tracing::error!(plugin = %name, error = %e, "plugin reload refused; the previous version stays");
                }
                (name, r)
            })
            .collect()
    }

    /// Reloads the plugins whose file content changed since they were loaded (a changed
    /// modification time alone, or a file that failed to load before with the same content,
    /// does nothing). Called by a poller; returns what it tried.
    pub fn reload_changed(&self) -> Vec<(String, Result<(), PluginError>)> {
        let candidates: Vec<(PluginSpec, [u8; 32])> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|l| (l.spec.clone(), l.content_hash))
            .collect();
        let mut out = Vec::new();
        for (spec, loaded_hash) in candidates {
            // A file being replaced may be briefly missing or short; the next poll sees it whole.
            let Ok(bytes) = std::fs::read(&spec.path) else { continue };
            let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
            let refused = self
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&spec.name)
                .copied();
            if hash == loaded_hash || refused == Some(hash) {
                continue;
            }
            let name = spec.name.clone();
            let r = self.add(spec);
            match &r {
                Ok(()) => tracing::info!(plugin = %name, "plugin file changed; new version swapped in"),
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "changed plugin refused; the previous version stays")
                }
            }
            out.push((name, r));
        }
        out
    }

    /// The specs of the loaded plugins (for listeners and tests).
    pub fn specs(&self) -> Vec<PluginSpec> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|l| l.spec.clone())
            .collect()
    }

    /// The ingestion plugin called `name`, as loaded right now.
    pub fn ingest_plugin(&self, name: &str) -> Option<Arc<IngestPlugin>> {
        match &self.plugins.read().unwrap_or_else(|p| p.into_inner()).get(name)?.plugin {
            Plugin::Ingest(p) => Some(p.clone()),
            Plugin::Function(_) => None,
        }
    }

    /// The query-function plugin called `name`, as loaded right now.
    pub fn function_plugin(&self, name: &str) -> Option<Arc<FunctionPlugin>> {
        match &self.plugins.read().unwrap_or_else(|p| p.into_inner()).get(name)?.plugin {
            Plugin::Function(p) => Some(p.clone()),
            Plugin::Ingest(_) => None,
        }
    }

    /// Registers the functions of every query-function plugin into the PromQL function table.
    /// A name that clashes with a built-in (or another plugin's function) or a signature the
    /// table cannot take is an error naming the plugin; the other functions still register.
    /// Calls look the plugin up by name each time, so a reload swaps the implementation; a
    /// reload that adds or renames functions needs a restart to re-register them.
    pub fn register_functions(self: &Arc<Self>, registry: &mut strata_query::FunctionRegistry) -> Vec<PluginError> {
        let plugins: Vec<Arc<FunctionPlugin>> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|l| match &l.plugin {
                Plugin::Function(p) => Some(p.clone()),
                Plugin::Ingest(_) => None,
            })
            .collect();
        plugins
            .iter()
            .flat_map(|p| function::register(self, p, registry))
            .collect()
    }

    /// Names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// (plugin name, HTTP path) for every ingestion mount.
    pub fn http_mounts(&self) -> Vec<(String, String)> {
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        plugins
            .iter()
            .flat_map(|(n, l)| l.http_paths().into_iter().map(move |p| (n.clone(), p)))
            .collect()
    }

    /// Registers a TCP/UDP listener of `plugin` so the listing shows it; returns its counters.
    pub fn register_listener(&self, plugin: &str, protocol: &'static str, address: &str) -> Arc<ListenerStats> {
        let stats = Arc::new(ListenerStats::default());
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push((
            plugin.to_string(),
            protocol,
            address.to_string(),
            Arc::clone(&stats),
        ));
        stats
    }

    /// Status of every plugin, for the listing endpoint.
    pub fn list(&self) -> Vec<PluginStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        plugins
            .values()
            .map(|l| {
                let (c, info, functions) = match &l.plugin {
                    Plugin::Ingest(p) => (&p.counters, Some(p.info().clone()), Vec::new()),
                    Plugin::Function(p) => (&p.counters, None, p.functions().to_vec()),
                };
                PluginStatus {
                    name: l.spec.name.clone(),
                    kind: l.spec.kind,
                    path: l.spec.path.display().to_string(),
                    info,
                    functions,
                    http_paths: l.http_paths(),
                    loaded_at_ms: l.loaded_at_ms,
                    from_cache: l.from_cache,
                    calls: c.calls.load(Relaxed),
                    parse_errors: c.parse_errors.load(Relaxed),
                    failures: BTreeMap::from([
                        ("timeout", c.timeouts.load(Relaxed)),
                        ("out_of_memory", c.out_of_memory.load(Relaxed)),
                        ("trap", c.traps.load(Relaxed)),
                        ("invalid_output", c.invalid_output.load(Relaxed)),
                    ]),
                    listeners: listeners
                        .iter()
                        .filter(|(plugin, ..)| *plugin == l.spec.name)
                        .map(|(_, protocol, address, stats)| stats.status(protocol, address))
                        .collect(),
                }
            })
            .collect()
    }
}

/// A read error as an operator can act on it: a missing file says how to build it.
fn read_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "the file does not exist; build the bundled plugins with `scripts/build-plugins` \
         (`scripts/run` builds them and starts Strata), or fix `path` in [[plugins]]"
            .to_string()
    } else {
        e.to_string()
    }
}

impl Loaded {
    fn http_paths(&self) -> Vec<String> {
        match &self.plugin {
            Plugin::Ingest(p) => self
                .spec
                .http_paths
                .clone()
                .unwrap_or_else(|| p.info().http_paths.clone()),
            Plugin::Function(_) => Vec::new(),
        }
    }
}
