//! `[agent]`: the scrape agent (`strata agent`, and scraping inside `strata single`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, HumanDuration, Role};

/// `agent.remote_write_protocol`: which remote-write version to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum RemoteWriteProtocol {
    /// Try 2.0 first; a receiver that answers 415 (or a 2xx without the 2.0 "written" headers)
    /// gets 1.0 from then on.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Remote-write 1.0 only (`prometheus.WriteRequest`).
    #[serde(rename = "1")]
    V1,
    /// Remote-write 2.0 only (`io.prometheus.write.v2.Request`); a 415 is retried, not downgraded.
    #[serde(rename = "2")]
    V2,
}

impl std::str::FromStr for RemoteWriteProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "1" | "1.0" => Ok(Self::V1),
            "2" | "2.0" => Ok(Self::V2),
            _ => Err(format!("unknown remote-write protocol {s:?}; allowed are auto, 1, 2")),
        }
    }
}

/// The self-scrape interval of a role when `agent.self_scrape_interval` is not set: 10s in
/// `single` (so the UI can chart the appliance itself), off elsewhere.
pub const DEFAULT_SINGLE_SELF_SCRAPE: HumanDuration = HumanDuration::from_secs(10);

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
    /// Scrape the node's own `/metrics` with `job="strata"` this often ("0s": off). Unset: 10s
    /// in `single`, off in `agent` (see [`AgentConfig::self_scrape_interval_for`]).
    pub self_scrape_interval: Option<HumanDuration>,
    /// Remote-write version sent to every URL: `auto` (2.0, falling back to 1.0 per URL),
    /// `1` or `2`.
    pub remote_write_protocol: RemoteWriteProtocol,
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
            self_scrape_interval: None,
            remote_write_protocol: RemoteWriteProtocol::Auto,
        }
    }
}

impl AgentConfig {
    /// The effective self-scrape interval of `role` (zero: off).
    pub fn self_scrape_interval_for(&self, role: Role) -> std::time::Duration {
        match (self.self_scrape_interval, role) {
            (Some(set), _) => set.get(),
            (None, Role::Single) => DEFAULT_SINGLE_SELF_SCRAPE.get(),
            (None, _) => std::time::Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_scrape_defaults_per_role() {
        let mut config = AgentConfig::default();
        assert_eq!(config.self_scrape_interval_for(Role::Single).as_secs(), 10);
        assert!(config.self_scrape_interval_for(Role::Agent).is_zero());
        config.self_scrape_interval = Some(HumanDuration::from_secs(0));
        assert!(config.self_scrape_interval_for(Role::Single).is_zero());
        config.self_scrape_interval = Some(HumanDuration::from_secs(3));
        assert_eq!(config.self_scrape_interval_for(Role::Agent).as_secs(), 3);
    }

    #[test]
    fn protocol_parses_from_toml_and_flags() {
        let config: AgentConfig = toml::from_str("remote_write_protocol = \"2\"\n").unwrap();
        assert_eq!(config.remote_write_protocol, RemoteWriteProtocol::V2);
        assert_eq!("auto".parse::<RemoteWriteProtocol>(), Ok(RemoteWriteProtocol::Auto));
        assert_eq!("1".parse::<RemoteWriteProtocol>(), Ok(RemoteWriteProtocol::V1));
        assert!("3".parse::<RemoteWriteProtocol>().is_err());
        assert!(toml::from_str::<AgentConfig>("remote_write_protocol = \"3\"\n").is_err());
    }
}
