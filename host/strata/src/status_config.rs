//! `GET /api/v1/status/config`: the effective configuration (appliance.toml after defaults and
//! command-line flags) as TOML text, for the UI's Status page and for operators who want to
//! know what a running node actually uses.
//!
//! The answer has Prometheus' envelope, `{"status":"success","data":{"toml":"..."}}` (Prometheus
//! puts its YAML under `data.yaml`; ours is TOML, so the key says so).
//!
//! Secrets never leave the process: the configuration is turned into a TOML value tree and
//! every value under a key that names a secret (`token`, `password`, `secret`, `credentials`,
//! `key`, `*_key`, ...) is replaced, as is the password of any `user:password@` URL. The rule
//! works on key names rather than on a list of fields, so a table added later by another
//! subsystem is covered without touching this file.

use std::sync::Arc;

use axum::Router;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};
use strata_config::ApplianceConfig;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// The route, answering with `config` as it was when the node started.
pub fn routes(config: &ApplianceConfig) -> Router {
    let body: Arc<Value> = Arc::new(match effective_toml(config) {
        Ok(text) => json!({"status": "success", "data": {"toml": text}}),
        Err(err) => json!({"status": "error", "errorType": "internal", "error": err}),
    });
    Router::new().route(
        "/api/v1/status/config",
        get(move || {
            let body = Arc::clone(&body);
            async move { Json((*body).clone()) }
        }),
    )
}

/// `config` as TOML text with secrets redacted.
pub fn effective_toml(config: &ApplianceConfig) -> Result<String, String> {
    let mut value = toml::Value::try_from(config).map_err(|e| format!("cannot serialize the configuration: {e}"))?;
    redact(&mut value, false);
    toml::to_string_pretty(&value).map_err(|e| format!("cannot print the configuration: {e}"))
}

/// Whether a key names a secret (its value is hidden, whatever its type).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "credential",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key == "key"
        || key.ends_with("_key")
}

/// Replaces secrets in `value`; `secret` says the enclosing key named one.
fn redact(value: &mut toml::Value, secret: bool) {
    match value {
        toml::Value::String(text) => {
            if secret {
                *text = REDACTED.to_owned();
            } else if let Some(hidden) = hide_url_password(text) {
                *text = hidden;
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                redact(item, secret);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                // A key names a secret for its own value; a table under it (`[[auth.tokens]]`)
                // is judged by its own keys, so `roles` next to `token` stays readable.
                let holds_tables = match item {
                    toml::Value::Table(_) => true,
                    toml::Value::Array(items) => items.iter().any(toml::Value::is_table),
                    _ => false,
                };
                let flag = if holds_tables {
                    secret
                } else {
                    secret || is_secret_key(key)
                };
                redact(item, flag);
            }
        }
        // Numbers, booleans and dates carry no secret unless their key says so.
        other if secret => *other = toml::Value::String(REDACTED.to_owned()),
        _ => {}
    }
}

/// `scheme://user:password@host/...` with the password hidden; `None` if there is none.
fn hide_url_password(text: &str) -> Option<String> {
    let scheme_end = text.find("://")?;
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    // A user alone may be a token (`https://TOKEN@host`): hide it too.
    let shown = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    Some(format!("{}{shown}{}", &text[..scheme_end + 3], &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_is_kept() {
        let mut config = ApplianceConfig::default();
        config.agent.remote_write_urls = vec![
            "http://user:hunter2@127.0.0.1:8428/api/v1/write".into(),
            "http://127.0.0.1:8428/api/v1/write".into(),
        ];
        config.storage.data_path = "/var/lib/strata-test".into();
        let text = effective_toml(&config).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("http://user:<redacted>@127.0.0.1:8428/api/v1/write"),
            "{text}"
        );
        assert!(text.contains("http://127.0.0.1:8428/api/v1/write"), "{text}");
        assert!(text.contains("/var/lib/strata-test"), "{text}");
        assert!(text.contains("[storage]"), "{text}");
        // What we print parses back as a configuration.
        let back = ApplianceConfig::from_toml_str(&text, std::path::Path::new("effective.toml")).unwrap();
        assert_eq!(back.storage.data_path, config.storage.data_path);
    }

    #[test]
    fn secret_keys_are_hidden_at_any_depth() {
        let mut value: toml::Value = toml::from_str(
            "[auth]\n[[auth.tokens]]\ntoken = \"s3cr3t-s3cr3t-s3cr3t\"\nroles = [\"read\"]\n\
             [[plugins]]\nname = \"p\"\nconfig = { api_key = \"abc\", password = 7, region = \"eu\" }\n\
             [http]\ntls_key_file = \"/etc/k.pem\"\n",
        )
        .unwrap();
        redact(&mut value, false);
        let text = toml::to_string(&value).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("abc") && !text.contains('7'),
            "{text}"
        );
        assert!(text.contains("eu") && text.contains("read"), "{text}");
        // A path to a key file is not the key.
        assert!(text.contains("/etc/k.pem"), "{text}");
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            hide_url_password("https://u:p@h:1/x?y=@z").as_deref(),
            Some("https://u:<redacted>@h:1/x?y=@z")
        );
        assert_eq!(hide_url_password("https://h/x?u=a@b"), None);
        assert_eq!(
            hide_url_password("https://token@h/x").as_deref(),
            Some("https://<redacted>@h/x")
        );
        assert_eq!(hide_url_password("not a url"), None);
    }
}
