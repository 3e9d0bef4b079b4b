//! `[[limits.tenants]]`: per-tenant overrides of the query limits and an optional ingestion
//! rate limit.
//!
//! ```toml
//! [[limits.tenants]]
//! tenant = "42:*"                         # same patterns as [[auth.tokens]].tenants
//! max_query_series = 10000                # any of the [limits] query limits, overridden
//! query_timeout = "30s"
//! max_regex_length = 1024
//! max_ingest_samples_per_second = 50000   # token bucket per tenant, burst = one second
//!
//! [[limits.tenants]]
//! tenant = "*"                            # everybody else
//! max_ingest_samples_per_second = 200000
//! ```
//!
//! The first table whose pattern matches a tenant applies; a key it leaves out keeps the
//! `[limits]` value. The single role's tenant is `0:0`.

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::auth::check_tenant_pattern;
use crate::units::HumanDuration;

/// Most `[[limits.tenants]]` tables: each request walks the list, first match wins.
pub const MAX_TENANT_RULES: usize = 1000;

/// One `[[limits.tenants]]` table.
#[derive(Clone, Debug, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimitsConfig {
    /// `"A:P"`, `"A"` (= `A:0`), `"A:*"` or `"*"`.
    pub tenant: String,
    /// Overrides `limits.max_query_series`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_query_series: Option<usize>,
    /// Overrides `limits.max_query_samples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_query_samples: Option<usize>,
    /// Overrides `limits.max_points_per_series`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points_per_series: Option<usize>,
    /// Overrides `limits.query_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_timeout: Option<HumanDuration>,
    /// Overrides `limits.max_regex_length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regex_length: Option<usize>,
    /// Samples per second each matching tenant may ingest (a token bucket holding one second's
    /// worth); over it, ingestion answers 429 with `Retry-After`. Unset = no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ingest_samples_per_second: Option<u64>,
}

/// Checks every `[[limits.tenants]]` table: patterns, positive values, no table hidden behind
/// an earlier one with the same pattern.
pub fn validate_tenant_limits(rules: &[TenantLimitsConfig]) -> Result<(), ConfigError> {
    if rules.len() > MAX_TENANT_RULES {
        return Err(ConfigError::Invalid {
            key: "limits.tenants",
            message: format!(
                "{} tables; at most {MAX_TENANT_RULES} (use \"A:*\" or \"*\" patterns)",
                rules.len()
            ),
        });
    }
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        check_tenant_pattern(&rule.tenant).map_err(|message| ConfigError::Invalid {
            key: "limits.tenants.tenant",
            message: format!("table #{n}: {message}"),
        })?;
        if let Some(earlier) = rules[..i].iter().position(|r| same_pattern(&r.tenant, &rule.tenant)) {
            return Err(ConfigError::Invalid {
                key: "limits.tenants.tenant",
                message: format!(
                    "table #{n} ({:?}) is never used: table #{} has the same pattern and the first match wins",
                    rule.tenant,
                    earlier + 1
                ),
            });
        }
        let positive = |key: &'static str, value: Option<u64>| match value {
            Some(0) => Err(ConfigError::Invalid {
                key,
                message: format!(
                    "table #{n} ({:?}): must be at least 1 (leave the key out for no override)",
                    rule.tenant
                ),
            }),
            _ => Ok(()),
        };
        let wide = |v: Option<usize>| v.map(|v| v as u64);
        positive("limits.tenants.max_query_series", wide(rule.max_query_series))?;
        positive("limits.tenants.max_query_samples", wide(rule.max_query_samples))?;
        positive("limits.tenants.max_points_per_series", wide(rule.max_points_per_series))?;
        positive("limits.tenants.max_regex_length", wide(rule.max_regex_length))?;
        positive(
            "limits.tenants.max_ingest_samples_per_second",
            rule.max_ingest_samples_per_second,
        )?;
        if rule.query_timeout.is_some_and(|t| t.get().is_zero()) {
            return Err(ConfigError::Invalid {
                key: "limits.tenants.query_timeout",
                message: format!("table #{n} ({:?}): must be longer than 0s", rule.tenant),
            });
        }
    }
    Ok(())
}

/// `"42"` and `"42:0"` are the same tenant.
fn same_pattern(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        if p == "*" || p.contains(':') {
            p.to_owned()
        } else {
            format!("{p}:0")
        }
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::LimitsConfig;

    fn limits(text: &str) -> Result<LimitsConfig, String> {
        let config: LimitsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn toml_shape() {
        let config = limits(
            r#"
            max_regex_length = 4096
            max_regex_compiled_size = "1MiB"
            [[tenants]]
            tenant = "42:*"
            max_query_series = 10
            query_timeout = "30s"
            max_regex_length = 100
            max_ingest_samples_per_second = 5000
            [[tenants]]
            tenant = "*"
            "#,
        )
        .unwrap();
        assert_eq!(config.max_regex_length, 4096);
        assert_eq!(config.max_regex_compiled_size.bytes(), 1 << 20);
        let t = &config.tenants[0];
        assert_eq!(t.tenant, "42:*");
        assert_eq!(t.max_query_series, Some(10));
        assert_eq!(t.query_timeout.map(|d| d.get().as_secs()), Some(30));
        assert_eq!(t.max_regex_length, Some(100));
        assert_eq!(t.max_ingest_samples_per_second, Some(5000));
        assert_eq!(t.max_query_samples, None);
        // A table without overrides is allowed: it exempts its tenants from later tables.
        assert_eq!(
            config.tenants[1],
            TenantLimitsConfig {
                tenant: "*".into(),
                ..TenantLimitsConfig::default()
            }
        );
        assert!(limits("").unwrap().tenants.is_empty());
    }

    #[test]
    fn validation_names_the_key_and_table() {
        let cases = [
            ("[[tenants]]\ntenant = \"x\"\n", "limits.tenants.tenant"),
            ("[[tenants]]\ntenant = \"1:2:3\"\n", "table #1"),
            (
                "[[tenants]]\ntenant = \"1\"\nmax_query_series = 0\n",
                "limits.tenants.max_query_series",
            ),
            (
                "[[tenants]]\ntenant = \"1\"\nmax_ingest_samples_per_second = 0\n",
                "limits.tenants.max_ingest_samples_per_second",
            ),
            (
                "[[tenants]]\ntenant = \"1\"\nmax_regex_length = 0\n",
                "limits.tenants.max_regex_length",
            ),
            (
                "[[tenants]]\ntenant = \"1\"\nquery_timeout = \"0s\"\n",
                "limits.tenants.query_timeout",
            ),
            (
                "[[tenants]]\ntenant = \"7\"\n[[tenants]]\ntenant = \"7:0\"\n",
                "never used",
            ),
            ("max_regex_length = 0\n", "limits.max_regex_length"),
            ("max_regex_compiled_size = \"1KiB\"\n", "limits.max_regex_compiled_size"),
            ("max_regex_compiled_size = \"1GiB\"\n", "limits.max_regex_compiled_size"),
        ];
        for (text, want) in cases {
            let err = limits(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = limits("[[tenants]]\ntenant = \"1\"\nmax_series = 5\n").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn too_many_tables() {
        let rules: Vec<TenantLimitsConfig> = (0..=MAX_TENANT_RULES)
            .map(|i| TenantLimitsConfig {
                tenant: i.to_string(),
                ..TenantLimitsConfig::default()
            })
            .collect();
        assert!(validate_tenant_limits(&rules).is_err());
        assert!(validate_tenant_limits(&rules[..10]).is_ok());
    }
}
