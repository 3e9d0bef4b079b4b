//! Structured logs with `tracing`, to stderr, as text or JSON.

use strata_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `STRATA_LOG` (an `EnvFilter` directive such as
/// `info,strata_storage=debug`) refines the configured level for debugging.
pub fn init(config: &LogConfig) {
    let filter = std::env::var("STRATA_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new(config.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(err) = installed {
        eprintln!("strata: cannot install the logger: {err}");
    }
}
