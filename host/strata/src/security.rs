//! appliance.toml's `[http] tls_*`, `[auth]` and `[limits]` turned into the options the HTTP
//! layer and the query engine take. Every role calls [`http_security`] once and hands the result
//! to `ServerBuilder::security` and `strata_http::serve_secure`.

use anyhow::Context;
use strata_config::ApplianceConfig;
use strata_config::auth::AccessRole;
use strata_http::Security;
use strata_http::auth::{Access, AuthOptions, TenantPattern, TokenRule};
use strata_http::limits::LimitOptions;
use strata_http::tls::TlsOptions;
use strata_query::QueryOptions;

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
        },
    })
}

/// The query engine's limits from `[limits]`.
pub fn query_options(config: &ApplianceConfig) -> QueryOptions {
    let limits = &config.limits;
    QueryOptions {
        max_series: limits.max_query_series,
        max_samples: limits.max_query_samples,
        max_points_per_series: limits.max_points_per_series,
        timeout: limits.query_timeout.get(),
        ..QueryOptions::default()
    }
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
}
