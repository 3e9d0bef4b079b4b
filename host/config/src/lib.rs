//! The appliance configuration: the schema of `appliance.toml`, its defaults, and validation.
//!
//! Every table and key is `deny_unknown_fields`, so a typo is an error that names the key, its
//! line and the keys that are allowed (toml's own error, which carries the span). Values that
//! parse but make no sense (a retention of one hour) are caught by [`ApplianceConfig::validate`]
//! and name the key they belong to. Command-line flags override keys after loading; see the
//! `strata` binary.
//!
//! Each later subsystem adds its own table here; the crates that run a subsystem take plain
//! option structs so that they do not depend on this crate.

pub mod agent;
pub mod auth;
pub mod cluster;
pub mod limits;
pub mod plugins;
pub mod units;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use units::{ByteSize, HumanDuration};

/// What a configuration file can be wrong about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type. The message
    /// carries the line, the column and the allowed keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message with the line and a snippet.
        message: String,
    },
    /// A key parsed but its value is not acceptable.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `storage.retention_period`.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The role a `strata` process plays (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// All in one: storage, query, ingestion, UI.
    #[default]
    Single,
    /// Owns data in a cluster; serves insert and select RPC.
    Storage,
    /// Accepts writes and shards them over storage nodes.
    Insert,
    /// Answers queries by fanning out to storage nodes.
    Select,
    /// Scrapes targets and remote-writes what it scraped.
    Agent,
}

impl Role {
    /// Every role, in the order the CLI lists them.
    pub const ALL: [Role; 5] = [Role::Single, Role::Storage, Role::Insert, Role::Select, Role::Agent];

    /// The name used on the command line and in appliance.toml.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Storage => "storage",
            Role::Insert => "insert",
            Role::Select => "select",
            Role::Agent => "agent",
        }
    }

    /// The HTTP port the role listens on unless told otherwise (VictoriaMetrics' defaults).
    pub const fn default_http_port(self) -> u16 {
        match self {
            Role::Single => 8428,
            Role::Storage => 8482,
            Role::Insert => 8480,
            Role::Select => 8481,
            Role::Agent => 8429,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == s)
            .ok_or_else(|| format!("unknown role {s:?}; allowed roles are single, storage, insert, select, agent"))
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: what an operator wants to see.
    #[default]
    Info,
    /// For developers.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level as tracing's filter directive.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!(
                "unknown log level {s:?}; allowed levels are error, warn, info, debug, trace"
            )),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The whole `appliance.toml`.
#[derive(Clone, Debug, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplianceConfig {
    /// The role when none is given on the command line.
    pub role: Role,
    /// `[log]`.
    pub log: LogConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[ingest]`.
    pub ingest: IngestConfig,
    /// `[[plugins]]`: WebAssembly plugins to load.
    pub plugins: Vec<plugins::PluginConfig>,
    /// `[agent]`: scraping and remote-write.
    pub agent: agent::AgentConfig,
    /// `[cluster]`: storage, insert and select roles.
    pub cluster: cluster::ClusterConfig,
    /// `[auth]`: tokens, roles and tenants (empty = authentication off).
    pub auth: auth::AuthConfig,
    /// `[limits]`: concurrency limits and query limits.
    pub limits: auth::LimitsConfig,
}

/// `[log]`: logging.
#[derive(Clone, Debug, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: LogLevel,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// `[http]`: the HTTP listener of the role.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Unset means 127.0.0.1 and the role's default port.
    pub listen_addr: Option<SocketAddr>,
    /// Requests with a larger body are refused with 413 before the body is read.
    pub max_request_body: ByteSize,
    /// How long graceful shutdown waits for in-flight requests before closing them.
    pub shutdown_timeout: HumanDuration,
    /// PEM certificate chain; with `tls_key_file`, the listener speaks HTTPS only. Reloaded
    /// when the file changes.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen_addr: None,
            max_request_body: ByteSize::mib(32),
            shutdown_timeout: HumanDuration::from_secs(10),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl HttpConfig {
    /// The address to listen on for `role`.
    pub fn listen_addr_for(&self, role: Role) -> SocketAddr {
        self.listen_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], role.default_http_port())))
    }
}

/// `[storage]`: where and how long data is kept.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data directory; one process per directory (guarded by `flock.lock`).
    pub data_path: PathBuf,
    /// Samples older than this are invisible to queries and removed by merges and partition
    /// drops. At least 1d, at most 100y.
    pub retention_period: HumanDuration,
    /// How often in-memory parts are written to disk: the most recent data a crash can lose.
    /// At least 1s.
    pub inmemory_flush_interval: HumanDuration,
    /// Keep one sample per series per interval (the last one); 0s keeps every sample. Set it to
    /// the scrape interval when two agents scrape the same targets (HA pairs).
    pub dedup_min_scrape_interval: HumanDuration,
    /// What to do with a listed part that fails to open: `fail` refuses to start (naming the
    /// part), `quarantine` moves it aside to `<data_path>/quarantine/` and starts without it.
    pub on_corrupt_part: CorruptPartPolicy,
    /// Below this much free disk the node is read-only: ingestion answers 503, merges wait;
    /// it returns to normal by itself once space is freed.
    pub min_free_disk_space: ByteSize,
    /// Write-ahead log: every sample is written to `<data_path>/wal/` before the write is
    /// acknowledged, so acknowledged samples survive a crash of the process. Off: a crash can
    /// lose up to `inmemory_flush_interval` of samples.
    pub wal: bool,
    /// How the WAL reaches the disk. `0s`: fsynced before every acknowledgement (also
    /// survives a power cut or kernel crash; costs an fsync per request). Longer: acknowledged
    /// once written to the file, fsynced in the background at most this much later (a power
    /// cut can lose up to this much). Default `100ms`.
    pub wal_sync_interval: HumanDuration,
    /// How often the WAL starts a new segment and deletes the ones the flushed parts already
    /// hold. A series' labels are logged once per segment and then referred to by a small
    /// number, so a series sent less often than this pays for its labels once per interval
    /// instead of with every sample. Longer means more log on disk and more to replay at
    /// start-up (a segment is also closed at 256 MiB). Default `60s`.
    pub wal_checkpoint_interval: HumanDuration,
}

/// `storage.on_corrupt_part`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptPartPolicy {
    /// Refuse to start and name the part.
    #[default]
    Fail,
    /// Move the part aside, log and count it, start without it.
    Quarantine,
}

/// The shortest retention accepted (one day), as VictoriaMetrics.
pub const MIN_RETENTION: HumanDuration = HumanDuration::from_secs(86_400);
/// The longest retention accepted (100 years).
pub const MAX_RETENTION: HumanDuration = HumanDuration::from_secs(100 * 365 * 86_400);

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_path: PathBuf::from("strata-data"),
            // One month, as VictoriaMetrics' default `-retentionPeriod=1`.
            retention_period: HumanDuration::from_secs(31 * 86_400),
            inmemory_flush_interval: HumanDuration::from_secs(5),
            dedup_min_scrape_interval: HumanDuration::from_secs(0),
            on_corrupt_part: CorruptPartPolicy::Fail,
            min_free_disk_space: ByteSize(100_000_000),
            wal: false,
            wal_sync_interval: HumanDuration::from_millis(100),
            wal_checkpoint_interval: HumanDuration::from_secs(60),
        }
    }
}

/// `[ingest]`: limits on what clients may send. Anything over a limit is refused with 400 (or
/// 413 for sizes) and counted in `strata_rows_rejected_total{reason}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest body after decompression. A compressed body that declares more is refused before
    /// it is inflated.
    pub max_decompressed_size: ByteSize,
    /// Most labels in one series, `__name__` included.
    pub max_labels_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
    /// Samples further in the future than this are refused.
    pub max_future_offset: HumanDuration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_decompressed_size: ByteSize::mib(32),
            max_labels_per_series: 40,
            max_label_name_length: 256,
            max_label_value_length: 4096,
            max_future_offset: HumanDuration::from_secs(2 * 86_400),
        }
    }
}

impl ApplianceConfig {
    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: err.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text, path)?;
        // Plugin paths are relative to the file that names them, not to the working directory.
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        plugins::resolve_relative_paths(&mut config.plugins, dir);
        Ok(config)
    }

    /// Checks the values that parse but are out of range. Call again after applying flags.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()?;
        self.auth.validate()?;
        self.limits.validate()?;
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "http.tls_cert_file",
                message: "http.tls_cert_file and http.tls_key_file go together: set both or neither".into(),
            });
        }
        let retention = self.storage.retention_period;
        if retention < MIN_RETENTION || retention > MAX_RETENTION {
            return Err(ConfigError::Invalid {
                key: "storage.retention_period",
                message: format!("{retention} is out of range; allowed is {MIN_RETENTION} to {MAX_RETENTION}"),
            });
        }
        if self.storage.data_path.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.data_path",
                message: "must not be empty".into(),
            });
        }
        if self.storage.inmemory_flush_interval < HumanDuration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "storage.inmemory_flush_interval",
                message: format!("{} is too short; at least 1s", self.storage.inmemory_flush_interval),
            });
        }
        if self.storage.wal_checkpoint_interval < HumanDuration::from_secs(1)
            || self.storage.wal_checkpoint_interval > HumanDuration::from_secs(3600)
        {
            return Err(ConfigError::Invalid {
                key: "storage.wal_checkpoint_interval",
                message: format!(
                    "{} is out of range; use 1s to 1h (longer means more log to replay at start-up)",
                    self.storage.wal_checkpoint_interval
                ),
            });
        }
        if self.storage.dedup_min_scrape_interval > HumanDuration::from_secs(86_400) {
            return Err(ConfigError::Invalid {
                key: "storage.dedup_min_scrape_interval",
                message: format!("{} is too long; at most 1d", self.storage.dedup_min_scrape_interval),
            });
        }
        if self.ingest.max_labels_per_series == 0 {
            return Err(ConfigError::Invalid {
                key: "ingest.max_labels_per_series",
                message: "must be at least 1".into(),
            });
        }
        if self.http.max_request_body.bytes() < 1024 {
            return Err(ConfigError::Invalid {
                key: "http.max_request_body",
                message: format!("{} is too small; at least 1KiB", self.http.max_request_body),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ApplianceConfig, ConfigError> {
        ApplianceConfig::from_toml_str(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, ApplianceConfig::default());
        assert_eq!(config.http.listen_addr_for(Role::Single).to_string(), "127.0.0.1:8428");
        assert_eq!(config.http.listen_addr_for(Role::Select).port(), 8481);
    }

    #[test]
    fn unknown_key_names_key_line_and_allowed_keys() {
        let err = parse("[storage]\ndata_path = \"x\"\nretention = \"30d\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("retention_period"), "should list allowed keys: {err}");
    }

    #[test]
    fn bad_duration_is_reported_with_line() {
        let err = parse("[storage]\nretention_period = \"30 days\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("unknown unit"), "{err}");
    }

    #[test]
    fn retention_bounds() {
        let err = parse("[storage]\nretention_period = \"1h\"\n").unwrap_err().to_string();
        assert!(err.contains("storage.retention_period"), "{err}");
        assert!(parse("[storage]\nretention_period = \"1y\"\n").is_ok());
    }

    #[test]
    fn wal_checkpoint_interval_bounds() {
        let config = parse("[storage]\nwal_checkpoint_interval = \"5m\"\n").unwrap();
        assert_eq!(config.storage.wal_checkpoint_interval, HumanDuration::from_secs(300));
        for bad in ["500ms", "2h"] {
            let err = parse(&format!("[storage]\nwal_checkpoint_interval = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("storage.wal_checkpoint_interval"), "{err}");
        }
    }

    #[test]
    fn roles_and_levels_parse() {
        let config = parse("role = \"select\"\n[log]\nlevel = \"debug\"\n").unwrap();
        assert_eq!(config.role, Role::Select);
        assert_eq!(config.log.level, LogLevel::Debug);
        assert!(parse("role = \"router\"\n").unwrap_err().to_string().contains("single"));
        assert!("router".parse::<Role>().is_err());
    }

    #[test]
    fn repository_appliance_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../appliance.toml");
        let config = ApplianceConfig::load(&path).unwrap();
        assert_eq!(config.role, Role::Single);
        assert_eq!(config.storage.data_path, PathBuf::from("./strata-data"));
    }
}
