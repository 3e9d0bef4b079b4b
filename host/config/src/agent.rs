//! `[agent]`: the scrape agent (`strata agent`, and scraping inside `strata single`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, HumanDuration};

/// `[agent]`: where the scrape configuration is, where samples go, and the on-disk queue.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// A Prometheus `prometheus.yml` with `global` and `scrape_configs`. Unset: no scraping.
    pub scrape_config_file: Option<PathBuf>,
    /// Remote-write receivers (agent role), each with its own persistent queue.
    pub remote_write_urls: Vec<String>,
    /// Directory of the persistent queues; unset: `<storage.data_path>/agent-queue`.
    pub queue_path: Option<PathBuf>,
    /// Disk budget of each URL's queue; the oldest blocks are dropped beyond it ("0": unlimited).
    pub queue_max_size: ByteSize,
    /// How often the scrape configuration and file_sd files are checked for changes ("0s": never;
    /// SIGHUP and `POST /-/reload` still reload).
    pub config_check_interval: HumanDuration,
    /// Refuse unknown keys in the scrape configuration (false: log and skip them).
    pub strict_parse: bool,
    /// Scrape the node's own `/metrics` with `job="strata"` this often ("0s": off).
    pub self_scrape_interval: HumanDuration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            scrape_config_file: None,
            remote_write_urls: Vec::new(),
            queue_path: None,
            queue_max_size: ByteSize(0),
            config_check_interval: HumanDuration::from_secs(10),
            strict_parse: true,
            self_scrape_interval: HumanDuration::from_secs(0),
        }
    }
}
