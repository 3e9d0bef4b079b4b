//! appliance.toml's `[http] tls_*`, `[auth]` and `[limits]` turned into the options the HTTP
//! layer and the query engine take. Every role calls [`http_security`] once and hands the result
//! to `ServerBuilder::security` and `strata_http::serve_secure`; roles that ingest wrap their
//! sink with `RateLimitedSink::wrap(sink, security.limits.tenants.as_ref())` so that
//! `[[limits.tenants]]` ingestion rates are charged.

use std::sync::Arc;

use anyhow::Context;
use strata_config::ApplianceConfig;
use strata_config::auth::AccessRole;
use strata_http::Security;
use strata_http::auth::{Access, AuthOptions, TenantPattern, TokenRule};
use strata_http::limits::LimitOptions;
use strata_http::tenant_limits::{QueryOverrides, TenantLimits, TenantRule};
use strata_http::tls::TlsOptions;
use strata_query::QueryOptions;
use strata_storage::Tenant;

/// TLS, tokens and query concurrency of the role's HTTP listener. The certificate is loaded
/// when serving starts (a bad file stops start-up, naming it).
pub fn http_security(config: &ApplianceConfig) -> anyhow::Result<Security> {
    let tls = match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsOptions::new(cert, key)),
        (None, None) => None,
        _ => anyhow::bail!("http.tls_cert_file and http.tls_key_file go together: set both or neither"),
    };
    let mut tokens = Vec::with_capacity(config.auth.tokens.len());
    for (i, token) in config.auth.tokens.iter().enumerate() {
        let tenants = token
            .tenants
            .iter()
            .map(|t| TenantPattern::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("auth.tokens #{}", i + 1))?;
        tokens.push(TokenRule {
            token: token.token.clone(),
            roles: token
                .roles
                .iter()
                .map(|r| match r {
                    AccessRole::Read => Access::Read,
                    AccessRole::Write => Access::Write,
                    AccessRole::Admin => Access::Admin,
                })
                .collect(),
            tenants,
        });
    }
    if !tokens.is_empty() {
        tracing::info!(tokens = tokens.len(), "authentication on");
    }
    let tenants = tenant_limits(config)?;
    if tenants.is_some() {
        tracing::info!(
            tables = config.limits.tenants.len(),
            ingest_rates = tenants.as_ref().is_some_and(|t| t.limits_ingest()),
            "per-tenant limits on"
        );
    }
    Ok(Security {
        tls,
        auth: AuthOptions {
            tokens,
            protect_metrics: config.auth.protect_metrics,
            write_paths: Vec::new(),
        },
        limits: LimitOptions {
            max_concurrent_queries: config.limits.max_concurrent_queries,
            query_queue_wait: config.limits.query_queue_wait.get(),
            tenants,
            write_paths: Vec::new(),
        },
    })
}

/// `[[limits.tenants]]` as the HTTP layer's rules; `None` when there are none.
pub fn tenant_limits(config: &ApplianceConfig) -> anyhow::Result<Option<Arc<TenantLimits>>> {
    let tables = &config.limits.tenants;
    if tables.is_empty() {
        return Ok(None);
    }
    let mut rules = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let pattern = TenantPattern::parse(&t.tenant)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("limits.tenants #{}", i + 1))?;
        rules.push(TenantRule {
            pattern,
            name: t.tenant.clone(),
            query: QueryOverrides {
                max_series: t.max_query_series,
                max_samples: t.max_query_samples,
                max_points_per_series: t.max_points_per_series,
                timeout: t.query_timeout.map(|d| d.get()),
                max_regex_length: t.max_regex_length,
            },
            ingest_samples_per_second: t.max_ingest_samples_per_second,
        });
    }
    Ok(Some(TenantLimits::new(rules)))
}

/// The query engine's limits from `[limits]` (before any `[[limits.tenants]]` override).
pub fn query_options(config: &ApplianceConfig) -> QueryOptions {
    let limits = &config.limits;
    QueryOptions {
        max_series: limits.max_query_series,
        max_samples: limits.max_query_samples,
        max_points_per_series: limits.max_points_per_series,
        timeout: limits.query_timeout.get(),
        max_regex_length: limits.max_regex_length,
        max_regex_compiled_bytes: usize::try_from(limits.max_regex_compiled_size.bytes()).unwrap_or(usize::MAX),
        ..QueryOptions::default()
    }
}

/// [`query_options`] with `tenant`'s `[[limits.tenants]]` overrides: the single role's limits
/// (tenant 0:0).
pub fn query_options_for(config: &ApplianceConfig, tenant: Tenant) -> anyhow::Result<QueryOptions> {
    let base = query_options(config);
    Ok(match tenant_limits(config)? {
        Some(limits) => limits.query_options(&base, tenant),
        None => base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_maps_to_security() {
        let config = ApplianceConfig::from_toml_str(
            r#"
            [http]
            tls_cert_file = "c.pem"
            tls_key_file = "k.pem"
            [limits]
            max_concurrent_queries = 3
            query_timeout = "7s"
            [[auth.tokens]]
            token = "0123456789abcdef0"
            roles = ["read", "admin"]
            tenants = ["42:*"]
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let security = http_security(&config).unwrap();
        assert_eq!(security.tls.unwrap().cert_file, std::path::PathBuf::from("c.pem"));
        assert_eq!(security.auth.tokens[0].roles, vec![Access::Read, Access::Admin]);
        assert!(security.auth.tokens[0].tenants[0].matches(42, 3));
        assert_eq!(security.limits.max_concurrent_queries, 3);
        assert_eq!(query_options(&config).timeout, std::time::Duration::from_secs(7));
        let open = http_security(&ApplianceConfig::default()).unwrap();
        assert!(open.tls.is_none() && open.auth.tokens.is_empty());
    }

    #[test]
    fn tenant_tables_map_to_rules_and_overrides() {
        let config = ApplianceConfig::from_toml_str(
            r#"
            [limits]
            max_query_series = 100
            max_regex_length = 500
            max_regex_compiled_size = "1MiB"
            [[limits.tenants]]
            tenant = "0"
            max_query_series = 3
            query_timeout = "9s"
            [[limits.tenants]]
            tenant = "42:*"
            max_ingest_samples_per_second = 10
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let base = query_options(&config);
        assert_eq!((base.max_series, base.max_regex_length), (100, 500));
        assert_eq!(base.max_regex_compiled_bytes, 1 << 20);
        let single = query_options_for(&config, Tenant::default()).unwrap();
        assert_eq!(single.max_series, 3);
        assert_eq!(single.timeout, std::time::Duration::from_secs(9));
        assert_eq!(single.max_regex_length, 500, "not overridden");
        let other = query_options_for(
            &config,
            Tenant {
                account_id: 42,
                project_id: 1,
            },
        )
        .unwrap();
        assert_eq!(other.max_series, 100);
        let limits = http_security(&config).unwrap().limits.tenants.expect("rules");
        assert!(limits.limits_ingest());
        assert_eq!(
            limits
                .rule(Tenant {
                    account_id: 42,
                    project_id: 9
                })
                .map(|r| r.name.as_str()),
            Some("42:*")
        );
        assert!(tenant_limits(&ApplianceConfig::default()).unwrap().is_none());
    }
}
