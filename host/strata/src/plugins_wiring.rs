//! WebAssembly plugins in the `single` role (and the insert role's ingest mounts): appliance.toml
//! `[[plugins]]` → [`PluginSpec`]s, the plugin host, its HTTP routes, its TCP/UDP listeners,
//! plugin query functions in the PromQL function table, and reloads (file change, SIGHUP,
//! `POST /api/v1/plugins/reload`).
//!
//! The host lives here and not in strata-http so that only this binary links wasmtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use strata_config::ApplianceConfig;
use strata_config::plugins::{PluginConfig, PluginKindConfig};
use strata_ingest::{IngestLimits, SampleSink};
use strata_plugin_host::{CallLimits, HostOptions, PluginHost, PluginKind, PluginSpec, lines, routes};
use strata_query::FunctionRegistry;
use tokio::task::JoinHandle;

/// How often plugin files are checked for new content.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Paths the built-in APIs own; a plugin mounted on one would shadow (or clash with) them.
const RESERVED_PATHS: &[&str] = &[
    "/api/v1/write",
    "/api/v1/push",
    "/api/v1/import",
    "/api/v1/import/prometheus",
    "/api/v1/export",
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/plugins",
    "/api/v1/plugins/reload",
    "/metrics",
    "/health",
    "/-/reload",
];
const RESERVED_PREFIXES: &[&str] = &[
    "/prometheus/",
    "/insert/",
    "/select/",
    "/internal/",
    "/snapshot/",
    "/ui",
];

/// The `[[plugins]]` entries as the host takes them. `cache_dir` is not part of a spec.
pub fn specs(plugins: &[PluginConfig]) -> Vec<PluginSpec> {
    plugins
        .iter()
        .map(|p| PluginSpec {
            name: p.name.clone(),
            path: p.path.clone(),
            kind: match p.kind {
                PluginKindConfig::Ingest => PluginKind::Ingest,
                PluginKindConfig::Function => PluginKind::Function,
            },
            config: p.config.clone(),
            http_paths: p.http_paths.clone(),
            limits: CallLimits {
                max_memory_bytes: usize::try_from(p.max_memory.bytes()).unwrap_or(usize::MAX),
                timeout: p.timeout.get(),
            },
        })
        .collect()
}

/// The loaded plugins of a node plus the background tasks serving them.
pub struct Plugins {
    host: Option<Arc<PluginHost>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("host", &self.host)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

/// Loads the configured plugins (compiled components cached in `<data_path>/plugin-cache`).
/// `None` when none is configured, so a node without plugins pays nothing.
pub async fn load_host(config: &ApplianceConfig) -> anyhow::Result<Option<Arc<PluginHost>>> {
    if config.plugins.is_empty() {
        return Ok(None);
    }
    let specs = specs(&config.plugins);
    let options = HostOptions {
        cache_dir: Some(config.storage.data_path.join("plugin-cache")),
    };
    let host = tokio::task::spawn_blocking(move || PluginHost::load(options, specs))
        .await
        .context("plugin loading task failed")?
        .context("cannot load the plugins of [[plugins]]")?;
    let host = Arc::new(host);
    check_paths(&host)?;
    Ok(Some(host))
}

fn check_paths(host: &PluginHost) -> anyhow::Result<()> {
    for (plugin, path) in host.http_mounts() {
        if !path.starts_with('/') {
            anyhow::bail!("plugin {plugin}: HTTP path {path:?} must start with '/'");
        }
        if RESERVED_PATHS.contains(&path.as_str()) || RESERVED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            anyhow::bail!("plugin {plugin}: HTTP path {path} belongs to a built-in API; set http_paths");
        }
    }
    Ok(())
}

impl Plugins {
    /// Loads the plugins of `config`, binds their TCP/UDP listeners and starts the reload
    /// tasks (file watcher, SIGHUP). Any failure refuses to start, naming the plugin.
    pub async fn start(
        config: &ApplianceConfig,
        sink: Arc<dyn SampleSink>,
        limits: IngestLimits,
    ) -> anyhow::Result<Self> {
        let Some(host) = load_host(config).await? else {
            return Ok(Self {
                host: None,
                tasks: Vec::new(),
            });
        };
        let mut tasks = Vec::new();
        for p in &config.plugins {
            let streams = p.tcp_listen_addr.is_some() || p.udp_listen_addr.is_some();
            if streams && !host.ingest_plugin(&p.name).is_some_and(|i| i.info().line_framed) {
                anyhow::bail!(
                    "plugin {}: tcp_listen_addr/udp_listen_addr need an ingest plugin that is line-framed",
                    p.name
                );
            }
            if let Some(addr) = &p.tcp_listen_addr {
                let addr = parse_addr(&p.name, addr)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("plugin {}: cannot listen on TCP {addr}", p.name))?;
                tracing::info!(plugin = %p.name, "plugin listening on tcp://{addr}");
                tasks.push(tokio::spawn(lines::serve_tcp(
                    listener,
                    Arc::clone(&host),
                    p.name.clone(),
                    Arc::clone(&sink),
                    limits.clone(),
                )));
            }
            if let Some(addr) = &p.udp_listen_addr {
                let addr = parse_addr(&p.name, addr)?;
                let socket = tokio::net::UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("plugin {}: cannot listen on UDP {addr}", p.name))?;
                tracing::info!(plugin = %p.name, "plugin listening on udp://{addr}");
                tasks.push(tokio::spawn(lines::serve_udp(
                    socket,
                    Arc::clone(&host),
                    p.name.clone(),
                    Arc::clone(&sink),
                    limits.clone(),
                )));
            }
        }
        tasks.push(spawn_file_watch(Arc::clone(&host), WATCH_INTERVAL));
        tasks.push(spawn_sighup_reload(Arc::clone(&host)));
        Ok(Self {
            host: Some(host),
            tasks,
        })
    }

    /// The PromQL function table: the built-ins plus every plugin function. A name that
    /// clashes with a built-in (or another plugin's function) refuses to start.
    pub fn registry(&self) -> anyhow::Result<Arc<FunctionRegistry>> {
        let mut registry = FunctionRegistry::with_builtins();
        if let Some(host) = &self.host {
            let errors = host.register_functions(&mut registry);
            if !errors.is_empty() {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::bail!("cannot register plugin query functions: {}", all.join("; "));
            }
        }
        Ok(Arc::new(registry))
    }

    /// Ingestion mounts plus `GET /api/v1/plugins` and `POST /api/v1/plugins/reload` (the
    /// listing answers an empty list when no plugin is configured).
    pub fn routes(&self, sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Router {
        match &self.host {
            Some(host) => {
                routes::ingest_routes(Arc::clone(host), sink, limits).merge(routes::admin_routes(Arc::clone(host)))
            }
            None => empty_admin_routes(),
        }
    }

    /// The HTTP paths plugins ingest on, so that authentication asks for the `write` role there
    /// whatever the path looks like (a mount such as `/api/v1/import/graphite` or a custom
    /// `http_paths` entry would otherwise be classified by its shape).
    pub fn write_paths(&self) -> Vec<String> {
        self.host
            .as_ref()
            .map(|host| host.http_mounts().into_iter().map(|(_, path)| path).collect())
            .unwrap_or_default()
    }

    /// Stops the listeners and reload tasks.
    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// For the insert role (cluster_roles.rs): loads `config`'s plugins and returns the routes
/// `/insert/{tenant}/{plugin}{path}` (e.g. `/insert/0/influx/write`; mounts under `/api/v1/`
/// also as `/insert/{tenant}/prometheus{path}`) plus the admin API, with the tasks to stop at
/// shutdown. TCP/UDP listeners are a single-node feature and are not started here.
pub async fn insert_routes(
    config: &ApplianceConfig,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
) -> anyhow::Result<(Router, Plugins)> {
    let Some(host) = load_host(config).await? else {
        return Ok((
            empty_admin_routes(),
            Plugins {
                host: None,
                tasks: Vec::new(),
            },
        ));
    };
    let router =
        routes::tenant_ingest_routes(Arc::clone(&host), sink, limits).merge(routes::admin_routes(Arc::clone(&host)));
    let tasks = vec![
        spawn_file_watch(Arc::clone(&host), WATCH_INTERVAL),
        spawn_sighup_reload(Arc::clone(&host)),
    ];
    Ok((
        router,
        Plugins {
            host: Some(host),
            tasks,
        },
    ))
}

fn empty_admin_routes() -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route(
            "/api/v1/plugins",
            get(|| async { axum::Json(serde_json::json!({ "status": "success", "data": [] })) }),
        )
        .route(
            "/api/v1/plugins/reload",
            post(|| async { axum::Json(serde_json::json!({ "status": "success", "data": { "reloaded": [] } })) }),
        )
}

fn parse_addr(plugin: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("plugin {plugin}: listen address {addr:?} is not host:port"))
}

/// Polls the plugin files every `interval` and swaps in those whose content changed; a new
/// version that fails to load is refused and the old one keeps serving.
pub fn spawn_file_watch(host: Arc<PluginHost>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let host = Arc::clone(&host);
            if let Err(e) = tokio::task::spawn_blocking(move || host.reload_changed()).await {
                tracing::error!("plugin watch task failed: {e}");
            }
        }
    })
}

/// Reloads every plugin on SIGHUP (parallel to the scraper's SIGHUP reload).
pub fn spawn_sighup_reload(host: Arc<PluginHost>) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload plugins with POST /api/v1/plugins/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading plugins");
            let host = Arc::clone(&host);
            match tokio::task::spawn_blocking(move || host.reload()).await {
                Ok(results) => {
                    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
                    tracing::info!(reloaded = results.len() - failed, failed, "plugins reloaded");
                }
                Err(e) => tracing::error!("plugin reload task failed: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_carry_limits_and_kinds() {
        let doc = "[[plugins]]\nname = \"g\"\npath = \"/x/g.wasm\"\nkind = \"function\"\nmax_memory = \"64MiB\"\ntimeout = \"2s\"\n";
        let config = ApplianceConfig::from_toml_str(doc, std::path::Path::new("t.toml")).unwrap();
        let specs = specs(&config.plugins);
        assert_eq!(specs[0].kind, PluginKind::Function);
        assert_eq!(specs[0].limits.max_memory_bytes, 64 << 20);
        assert_eq!(specs[0].limits.timeout, Duration::from_secs(2));
    }
}
