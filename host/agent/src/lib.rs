//! The agent: scraping Prometheus targets and remote-writing through an on-disk queue
//! (DESIGN.md §2, FORMATS.md §6).
//!
//! - [`config`]: the `prometheus.yml` scrape configuration (strict or lenient).
//! - [`relabel`]: Prometheus relabeling.

pub mod config;
pub mod discovery;
pub mod duration;
pub mod manager;
pub mod queue;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
