//! The `single` role: one process with storage, query, ingestion and UI.
//!
//! Start-up order: open the storage (which locks the data directory, so a second process fails
//! before touching anything), install metrics, bind the listener, serve. Shutdown runs the
//! other way: stop accepting, let in-flight requests finish, close the storage (flushing
//! everything to disk), which releases the lock.

use std::sync::Arc;

use anyhow::Context;
use strata_agent::{ScrapeManager, ScrapeOptions};
use strata_config::{ApplianceConfig, CorruptPartPolicy, Role};
use strata_http::local::{StorageSink, StorageSource};
use strata_http::query_api::QueryApiOptions;
use strata_http::storage_api::StorageApiOptions;
use strata_http::tenant_limits::RateLimitedSink;
use strata_http::{
    BuildInfo, HttpOptions, MetricsHandle, ServerBuilder, admin_api, ingest_api, query_api, storage_api, ui,
};
use strata_ingest::{IngestLimits, SampleSink};
use strata_storage::data::TableOptions;
use strata_storage::index::IndexOptions;
use strata_storage::{Storage, StorageOptions, Tenant};

/// Runs a single node until SIGINT or SIGTERM.
pub fn run(config: ApplianceConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// The engine's options from appliance.toml.
pub fn storage_options(config: &ApplianceConfig) -> StorageOptions {
    let storage = &config.storage;
    let retention = storage.retention_period.get();
    StorageOptions {
        data_path: storage.data_path.clone(),
        table: TableOptions {
            retention,
            inmemory_flush_interval: storage.inmemory_flush_interval.get(),
            dedup_interval_ms: i64::try_from(storage.dedup_min_scrape_interval.get().as_millis()).unwrap_or(i64::MAX),
            on_corrupt_part: match storage.on_corrupt_part {
                CorruptPartPolicy::Fail => strata_storage::data::CorruptPartPolicy::Fail,
                CorruptPartPolicy::Quarantine => strata_storage::data::CorruptPartPolicy::Quarantine,
            },
            min_free_disk_bytes: storage.min_free_disk_space.bytes(),
            wal: storage.wal,
            wal_sync_interval: storage.wal_sync_interval.get(),
            wal_checkpoint_interval: storage.wal_checkpoint_interval.get(),
            ..TableOptions::default()
        },
        index: IndexOptions {
            retention,
            ..IndexOptions::default()
        },
    }
}

/// Ingestion limits from appliance.toml.
pub fn ingest_limits(config: &ApplianceConfig) -> IngestLimits {
    let ingest = &config.ingest;
    IngestLimits {
        max_decompressed_bytes: usize::try_from(ingest.max_decompressed_size.bytes()).unwrap_or(usize::MAX),
        max_labels_per_series: ingest.max_labels_per_series,
        max_label_name_bytes: ingest.max_label_name_length,
        max_label_value_bytes: ingest.max_label_value_length,
        max_future_ms: i64::try_from(ingest.max_future_offset.get().as_millis()).unwrap_or(i64::MAX),
        // Data that retention would delete at once is refused instead.
        max_age_ms: Some(i64::try_from(config.storage.retention_period.get().as_millis()).unwrap_or(i64::MAX)),
        max_concurrent_requests: config.limits.max_concurrent_ingest,
        max_queue_wait_ms: u64::try_from(config.limits.ingest_queue_wait.get().as_millis()).unwrap_or(u64::MAX),
    }
}

async fn serve(config: ApplianceConfig) -> anyhow::Result<()> {
    // The recorder first: storage start-up (WAL replay, part checks) already counts things,
    // and the storage resolves some metric handles once when it opens.
    let metrics = MetricsHandle::install(&BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        role: Role::Single.name().to_string(),
    });
    let options = storage_options(&config);
    let data_path = options.data_path.clone();
    let storage = tokio::task::spawn_blocking(move || Storage::open(options))
        .await
        .context("storage start-up task failed")?
        .with_context(|| format!("cannot open the storage at {}", data_path.display()))?;
    let storage = Arc::new(storage);
    tracing::info!(
        data_path = %data_path.display(),
        retention = %config.storage.retention_period,
        "storage open"
    );

    let http_options = HttpOptions {
        max_request_body: config.http.max_request_body.bytes(),
        shutdown_timeout: config.http.shutdown_timeout.get(),
    };
    // The single role serves tenant 0:0: its [[limits.tenants]] overrides apply to every query.
    let query_options = crate::security::query_options_for(&config, Tenant::default())?;
    let mut security = crate::security::http_security(&config)?;
    let source = StorageSource::new(Arc::clone(&storage), Tenant::default(), query_options.max_series);
    let max_series = query_options.max_series;
    let addr = config.http.listen_addr_for(Role::Single);
    let listener = strata_http::bind(addr).await?;
    let local = listener.local_addr().context("cannot read the bound address")?;

    // Scraping is on when a prometheus.yml is configured or self-scrape is asked for; samples go
    // straight into local storage.
    let agent = &config.agent;
    let self_scrape = crate::agent_role::self_scrape(&config, Role::Single, local);
    let scraper = if agent.scrape_config_file.is_some() || self_scrape.is_some() {
        let options = ScrapeOptions {
            config_file: agent.scrape_config_file.clone(),
            strict_parse: agent.strict_parse,
            check_interval: agent.config_check_interval.get(),
            self_scrape,
        };
        let sink: Arc<dyn SampleSink> = Arc::new(StorageSink::new(Arc::clone(&storage)));
        let manager = tokio::task::spawn_blocking(move || ScrapeManager::start(options, sink))
            .await
            .context("scrape start-up task failed")?
            .context("cannot load the scrape configuration")?;
        Some(Arc::new(manager))
    } else {
        None
    };

    // WebAssembly plugins: ingest mounts, TCP/UDP listeners, query functions (plugins_wiring.rs).
    let plugin_sink: Arc<dyn SampleSink> = RateLimitedSink::wrap(
        Arc::new(StorageSink::new(Arc::clone(&storage))),
        security.limits.tenants.as_ref(),
    );
    let plugins =
        crate::plugins_wiring::Plugins::start(&config, Arc::clone(&plugin_sink), ingest_limits(&config)).await?;
    security.auth.write_paths.extend(plugins.write_paths());
    security.limits.write_paths.extend(plugins.write_paths());

    let mut builder = ServerBuilder::new(http_options.clone(), metrics)
        .security(security.clone())
        .merge(ingest_api::routes(
            RateLimitedSink::wrap(
                Arc::new(StorageSink::new(Arc::clone(&storage))),
                security.limits.tenants.as_ref(),
            ),
            ingest_limits(&config),
        ))
        .merge(query_api::routes_with_registry(
            Arc::new(source),
            QueryApiOptions { engine: query_options },
            plugins.registry()?,
        ))
        .merge(plugins.routes(plugin_sink, ingest_limits(&config)))
        .merge(storage_api::routes(
            Arc::clone(&storage),
            StorageApiOptions {
                tenant: Tenant::default(),
                max_series,
            },
        ))
        .merge(admin_api::routes(Arc::clone(&storage)))
        .merge(crate::status_config::routes(&config))
        .merge(ui::routes());
    if let Some(manager) = &scraper {
        builder = builder.merge(strata_agent::api::routes(Arc::clone(manager)));
    }
    let router = builder.build();
    let hup = scraper
        .as_ref()
        .map(|m| crate::agent_role::spawn_sighup_reload(Arc::clone(m)));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "strata single node listening on {}://{local}",
        security.scheme()
    );

    let served = strata_http::serve_secure(
        listener,
        router,
        &security,
        http_options.shutdown_timeout,
        crate::shutdown::signal(),
    )
    .await;

    if let Some(hup) = hup {
        hup.abort();
        let _ = hup.await;
    }
    plugins.stop().await;
    if let Some(manager) = scraper {
        tracing::info!("HTTP server stopped; stopping scrapes");
        tokio::task::spawn_blocking(move || manager.shutdown())
            .await
            .context("scrape shutdown task failed")?;
    }
    tracing::info!("flushing storage");
    let closed = tokio::task::spawn_blocking(move || match Arc::try_unwrap(storage) {
        Ok(storage) => storage.close(),
        // A request still holds a reference (it outlived the shutdown timeout): flush what we
        // have; the lock goes with the process.
        Err(shared) => shared.force_flush(),
    })
    .await
    .context("storage shutdown task failed")?;
    served.context("HTTP server failed")?;
    closed.context("cannot flush the storage")?;
    tracing::info!("shutdown complete");
    Ok(())
}
