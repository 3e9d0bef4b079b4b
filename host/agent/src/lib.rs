//! The agent: scraping Prometheus targets and remote-writing through an on-disk queue
//! (DESIGN.md §2, FORMATS.md §6).
//!
//! - [`config`]: the `prometheus.yml` scrape configuration (strict or lenient), [`relabel`]
//!   for Prometheus relabeling, [`discovery`] for static and file service discovery.
//! - [`scrape`]: one loop per target (auto series, staleness markers, limits).
//! - [`manager::ScrapeManager`]: runs the loops, reloads, reports targets. It writes into any
//!   [`strata_ingest::SampleSink`]: local storage in `single`, [`remote_write::RemoteWriter`]
//!   in `agent`.
//! - [`queue`]: the persistent block queue under the remote-write client.
//! - [`api`]: `/api/v1/targets`, `/targets`, `POST /-/reload`.
//! - [`tls`]: the rustls client for `https` targets (`tls_config`) and remote-write URLs.

pub mod api;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod manager;
pub mod queue;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod tls;

pub use manager::{ScrapeManager, ScrapeOptions, SelfScrape, TargetsSnapshot};
pub use remote_write::{Protocol, RemoteWriteOptions, RemoteWriter};
