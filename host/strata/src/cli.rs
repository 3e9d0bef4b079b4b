//! The command line: `strata [--config FILE] [ROLE] [FLAGS]` and `strata check-config FILE`.
//!
//! Flags are global so that they may stand before or after the role. Each flag overrides one
//! appliance.toml key and wins over it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_config::{ApplianceConfig, HumanDuration, LogFormat, LogLevel, Role};

/// Strata: a monitoring appliance with a VictoriaMetrics-style storage engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file. Without it, ./appliance.toml is used if it exists, else defaults.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Overrides of appliance.toml keys.
    #[command(flatten)]
    pub overrides: Overrides,

    /// What to run; without one, the `role` key of the config decides (default: single).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// All in one: storage, query, ingestion and UI (HTTP 8428).
    Single,
    /// Cluster storage node (HTTP 8482, insert RPC 8400, select RPC 8401).
    Storage,
    /// Cluster insert node: shards writes over storage nodes (HTTP 8480).
    Insert,
    /// Cluster select node: fans queries out to storage nodes (HTTP 8481).
    Select,
    /// Scrape agent with an on-disk remote-write queue (HTTP 8429).
    Agent,
    /// Checks a configuration file and exits 0, or prints what is wrong and exits 2.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

impl Command {
    /// The role this subcommand runs, if it runs one.
    pub fn role(&self) -> Option<Role> {
        match self {
            Command::Single => Some(Role::Single),
            Command::Storage => Some(Role::Storage),
            Command::Insert => Some(Role::Insert),
            Command::Select => Some(Role::Select),
            Command::Agent => Some(Role::Agent),
            Command::CheckConfig { .. } => None,
        }
    }
}

/// Flags that override appliance.toml keys.
#[derive(Debug, Default, Args)]
pub struct Overrides {
    /// storage.data_path: the data directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub storage_data_path: Option<PathBuf>,

    /// http.listen_addr: address of the HTTP API, e.g. 127.0.0.1:8428.
    #[arg(long, global = true, value_name = "ADDR")]
    pub http_listen_addr: Option<SocketAddr>,

    /// storage.retention_period: how long samples are kept, e.g. 31d or 1y.
    #[arg(long, global = true, value_name = "DURATION")]
    pub retention_period: Option<HumanDuration>,

    /// storage.wal: write every sample to a write-ahead log before acknowledging the write.
    #[arg(long, global = true)]
    pub storage_wal: bool,

    /// storage.wal_sync_interval: 0s fsyncs the WAL before every acknowledgement; longer
    /// fsyncs in the background at most this much later (default 100ms).
    #[arg(long, global = true)]
    pub storage_wal_sync_interval: Option<HumanDuration>,

    /// storage.wal_checkpoint_interval: how often the WAL starts a new segment and drops the
    /// flushed ones; a series' labels are logged once per segment (default 60s).
    #[arg(long, global = true)]
    pub storage_wal_checkpoint_interval: Option<HumanDuration>,

    /// log.level: error, warn, info, debug or trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// log.format: text or json.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,

    /// cluster.storage_nodes: storage nodes as host[:port], comma-separated (insert: port 8400,
    /// select: port 8401 by default).
    #[arg(long, global = true, value_name = "ADDRS", value_delimiter = ',')]
    pub storage_node: Vec<String>,

    /// cluster.replication_factor: copies of each series on distinct storage nodes.
    #[arg(long, global = true, value_name = "N")]
    pub replication_factor: Option<usize>,

    /// cluster.deny_partial_response: select answers 503 instead of a partial result.
    #[arg(long, global = true)]
    pub deny_partial_response: bool,

    /// cluster.insert_listen_addr: the storage role's insert RPC address (default 127.0.0.1:8400).
    #[arg(long, global = true, value_name = "ADDR")]
    pub insert_listen_addr: Option<SocketAddr>,

    /// cluster.select_listen_addr: the storage role's select RPC address (default 127.0.0.1:8401).
    #[arg(long, global = true, value_name = "ADDR")]
    pub select_listen_addr: Option<SocketAddr>,

    /// http.tls_cert_file: PEM certificate chain; with --tls-key-file the HTTP listener serves
    /// HTTPS only (reloaded when the file changes).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// http.tls_key_file: PEM private key of --tls-cert-file.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// limits.max_concurrent_queries: queries run at once (0 = twice the CPU count).
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_queries: Option<usize>,

    /// limits.max_concurrent_ingest: ingestion requests processed at once (0 = twice the CPU count).
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_ingest: Option<usize>,

    /// cluster.disable_rerouting: insert keeps a slow or down storage node's share buffered
    /// for it instead of sending it to other nodes.
    #[arg(long, global = true)]
    pub disable_rerouting: bool,

    /// cluster.tls_cert_file: TLS certificate (PEM) of the cluster protocol: storage serves
    /// its RPC ports with it; insert/select present it to storage nodes (mutual TLS).
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster_tls_cert_file: Option<PathBuf>,

    /// cluster.tls_key_file: the private key (PEM) of --cluster-tls-cert-file.
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster_tls_key_file: Option<PathBuf>,

    /// cluster.tls_ca_file: storage requires client certificates from this CA; insert/select
    /// dial storage nodes over TLS, trusting this CA.
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster_tls_ca_file: Option<PathBuf>,

    /// cluster.tls_server_name: insert/select expect this name in storage certificates.
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster_tls_server_name: Option<String>,

    /// agent.scrape_config_file: a Prometheus scrape configuration (prometheus.yml) to scrape;
    /// `single` stores the samples locally, `agent` remote-writes them.
    #[arg(long, global = true, value_name = "FILE")]
    pub promscrape_config: Option<PathBuf>,

    /// agent.remote_write_urls: where the agent sends samples; repeat for several receivers.
    #[arg(long, global = true, value_name = "URL")]
    pub remote_write_url: Vec<String>,

    /// agent.queue_path: directory of the agent's on-disk remote-write queues.
    #[arg(long, global = true, value_name = "DIR")]
    pub remote_write_tmp_data_path: Option<PathBuf>,

    /// agent.remote_write_protocol: auto (2.0 with fallback to 1.0), 1 or 2.
    #[arg(long, global = true, value_name = "VERSION")]
    pub remote_write_protocol: Option<strata_config::agent::RemoteWriteProtocol>,

    /// agent.self_scrape_interval: scrape the node's own /metrics as job="strata" this often
    /// (default 10s in single, off in agent; 0 turns it off).
    #[arg(long, global = true, value_name = "DURATION")]
    pub self_scrape_interval: Option<HumanDuration>,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format {text:?}; allowed are text, json")),
    }
}

impl Overrides {
    /// Writes every given flag over its key.
    pub fn apply(&self, config: &mut ApplianceConfig) {
        self.apply_agent(config);
        if let Some(path) = &self.storage_data_path {
            config.storage.data_path = path.clone();
        }
        if let Some(addr) = self.http_listen_addr {
            config.http.listen_addr = Some(addr);
        }
        if let Some(retention) = self.retention_period {
            config.storage.retention_period = retention;
        }
        if self.storage_wal {
            config.storage.wal = true;
        }
        if let Some(interval) = self.storage_wal_sync_interval {
            config.storage.wal_sync_interval = interval;
        }
        if let Some(interval) = self.storage_wal_checkpoint_interval {
            config.storage.wal_checkpoint_interval = interval;
        }
        if let Some(level) = self.log_level {
            config.log.level = level;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if !self.storage_node.is_empty() {
            config.cluster.storage_nodes = self.storage_node.clone();
        }
        if let Some(n) = self.replication_factor {
            config.cluster.replication_factor = n;
        }
        if self.deny_partial_response {
            config.cluster.deny_partial_response = true;
        }
        if let Some(addr) = self.insert_listen_addr {
            config.cluster.insert_listen_addr = addr;
        }
        if let Some(addr) = self.select_listen_addr {
            config.cluster.select_listen_addr = addr;
        }
        if let Some(path) = &self.tls_cert_file {
            config.http.tls_cert_file = Some(path.clone());
        }
        if let Some(path) = &self.tls_key_file {
            config.http.tls_key_file = Some(path.clone());
        }
        if let Some(n) = self.max_concurrent_queries {
            config.limits.max_concurrent_queries = n;
        }
        if let Some(n) = self.max_concurrent_ingest {
            config.limits.max_concurrent_ingest = n;
        }
        if self.disable_rerouting {
            config.cluster.disable_rerouting = true;
        }
        if let Some(path) = &self.cluster_tls_cert_file {
            config.cluster.tls_cert_file = Some(path.clone());
        }
        if let Some(path) = &self.cluster_tls_key_file {
            config.cluster.tls_key_file = Some(path.clone());
        }
        if let Some(path) = &self.cluster_tls_ca_file {
            config.cluster.tls_ca_file = Some(path.clone());
        }
        if let Some(name) = &self.cluster_tls_server_name {
            config.cluster.tls_server_name = Some(name.clone());
        }
    }
}

impl Overrides {
    /// The agent's flags (kept apart so that each subsystem's flags stay together).
    fn apply_agent(&self, config: &mut ApplianceConfig) {
        let agent = &mut config.agent;
        if let Some(path) = &self.promscrape_config {
            agent.scrape_config_file = Some(path.clone());
        }
        if !self.remote_write_url.is_empty() {
            agent.remote_write_urls = self.remote_write_url.clone();
        }
        if let Some(path) = &self.remote_write_tmp_data_path {
            agent.queue_path = Some(path.clone());
        }
        if let Some(protocol) = self.remote_write_protocol {
            agent.remote_write_protocol = protocol;
        }
        if let Some(interval) = self.self_scrape_interval {
            agent.self_scrape_interval = Some(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_after_role_and_config_anywhere() {
        let cli = Cli::try_parse_from([
            "strata",
            "single",
            "--storage-data-path",
            "./d",
            "--http-listen-addr",
            "127.0.0.1:9999",
        ])
        .unwrap();
        assert_eq!(cli.command.as_ref().and_then(Command::role), Some(Role::Single));
        assert_eq!(cli.overrides.storage_data_path, Some(PathBuf::from("./d")));

        for args in [
            ["strata", "--config", "appliance.toml", "single"],
            ["strata", "single", "--config", "appliance.toml"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.config, Some(PathBuf::from("appliance.toml")));
        }
    }

    #[test]
    fn flags_override_config_keys() {
        let cli = Cli::try_parse_from(["strata", "--retention-period", "1y", "--log-level", "debug"]).unwrap();
        let mut config = ApplianceConfig::default();
        cli.overrides.apply(&mut config);
        assert_eq!(config.storage.retention_period, "1y".parse().unwrap());
        assert_eq!(config.log.level, LogLevel::Debug);
    }

    #[test]
    fn agent_flags_override_agent_keys() {
        let cli = Cli::try_parse_from([
            "strata",
            "agent",
            "--promscrape-config",
            "p.yml",
            "--remote-write-url",
            "http://a/api/v1/write",
            "--remote-write-url",
            "http://b/api/v1/write",
            "--remote-write-tmp-data-path",
            "q",
            "--remote-write-protocol",
            "1",
            "--self-scrape-interval",
            "0",
        ])
        .unwrap();
        let mut config = ApplianceConfig::default();
        cli.overrides.apply(&mut config);
        let agent = &config.agent;
        assert_eq!(agent.scrape_config_file, Some(PathBuf::from("p.yml")));
        assert_eq!(
            agent.remote_write_urls,
            ["http://a/api/v1/write", "http://b/api/v1/write"]
        );
        assert_eq!(agent.queue_path, Some(PathBuf::from("q")));
        assert_eq!(
            agent.remote_write_protocol,
            strata_config::agent::RemoteWriteProtocol::V1
        );
        assert!(agent.self_scrape_interval_for(Role::Single).is_zero());
        assert!(Cli::try_parse_from(["strata", "--remote-write-protocol", "3"]).is_err());
    }

    #[test]
    fn bad_flag_values_are_rejected() {
        assert!(Cli::try_parse_from(["strata", "--retention-period", "1 year"]).is_err());
        assert!(Cli::try_parse_from(["strata", "--log-level", "loud"]).is_err());
        assert!(Cli::try_parse_from(["strata", "router"]).is_err());
    }
}
