//! The `agent` role: scrape the targets of a prometheus.yml and remote-write the samples
//! through a persistent queue per URL (DESIGN.md §2, HTTP 8429).
//!
//! Start-up: open the queues (each locked, so a second agent on the same directory fails
//! first), start the senders, load the scrape configuration (an invalid one stops start-up),
//! serve `/health`, `/metrics`, `/api/v1/targets`, `/targets`, `POST /-/reload`. SIGHUP reloads.
//! Shutdown: stop serving, stop the scrape loops, stop the senders (unsent blocks stay on disk
//! and go out after the next start).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use strata_agent::{Protocol, RemoteWriteOptions, RemoteWriter, ScrapeManager, ScrapeOptions, SelfScrape};
use strata_config::agent::RemoteWriteProtocol;
use strata_config::auth::AccessRole;
use strata_config::{ApplianceConfig, Role};
use strata_http::{BuildInfo, HttpOptions, MetricsHandle, ServerBuilder};

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(config: ApplianceConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ApplianceConfig) -> anyhow::Result<()> {
    let agent = &config.agent;
    let scrape_file = agent
        .scrape_config_file
        .clone()
        .context("agent.scrape_config_file is not set: the agent needs a prometheus.yml to scrape")?;
    anyhow::ensure!(
        !agent.remote_write_urls.is_empty(),
        "agent.remote_write_urls is empty: the agent needs at least one URL to send samples to"
    );
    let metrics = MetricsHandle::install(&BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        role: Role::Agent.name().to_string(),
    });
    let queue_path = agent
        .queue_path
        .clone()
        .unwrap_or_else(|| config.storage.data_path.join("agent-queue"));
    let rw_options = RemoteWriteOptions {
        urls: agent.remote_write_urls.clone(),
        queue_path: queue_path.clone(),
        max_disk_bytes_per_url: agent.queue_max_size.bytes(),
        protocol: match agent.remote_write_protocol {
            RemoteWriteProtocol::Auto => Protocol::Auto,
            RemoteWriteProtocol::V1 => Protocol::V1,
            RemoteWriteProtocol::V2 => Protocol::V2,
        },
        ..RemoteWriteOptions::default()
    };
    let writer = tokio::task::spawn_blocking(move || RemoteWriter::start(rw_options))
        .await
        .context("queue start-up task failed")?
        .with_context(|| format!("cannot open the remote-write queues in {}", queue_path.display()))?;
    let writer = Arc::new(writer);
    tracing::info!(urls = agent.remote_write_urls.len(), queue = %queue_path.display(), "remote write started");

    let http_options = HttpOptions {
        max_request_body: config.http.max_request_body.bytes(),
        shutdown_timeout: config.http.shutdown_timeout.get(),
    };
    let addr = config.http.listen_addr_for(Role::Agent);
    let listener = strata_http::bind(addr).await?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    let scrape_options = ScrapeOptions {
        config_file: Some(scrape_file.clone()),
        strict_parse: agent.strict_parse,
        check_interval: agent.config_check_interval.get(),
        self_scrape: self_scrape(&config, Role::Agent, local),
    };
    let sink = Arc::clone(&writer) as Arc<dyn strata_ingest::SampleSink>;
    let manager = tokio::task::spawn_blocking(move || ScrapeManager::start(scrape_options, sink))
        .await
        .context("scrape start-up task failed")?
        .with_context(|| format!("cannot load the scrape configuration {}", scrape_file.display()))?;
    let manager = Arc::new(manager);

    let security = crate::security::http_security(&config)?;
    let router = ServerBuilder::new(http_options.clone(), metrics)
        .security(security.clone())
        .merge(strata_agent::api::routes(Arc::clone(&manager)))
        .merge(crate::status_config::routes(&config))
        .build();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "strata agent listening on {}://{local}",
        security.scheme()
    );

    let hup = spawn_sighup_reload(Arc::clone(&manager));

    let served = strata_http::serve_secure(
        listener,
        router,
        &security,
        http_options.shutdown_timeout,
        crate::shutdown::signal(),
    )
    .await;
    hup.abort();
    // Wait for the task to go, so its reference to the manager (and the queues) is dropped.
    let _ = hup.await;
    tracing::info!("HTTP server stopped; stopping scrapes and senders");
    tokio::task::spawn_blocking(move || {
        manager.shutdown();
        drop(manager);
        match Arc::try_unwrap(writer) {
            Ok(writer) => writer.shutdown(),
            // A request still holds the manager (and so the sink): the queues flush on drop.
            Err(_) => tracing::warn!("remote writer still referenced at shutdown"),
        }
    })
    .await
    .context("shutdown task failed")?;
    served.context("HTTP server failed")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The self-scrape job of `role` for a node listening on `local`, or `None` when it is off
/// (`agent.self_scrape_interval_for`). It follows the node's own HTTP settings: `https` when the
/// listener serves TLS, and a `read` token when `/metrics` is protected.
pub(crate) fn self_scrape(config: &ApplianceConfig, role: Role, local: SocketAddr) -> Option<SelfScrape> {
    let interval = config.agent.self_scrape_interval_for(role);
    if interval.is_zero() {
        return None;
    }
    let bearer_token = if config.auth.enabled() && config.auth.protect_metrics {
        let token = config
            .auth
            .tokens
            .iter()
            .find(|t| t.roles.contains(&AccessRole::Read))
            .map(|t| t.token.clone());
        if token.is_none() {
            tracing::warn!("/metrics needs a read token and none is configured: the self-scrape will be refused");
        }
        token
    } else {
        None
    };
    Some(SelfScrape {
        address: local.to_string(),
        interval,
        https: config.http.tls_cert_file.is_some(),
        bearer_token,
    })
}

/// Reloads the scrape configuration on every SIGHUP until aborted. A broken new file is logged
/// and the previous configuration keeps running.
pub(crate) fn spawn_sighup_reload(manager: Arc<ScrapeManager>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the scrape configuration");
            let manager = Arc::clone(&manager);
            match tokio::task::spawn_blocking(move || manager.reload()).await {
                Ok(Ok(summary)) => tracing::info!(targets = summary.targets, "scrape configuration reloaded"),
                Ok(Err(err)) => tracing::error!("keeping the previous scrape configuration: {err}"),
                Err(err) => tracing::error!("reload task failed: {err}"),
            }
        }
    })
}
