//! The cluster roles (DESIGN.md §2): `storage` owns data and serves insert and select RPC,
//! `insert` shards writes over storage nodes, `select` fans queries out to them.

use std::sync::Arc;

use anyhow::Context;
use strata_cluster::client::ClientOptions;
use strata_cluster::insert::{ClusterSink, InsertOptions};
use strata_cluster::proto::Service;
use strata_cluster::select::SelectCluster;
use strata_cluster::select_http::{self, SelectApiOptions};
use strata_cluster::server;
use strata_cluster::tenants::TenantRegistry;
use strata_cluster::tls::{self, ClientTls};
use strata_config::{ApplianceConfig, Role};
use strata_http::storage_api::StorageApiOptions;
use strata_http::tenant_limits::RateLimitedSink;
use strata_http::{BuildInfo, HttpOptions, MetricsHandle, ServerBuilder, admin_api, ingest_api, storage_api};
use strata_storage::{Storage, Tenant};

/// Runs `role` (storage, insert or select) until SIGINT or SIGTERM.
pub fn run(role: Role, config: ApplianceConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match role {
            Role::Storage => storage(config).await,
            Role::Insert => insert(config).await,
            _ => select(config).await,
        }
    })
}

fn http_options(config: &ApplianceConfig) -> HttpOptions {
    HttpOptions {
        max_request_body: config.http.max_request_body.bytes(),
        shutdown_timeout: config.http.shutdown_timeout.get(),
    }
}

fn metrics(role: Role) -> MetricsHandle {
    MetricsHandle::install(&BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        role: role.name().to_string(),
    })
}

async fn serve_http(config: &ApplianceConfig, role: Role, builder: ServerBuilder) -> anyhow::Result<()> {
    serve_http_with(config, role, builder, crate::security::http_security(config)?).await
}

/// [`serve_http`] with security settings made earlier (the insert role shares its per-tenant
/// ingestion buckets between the HTTP layer and its sink).
async fn serve_http_with(
    config: &ApplianceConfig,
    role: Role,
    builder: ServerBuilder,
    security: strata_http::Security,
) -> anyhow::Result<()> {
    let router = builder.security(security.clone()).build();
    let addr = config.http.listen_addr_for(role);
    let listener = strata_http::bind(addr).await?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "strata {role} listening on {}://{local}",
        security.scheme()
    );
    strata_http::serve_secure(
        listener,
        router,
        &security,
        config.http.shutdown_timeout.get(),
        crate::shutdown::signal(),
    )
    .await
    .context("HTTP server failed")
}

/// The client side of cluster TLS (insert and select), when `cluster.tls_ca_file` is set.
fn client_options(config: &ApplianceConfig) -> anyhow::Result<ClientOptions> {
    let c = &config.cluster;
    let tls = match &c.tls_ca_file {
        None => None,
        Some(ca) => {
            let cert = c.tls_cert_file.as_deref().zip(c.tls_key_file.as_deref());
            Some(ClientTls::new(ca, cert, c.tls_server_name.clone()).context("cannot set up cluster TLS")?)
        }
    };
    Ok(ClientOptions {
        tls,
        ..ClientOptions::default()
    })
}

fn storage_nodes(config: &ApplianceConfig, default_port: u16) -> anyhow::Result<Vec<String>> {
    let nodes = config.cluster.storage_node_addrs(default_port);
    if nodes.is_empty() {
        anyhow::bail!("no storage nodes: pass --storage-node host:port,... or set cluster.storage_nodes");
    }
    Ok(nodes)
}

async fn storage(config: ApplianceConfig) -> anyhow::Result<()> {
    // The recorder before the storage opens (start-up counts; handles resolved at open).
    let metrics = metrics(Role::Storage);
    let options = crate::single::storage_options(&config);
    let data_path = options.data_path.clone();
    let storage = tokio::task::spawn_blocking(move || Storage::open(options))
        .await
        .context("storage start-up task failed")?
        .with_context(|| format!("cannot open the storage at {}", data_path.display()))?;
    let storage = Arc::new(storage);
    tracing::info!(data_path = %data_path.display(), "storage open");

    let insert_addr = config.cluster.insert_listen_addr;
    let select_addr = config.cluster.select_listen_addr;
    let insert_listener = tokio::net::TcpListener::bind(insert_addr)
        .await
        .with_context(|| format!("cannot listen for insert RPC on {insert_addr}"))?;
    let select_listener = tokio::net::TcpListener::bind(select_addr)
        .await
        .with_context(|| format!("cannot listen for select RPC on {select_addr}"))?;
    let tenants = Arc::new(
        TenantRegistry::open(&data_path)
            .with_context(|| format!("cannot read the tenant list in {}", data_path.display()))?,
    );
    let tls = match (&config.cluster.tls_cert_file, &config.cluster.tls_key_file) {
        (Some(cert), Some(key)) => {
            let mutual = config.cluster.tls_ca_file.as_deref();
            tracing::info!(mutual = mutual.is_some(), "cluster RPC over TLS");
            Some(tls::server_config(cert, key, mutual).context("cannot set up cluster TLS")?)
        }
        _ => None,
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    for (listener, service, handler) in [
        (
            insert_listener,
            Service::Insert,
            server::insert_handler(Arc::clone(&storage), Arc::clone(&tenants)),
        ),
        (
            select_listener,
            Service::Select,
            server::select_handler(Arc::clone(&storage), Arc::clone(&tenants)),
        ),
    ] {
        let stop = Arc::clone(&stop);
        let tls = tls.clone();
        tracing::info!(service = service.name(), addr = %listener.local_addr()?, "RPC listening");
        tokio::spawn(async move {
            server::serve_tls(listener, service, handler, tls, async move { stop.notified().await }).await;
        });
    }

    let router = ServerBuilder::new(http_options(&config), metrics)
        .merge(storage_api::routes(
            Arc::clone(&storage),
            StorageApiOptions {
                tenant: Tenant::default(),
                max_series: crate::security::query_options(&config).max_series,
            },
        ))
        .merge(admin_api::routes(Arc::clone(&storage)));
    let served = serve_http(&config, Role::Storage, router).await;
    stop.notify_waiters();

    tracing::info!("HTTP server stopped; flushing storage");
    let closed = tokio::task::spawn_blocking(move || match Arc::try_unwrap(storage) {
        Ok(storage) => storage.close(),
        // RPC connections still hold a reference: flush what we have; the lock goes with the
        // process.
        Err(shared) => shared.force_flush(),
    })
    .await
    .context("storage shutdown task failed")?;
    served?;
    closed.context("cannot flush the storage")?;
    Ok(())
}

async fn insert(config: ApplianceConfig) -> anyhow::Result<()> {
    let nodes = storage_nodes(&config, 8400)?;
    tracing::info!(
        ?nodes,
        replication_factor = config.cluster.replication_factor,
        "insert role"
    );
    let sink = Arc::new(ClusterSink::new(
        &nodes,
        InsertOptions {
            replication_factor: config.cluster.replication_factor,
            buffer_bytes: usize::try_from(config.cluster.insert_buffer_size.bytes()).unwrap_or(usize::MAX),
            slow_after: config.cluster.slow_node_timeout.get(),
            reroute: !config.cluster.disable_rerouting,
            client: ClientOptions {
                io_timeout: InsertOptions::default().client.io_timeout,
                ..client_options(&config)?
            },
            ..InsertOptions::default()
        },
    ));
    let limits = crate::single::ingest_limits(&config);
    let security = crate::security::http_security(&config)?;
    // [[limits.tenants]] ingestion rates: admitted per request by the HTTP layer, charged here
    // per stored batch, for the tenant of the /insert/<tenant>/ path.
    let limited = RateLimitedSink::wrap(
        Arc::clone(&sink) as Arc<dyn strata_ingest::SampleSink>,
        security.limits.tenants.as_ref(),
    );
    // Plugin ingestion protocols under /insert/<tenant>/<plugin>/..., plus the plugin admin API.
    let (plugin_routes, plugins) =
        crate::plugins_wiring::insert_routes(&config, Arc::clone(&limited), limits.clone()).await?;
    let router = ServerBuilder::new(http_options(&config), metrics(Role::Insert))
        .merge(ingest_api::insert_routes(limited, limits))
        .merge(plugin_routes);
    let served = serve_http_with(&config, Role::Insert, router, security).await;
    plugins.stop().await;
    // Writes were answered once buffered: send what is still buffered before exiting.
    let timeout = config.http.shutdown_timeout.get();
    let drained = tokio::task::spawn_blocking(move || sink.flush(timeout))
        .await
        .unwrap_or(false);
    if !drained {
        tracing::warn!("storage nodes did not take every buffered row before shutdown; the rest is lost");
    }
    served
}

async fn select(config: ApplianceConfig) -> anyhow::Result<()> {
    let nodes = storage_nodes(&config, 8401)?;
    tracing::info!(
        ?nodes,
        replication_factor = config.cluster.replication_factor,
        "select role"
    );
    let query = crate::security::query_options(&config);
    let cluster = Arc::new(SelectCluster::new(
        &nodes,
        config.cluster.replication_factor,
        query.max_series,
        client_options(&config)?,
    ));
    let router = ServerBuilder::new(http_options(&config), metrics(Role::Select))
        .merge(select_http::routes(
            cluster,
            SelectApiOptions {
                query: strata_http::query_api::QueryApiOptions { engine: query },
                deny_partial_response: config.cluster.deny_partial_response,
                tenant_limits: crate::security::tenant_limits(&config)?,
            },
        ))
        // The web UI at /, reading tenant 0:0 through the /api/v1/... paths select serves.
        .merge(strata_http::ui::routes());
    serve_http(&config, Role::Select, router).await
}
