//! The `single` role: one process with storage, query, ingestion and UI.
//!
//! Start-up order: lock the data directory (so a second process fails before touching
//! anything), install metrics, bind the listener, serve. Shutdown runs the other way: stop
//! accepting, let in-flight requests finish, flush components, release the lock.

use anyhow::Context;
use strata_config::{ApplianceConfig, Role};
use strata_fsutil::DirLock;
use strata_http::{BuildInfo, HttpOptions, MetricsHandle, ServerBuilder};

/// Runs a single node until SIGINT or SIGTERM.
pub fn run(config: ApplianceConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ApplianceConfig) -> anyhow::Result<()> {
    let data_path = &config.storage.data_path;
    let lock = DirLock::acquire(data_path)?;
    tracing::info!(
        data_path = %data_path.display(),
        retention = %config.storage.retention_period,
        "data directory locked"
    );

    let metrics = MetricsHandle::install(&BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        role: Role::Single.name().to_string(),
    });
    let options = HttpOptions {
        max_request_body: config.http.max_request_body.bytes(),
        shutdown_timeout: config.http.shutdown_timeout.get(),
    };
    let router = ServerBuilder::new(options.clone(), metrics).build();

    let addr = config.http.listen_addr_for(Role::Single);
    let listener = strata_http::bind(addr).await?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "strata single node listening on http://{local}"
    );

    strata_http::serve(listener, router, options.shutdown_timeout, crate::shutdown::signal())
        .await
        .context("HTTP server failed")?;

    // Components flush here, in reverse start-up order, before the lock is released.
    tracing::info!("HTTP server stopped; flushing");
    drop(lock);
    tracing::info!("shutdown complete");
    Ok(())
}
