//! `[auth]` (who may call which endpoint, for which tenants) and `[limits]` (overload
//! protection and query limits).
//!
//! ```toml
//! [auth]
//! protect_metrics = false          # /metrics open (the default) or behind a `read` token
//!
//! [[auth.tokens]]
//! token = "s3cr3t-writer"
//! roles = ["write"]
//! tenants = ["0:0", "42:*"]        # accountID:projectID, `*` for any project or any tenant
//!
//! [limits]
//! max_concurrent_queries = 0       # 0 = twice the CPU count
//! query_queue_wait = "5s"
//! ```
//!
//! No tokens means authentication is off (everything is open), which is only sensible on
//! 127.0.0.1; the binary warns when a non-loopback address is served without TLS or tokens.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::limits::{TenantLimitsConfig, validate_tenant_limits};
use crate::units::{ByteSize, HumanDuration};

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: the accepted tokens. Empty = authentication off.
    pub tokens: Vec<TokenConfig>,
    /// When true, `/metrics` needs a token with the `read` role; `/health`, `/-/healthy` and
    /// `/-/ready` stay open so that load balancers can probe.
    pub protect_metrics: bool,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    /// Queries, series and label lookups, export, status pages, the UI.
    Read,
    /// Ingestion: remote write, imports, plugin ingest paths, `/insert/...`.
    Write,
    /// Deletion, snapshots, force merge/flush, reloads, configuration.
    Admin,
}

/// One `[[auth.tokens]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret, sent as `Authorization: Bearer <token>` or as a Basic password.
    pub token: String,
    /// What the token may do; the roles are independent (`admin` does not imply `read`).
    pub roles: Vec<AccessRole>,
    /// Tenants the token may use: `"0:0"`, `"42:*"` (any project of account 42), `"42"`
    /// (= `42:0`) or `"*"` (every tenant). Paths without a tenant (the single role, the agent,
    /// a storage node's own API) are tenant `0:0`. Default: `["0:0"]`.
    #[serde(default = "default_tenants")]
    pub tenants: Vec<String>,
}

fn default_tenants() -> Vec<String> {
    vec!["0:0".to_owned()]
}

impl AuthConfig {
    /// Whether any token is configured (authentication on).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks token lengths, duplicates, roles and tenant patterns.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, token) in self.tokens.iter().enumerate() {
            let n = i + 1;
            if token.token.len() < MIN_TOKEN_LENGTH {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens.token",
                    message: format!(
                        "token #{n} is {} bytes; at least {MIN_TOKEN_LENGTH} are required (e.g. `openssl rand -hex 32`)",
                        token.token.len()
                    ),
                });
            }
            if token.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens.token",
                    message: format!("token #{n} contains whitespace or control characters"),
                });
            }
            if self.tokens[..i].iter().any(|t| t.token == token.token) {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens.token",
                    message: format!("token #{n} is listed twice"),
                });
            }
            if token.roles.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens.roles",
                    message: format!("token #{n} has no roles; allowed roles are read, write, admin"),
                });
            }
            if token.tenants.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens.tenants",
                    message: format!("token #{n} has no tenants; use [\"0:0\"] for the single role or [\"*\"] for all"),
                });
            }
            for pattern in &token.tenants {
                check_tenant_pattern(pattern).map_err(|message| ConfigError::Invalid {
                    key: "auth.tokens.tenants",
                    message: format!("token #{n}: {message}"),
                })?;
            }
        }
        Ok(())
    }
}

/// Accepts `*`, `A`, `A:P` and `A:*` with 32-bit unsigned decimal numbers.
pub fn check_tenant_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let (account, project) = pattern.split_once(':').unwrap_or((pattern, "0"));
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok();
    if number(account) && (project == "*" || number(project)) {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant {pattern:?}; want \"*\", \"accountID\", \"accountID:projectID\" or \"accountID:*\""
        ))
    }
}

/// `[limits]`: overload protection and query limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Ingestion requests processed at once; 0 = twice the CPU count. More wait (see
    /// `ingest_queue_wait`), then get 503 with `Retry-After`.
    pub max_concurrent_ingest: usize,
    /// How long an ingestion request waits for a slot before 503.
    pub ingest_queue_wait: HumanDuration,
    /// Queries (query, query_range, series, labels, export, ...) run at once; 0 = twice the CPU
    /// count.
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before 503.
    pub query_queue_wait: HumanDuration,
    /// Most series one selector may load.
    pub max_query_series: usize,
    /// Most samples one query may load.
    pub max_query_samples: usize,
    /// Most points per series in a range query result.
    pub max_points_per_series: usize,
    /// Wall-clock budget of one query.
    pub query_timeout: HumanDuration,
    /// Most bytes of source in one query regex (label matchers, `label_replace`); longer ones
    /// are refused with 400 before compiling.
    pub max_regex_length: usize,
    /// Most memory one compiled query regex may take (64KiB..8MiB); regex bombs such as
    /// `a{1000}{1000}` are refused with 400 as soon as they grow past it.
    pub max_regex_compiled_size: ByteSize,
    /// `[[limits.tenants]]`: per-tenant overrides and ingestion rates, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantLimitsConfig>,
}

/// Smallest `limits.max_regex_compiled_size`: below it ordinary regexes (`\w+`) fail.
pub const MIN_REGEX_COMPILED_SIZE: u64 = 64 << 10;
/// Largest `limits.max_regex_compiled_size`; the storage engine's own backstop
/// (`strata_query::regex_limits::MAX_REGEX_COMPILED_BYTES`) is the same.
pub const MAX_REGEX_COMPILED_SIZE: u64 = 8 << 20;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_ingest: 0,
            ingest_queue_wait: HumanDuration::from_secs(10),
            max_concurrent_queries: 0,
            query_queue_wait: HumanDuration::from_secs(5),
            max_query_series: 1_000_000,
            max_query_samples: 50_000_000,
            max_points_per_series: 11_000,
            query_timeout: HumanDuration::from_secs(120),
            max_regex_length: 8 * 1024,
            max_regex_compiled_size: ByteSize::mib(2),
            tenants: Vec::new(),
        }
    }
}

impl LimitsConfig {
    /// Checks that the query limits are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = |key: &'static str, value: usize| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        zero("limits.max_query_series", self.max_query_series)?;
        zero("limits.max_query_samples", self.max_query_samples)?;
        zero("limits.max_points_per_series", self.max_points_per_series)?;
        zero("limits.max_regex_length", self.max_regex_length)?;
        let compiled = self.max_regex_compiled_size.bytes();
        if !(MIN_REGEX_COMPILED_SIZE..=MAX_REGEX_COMPILED_SIZE).contains(&compiled) {
            return Err(ConfigError::Invalid {
                key: "limits.max_regex_compiled_size",
                message: format!("{compiled} bytes; want between 64KiB and 8MiB"),
            });
        }
        validate_tenant_limits(&self.tenants)?;
        if self.query_timeout.get().is_zero() {
            return Err(ConfigError::Invalid {
                key: "limits.query_timeout",
                message: "must be longer than 0s".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str, tenants: &[&str]) -> TokenConfig {
        TokenConfig {
            token: t.into(),
            roles: vec![AccessRole::Read],
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tenant_patterns() {
        for ok in ["*", "0:0", "42", "42:*", "4294967295:7"] {
            assert!(check_tenant_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":", "a:b", "*:1", "42:", "-1", "4294967296", "1:2:3", " 1"] {
            assert!(check_tenant_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let short = AuthConfig {
            tokens: vec![token("short", &["0:0"])],
            protect_metrics: false,
        };
        assert!(short.validate().unwrap_err().to_string().contains("at least 16"));
        let dup = AuthConfig {
            tokens: vec![token("0123456789abcdef", &["0:0"]), token("0123456789abcdef", &["*"])],
            protect_metrics: false,
        };
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
        let bad_tenant = AuthConfig {
            tokens: vec![token("0123456789abcdef", &["x"])],
            protect_metrics: false,
        };
        assert!(
            bad_tenant
                .validate()
                .unwrap_err()
                .to_string()
                .contains("auth.tokens.tenants")
        );
        let mut no_roles = token("0123456789abcdef", &["0:0"]);
        no_roles.roles.clear();
        let no_roles = AuthConfig {
            tokens: vec![no_roles],
            protect_metrics: false,
        };
        assert!(no_roles.validate().is_err());
    }

    #[test]
    fn toml_shape() {
        let text = r#"
            protect_metrics = true
            [[tokens]]
            token = "0123456789abcdef-w"
            roles = ["write", "read"]
            tenants = ["0:0", "42:*"]
            [[tokens]]
            token = "0123456789abcdef-a"
            roles = ["admin"]
        "#;
        let auth: AuthConfig = toml::from_str(text).unwrap();
        auth.validate().unwrap();
        assert!(auth.protect_metrics);
        assert_eq!(auth.tokens[0].roles, vec![AccessRole::Write, AccessRole::Read]);
        assert_eq!(auth.tokens[1].tenants, vec!["0:0".to_string()]);
        assert!(toml::from_str::<AuthConfig>("[[tokens]]\ntoken = \"x\"\nroles = [\"root\"]\n").is_err());
    }
}
