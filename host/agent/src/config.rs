//! The Prometheus scrape configuration (`prometheus.yml`): the subset vmagent supports
//! (FORMATS.md §6.3). Unknown keys are refused with their path and line, or logged and skipped
//! when strict parsing is off (vmagent's `-promscrape.config.strictParse=false`).
//!
//! Not supported, and said so: `remote_write`/`remote_read`/`rule_files`/`alerting` are
//! accepted and ignored with a warning (the agent takes remote-write URLs from its own config;
//! alerting is not the agent's job); service discovery other than `static_configs` and
//! `file_sd_configs` is an unknown key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::PromDuration;
use crate::relabel::{Relabel, RelabelConfig, RelabelError};

/// Why a scrape configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or has a wrong type (the message names line and column).
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the location.
        message: String,
    },
    /// A key the schema does not know, in strict mode.
    #[error("{path}: line {line}: unknown field `{key}` (at {at}); fix it or set agent.strict_parse = false")]
    UnknownField {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key, 0 when it could not be located.
        line: usize,
        /// The key.
        key: String,
        /// Its path in the document, e.g. `scrape_configs.0.foo`.
        at: String,
    },
    /// A semantic error, e.g. a duplicate job name or a bad relabel rule.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PromConfig {
    /// Defaults for every job.
    pub global: GlobalConfig,
    /// The jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Ignored with a warning (the agent's own config lists the URLs).
    pub remote_write: Option<serde_yaml_ng::Value>,
    /// Ignored with a warning.
    pub remote_read: Option<serde_yaml_ng::Value>,
    /// Ignored with a warning (rules are not the agent's job).
    pub rule_files: Option<serde_yaml_ng::Value>,
    /// Ignored with a warning.
    pub alerting: Option<serde_yaml_ng::Value>,
}

/// `global:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct GlobalConfig {
    /// Default scrape interval (1m, as Prometheus).
    pub scrape_interval: PromDuration,
    /// Default scrape timeout (10s, as Prometheus; never more than the interval).
    pub scrape_timeout: PromDuration,
    /// Accepted for compatibility; rules are not evaluated here.
    pub evaluation_interval: Option<PromDuration>,
    /// Labels added to every scraped series that does not already have them.
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: PromDuration(Duration::from_secs(60)),
            scrape_timeout: PromDuration(Duration::from_secs(10)),
            evaluation_interval: None,
            external_labels: BTreeMap::new(),
        }
    }
}

/// One entry of `scrape_configs:`.
#[derive(Clone, Debug, Deserialize)]
pub struct ScrapeConfig {
    /// The `job` label of its targets; unique in the file.
    pub job_name: String,
    /// Overrides the global interval.
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    /// Overrides the global timeout.
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    /// Path of the metrics endpoint (default `/metrics`).
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// Scraped labels win over target labels on conflict (else they become `exported_*`).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (default true).
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// URL query parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token (legacy form of `authorization`).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding the bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// The `Authorization` header.
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// TLS settings of `https` targets.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// Fixed targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Targets from JSON or YAML files, re-read when they change.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Rules applied to each target's labels before scraping.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped series.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// More samples than this after metric relabeling fails the scrape (0: no limit).
    #[serde(default)]
    pub sample_limit: usize,
    /// A series with more labels than this fails the scrape (0: no limit).
    #[serde(default)]
    pub label_limit: usize,
}

fn default_metrics_path() -> String {
    "/metrics".to_owned()
}
fn default_scheme() -> String {
    "http".to_owned()
}
const fn default_true() -> bool {
    true
}

/// `basic_auth:`.
#[derive(Clone, Debug, Deserialize)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (read at every scrape, so rotation works).
    #[serde(default)]
    pub password_file: Option<String>,
}

/// `authorization:`.
#[derive(Clone, Debug, Deserialize)]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(default = "default_auth_type", rename = "type")]
    pub kind: String,
    /// The credentials.
    #[serde(default)]
    pub credentials: Option<String>,
    /// A file holding the credentials.
    #[serde(default)]
    pub credentials_file: Option<String>,
}

fn default_auth_type() -> String {
    "Bearer".to_owned()
}

/// `tls_config:` of an `https` job (see [`crate::tls`]). Relative paths are relative to the
/// directory of prometheus.yml.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TlsConfig {
    /// CA certificate file.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate file.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Client key file.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Server name for SNI and verification.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One `static_configs:` entry.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels for all of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One `file_sd_configs:` entry.
#[derive(Clone, Debug, Deserialize)]
pub struct FileSdConfig {
    /// Files (`*` allowed in the last path element), JSON (`.json`) or YAML (`.yml`, `.yaml`),
    /// each holding a list of `{targets, labels}` groups. Relative paths are relative to the
    /// directory of prometheus.yml.
    pub files: Vec<String>,
    /// Accepted for compatibility; files are checked at `agent.config_check_interval`.
    #[serde(default)]
    pub refresh_interval: Option<PromDuration>,
}

/// A loaded, checked configuration with compiled relabel rules.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The parsed document.
    pub config: PromConfig,
    /// Per job (same order): compiled `relabel_configs`.
    pub relabel: Vec<Vec<Relabel>>,
    /// Per job: compiled `metric_relabel_configs`.
    pub metric_relabel: Vec<Vec<Relabel>>,
    /// Keys ignored in non-strict mode, and the ignored sections (for the log).
    pub warnings: Vec<String>,
}

impl LoadedConfig {
    /// The effective interval and timeout of job `i`.
    pub fn interval_and_timeout(&self, i: usize) -> (Duration, Duration) {
        let job = &self.config.scrape_configs[i];
        let interval = job.scrape_interval.unwrap_or(self.config.global.scrape_interval).get();
        let timeout = job.scrape_timeout.unwrap_or(self.config.global.scrape_timeout).get();
        (interval, timeout.min(interval))
    }
}

/// Reads and checks `path`.
pub fn load_file(path: &Path, strict: bool) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, strict)
}

/// Parses and checks `text`; `path` is used in messages and for relative file_sd paths.
pub fn parse(text: &str, path: &Path, strict: bool) -> Result<LoadedConfig, ConfigError> {
    let mut ignored = Vec::new();
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let config: PromConfig =
        serde_ignored::deserialize(deserializer, |at| ignored.push(at.to_string())).map_err(|err| {
            ConfigError::Yaml {
                path: path.to_owned(),
                message: err.to_string(),
            }
        })?;
    let mut warnings = Vec::new();
    for at in ignored {
        let key = at.rsplit('.').next().unwrap_or(&at).to_owned();
        let line = find_key_line(text, &key);
        if strict {
            return Err(ConfigError::UnknownField {
                path: path.to_owned(),
                line,
                key,
                at,
            });
        }
        warnings.push(format!("line {line}: unknown field `{key}` (at {at}) ignored"));
    }
    for (name, present) in [
        ("remote_write", config.remote_write.is_some()),
        ("remote_read", config.remote_read.is_some()),
        ("rule_files", config.rule_files.is_some()),
        ("alerting", config.alerting.is_some()),
    ] {
        if present {
            warnings.push(format!("section `{name}` is ignored by the agent"));
        }
    }
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let mut seen = std::collections::HashSet::new();
    let mut relabel = Vec::new();
    let mut metric_relabel = Vec::new();
    for job in &config.scrape_configs {
        if job.job_name.is_empty() {
            return Err(invalid("a scrape config has an empty job_name".into()));
        }
        if !seen.insert(job.job_name.clone()) {
            return Err(invalid(format!("job_name {:?} is used twice", job.job_name)));
        }
        if job.scheme != "http" && job.scheme != "https" {
            return Err(invalid(format!(
                "job {:?}: scheme {:?} must be http or https",
                job.job_name, job.scheme
            )));
        }
        if !job.metrics_path.starts_with('/') {
            return Err(invalid(format!(
                "job {:?}: metrics_path {:?} must start with /",
                job.job_name, job.metrics_path
            )));
        }
        let auth_ways = usize::from(job.basic_auth.is_some())
            + usize::from(job.bearer_token.is_some() || job.bearer_token_file.is_some())
            + usize::from(job.authorization.is_some());
        if auth_ways > 1 {
            return Err(invalid(format!(
                "job {:?}: at most one of basic_auth, bearer_token(_file) and authorization may be set",
                job.job_name
            )));
        }
        let compile = |rules: &[RelabelConfig], what: &str| -> Result<Vec<Relabel>, ConfigError> {
            rules
                .iter()
                .map(Relabel::compile)
                .collect::<Result<Vec<_>, RelabelError>>()
                .map_err(|e| invalid(format!("job {:?}: {what}: {e}", job.job_name)))
        };
        relabel.push(compile(&job.relabel_configs, "relabel_configs")?);
        metric_relabel.push(compile(&job.metric_relabel_configs, "metric_relabel_configs")?);
    }
    Ok(LoadedConfig {
        path: path.to_owned(),
        config,
        relabel,
        metric_relabel,
        warnings,
    })
}

/// The 1-based line where `key:` first appears as a mapping key, or 0.
fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let t = line.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
global:
  scrape_interval: 15s
  scrape_timeout: 5s
  external_labels:
    dc: eu1
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:9100", "host2:9100"]
        labels: {env: prod}
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
  - job_name: app
    scrape_interval: 1m
    scrape_timeout: 2m
    metrics_path: /m
    scheme: https
    params: {format: [prometheus]}
    basic_auth: {username: u, password: p}
    tls_config: {insecure_skip_verify: true}
    honor_labels: true
    honor_timestamps: false
    sample_limit: 1000
    label_limit: 30
    file_sd_configs:
      - files: [targets/*.json]
"#;

    #[test]
    fn parses_a_full_file() {
        let loaded = parse(FULL, Path::new("p.yml"), true).unwrap();
        let c = &loaded.config;
        assert_eq!(c.global.scrape_interval.get(), Duration::from_secs(15));
        assert_eq!(c.global.external_labels["dc"], "eu1");
        assert_eq!(c.scrape_configs.len(), 2);
        assert_eq!(c.scrape_configs[0].static_configs[0].targets.len(), 2);
        assert_eq!(c.scrape_configs[0].metrics_path, "/metrics");
        assert!(c.scrape_configs[0].honor_timestamps);
        assert_eq!(loaded.metric_relabel[0].len(), 1);
        let app = &c.scrape_configs[1];
        assert_eq!(app.scheme, "https");
        assert_eq!(app.params["format"], vec!["prometheus"]);
        assert!(app.honor_labels && !app.honor_timestamps);
        assert_eq!((app.sample_limit, app.label_limit), (1000, 30));
        assert_eq!(
            loaded.interval_and_timeout(0),
            (Duration::from_secs(15), Duration::from_secs(5))
        );
        // The timeout never exceeds the interval.
        assert_eq!(
            loaded.interval_and_timeout(1),
            (Duration::from_secs(60), Duration::from_secs(60))
        );
    }

    #[test]
    fn unknown_fields_name_their_line_or_warn() {
        let text = "scrape_configs:\n  - job_name: a\n    scrape_intervl: 10s\n";
        let err = parse(text, Path::new("p.yml"), true).unwrap_err();
        match &err {
            ConfigError::UnknownField { line, key, .. } => {
                assert_eq!((*line, key.as_str()), (3, "scrape_intervl"));
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("line 3"), "{err}");
        let loaded = parse(text, Path::new("p.yml"), false).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("scrape_intervl"));
    }

    #[test]
    fn semantic_errors() {
        for (text, want) in [
            ("scrape_configs:\n  - job_name: a\n  - job_name: a\n", "used twice"),
            ("scrape_configs:\n  - job_name: a\n    scheme: ftp\n", "scheme"),
            (
                "scrape_configs:\n  - job_name: a\n    metrics_path: m\n",
                "metrics_path",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    bearer_token: x\n    basic_auth: {username: u}\n",
                "at most one",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    relabel_configs: [{action: hashmod, target_label: x}]\n",
                "modulus",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    scrape_interval: 10\n",
                "invalid duration",
            ),
            ("global: [1]\n", "global"),
        ] {
            let err = parse(text, Path::new("p.yml"), true).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn ignored_sections_warn() {
        let loaded = parse("remote_write: [{url: x}]\nrule_files: [a]\n", Path::new("p"), true).unwrap();
        assert_eq!(loaded.warnings.len(), 2);
    }
}
