//! Token authentication and authorization, applied by [`crate::ServerBuilder`] to every route.
//!
//! Each request is classified by its path into an [`Access`] kind (open, read, write, admin)
//! and a tenant (from `/insert/<t>/`, `/select/<t>/`, `/delete/<t>/`; every other path is
//! tenant `0:0`). Then the credentials are checked:
//!
//! - `Authorization: Bearer <token>`, or
//! - `Authorization: Basic base64(user:password)` where the password is the token (the user name
//!   is ignored), or the user name is the token and the password is empty (for clients that
//!   only take `https://TOKEN@host/` URLs).
//!
//! Missing or unknown credentials give 401 with `WWW-Authenticate`; a known token without the
//! role or the tenant gives 403. Tokens are kept as SHA-256 digests and compared in constant
//! time against every configured token, so neither the content nor the length of a token leaks
//! through response timing.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::error::ApiError;
use crate::ingest_api::parse_tenant;

/// What a request does, which decides the role it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health probes (and `/metrics` unless protected): no credentials needed.
    Open,
    /// Queries, metadata, export, status, UI.
    Read,
    /// Ingestion.
    Write,
    /// Deletion, snapshots, merges, flushes, reloads, configuration.
    Admin,
}

impl Access {
    /// The role name an operator grants for this kind.
    pub const fn role_name(self) -> &'static str {
        match self {
            Access::Open => "none",
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Access::Open => 0,
            Access::Read => 1,
            Access::Write => 2,
            Access::Admin => 4,
        }
    }
}

/// A tenant a token may use: an account id or any, and a project id or any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantPattern {
    /// `None` = every account (the pattern `*`).
    pub account: Option<u32>,
    /// `None` = every project of the account.
    pub project: Option<u32>,
}

impl TenantPattern {
    /// Parses `*`, `A` (= `A:0`), `A:P` or `A:*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self {
                account: None,
                project: None,
            });
        }
        let bad = || format!("invalid tenant pattern {text:?}; want \"*\", \"A\", \"A:P\" or \"A:*\"");
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u32>().map_err(|_| bad())
        };
        let (account, project) = text.split_once(':').unwrap_or((text, "0"));
        Ok(Self {
            account: Some(number(account)?),
            project: if project == "*" { None } else { Some(number(project)?) },
        })
    }

    /// Whether `account:project` is covered.
    pub fn matches(&self, account: u32, project: u32) -> bool {
        self.account.is_none_or(|a| a == account) && self.project.is_none_or(|p| p == project)
    }
}

/// One accepted token.
#[derive(Clone, Debug)]
pub struct TokenRule {
    /// The secret.
    pub token: String,
    /// The kinds of requests it may make ([`Access::Read`], [`Access::Write`], [`Access::Admin`]).
    pub roles: Vec<Access>,
    /// The tenants it may use.
    pub tenants: Vec<TenantPattern>,
}

/// Authentication settings of a listener.
#[derive(Clone, Debug, Default)]
pub struct AuthOptions {
    /// Accepted tokens; empty = authentication off.
    pub tokens: Vec<TokenRule>,
    /// `/metrics` needs the read role.
    pub protect_metrics: bool,
    /// Further paths that are ingestion (plugin mounts whose last segment is not `write`,
    /// `push`, `import`, `put` or `ingest`).
    pub write_paths: Vec<String>,
}

struct Entry {
    digest: [u8; 32],
    roles: u8,
    tenants: Vec<TenantPattern>,
}

/// Checks requests against the configured tokens.
pub struct Authenticator {
    entries: Vec<Entry>,
    protect_metrics: bool,
    write_paths: Vec<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print digests: they are as good as the tokens for an offline guess.
        f.debug_struct("Authenticator")
            .field("tokens", &self.entries.len())
            .field("protect_metrics", &self.protect_metrics)
            .finish()
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equality without an early exit, so the time does not depend on where the digests differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Authenticator {
    /// `None` when no token is configured (authentication off).
    pub fn new(options: &AuthOptions) -> Option<Arc<Self>> {
        if options.tokens.is_empty() {
            return None;
        }
        let entries = options
            .tokens
            .iter()
            .map(|rule| Entry {
                digest: digest(rule.token.as_bytes()),
                roles: rule.roles.iter().fold(0, |acc, r| acc | r.bit()),
                tenants: rule.tenants.clone(),
            })
            .collect();
        Some(Arc::new(Self {
            entries,
            protect_metrics: options.protect_metrics,
            write_paths: options.write_paths.clone(),
        }))
    }

    /// The access kind of `path`.
    pub fn classify(&self, path: &str) -> Access {
        if self.write_paths.iter().any(|p| p == path) {
            return Access::Write;
        }
        classify(path, self.protect_metrics)
    }

    /// Decides one request: `Ok` to let it through, or the 400/401/403 to answer.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let access = self.classify(path);
        if access == Access::Open {
            return Ok(());
        }
        let (account, project) = match path_tenant(path) {
            Some(segment) => {
                let tenant = parse_tenant(&percent_decode(segment))?;
                (tenant.account_id, tenant.project_id)
            }
            None => (0, 0),
        };
        let Some(secret) = credentials(headers) else {
            fail("missing");
            return Err(ApiError::unauthorized(
                "authentication required: send `Authorization: Bearer <token>` (or Basic with the token as password)",
            ));
        };
        let presented = digest(secret.as_bytes());
        let mut found = None;
        // Every entry is compared, whether or not an earlier one matched.
        for (i, entry) in self.entries.iter().enumerate() {
            if same_digest(&presented, &entry.digest) {
                found = Some(i);
            }
        }
        let Some(entry) = found.map(|i| &self.entries[i]) else {
            fail("invalid");
            return Err(ApiError::unauthorized("invalid token"));
        };
        if entry.roles & access.bit() == 0 {
            fail("role");
            return Err(ApiError::forbidden(format!(
                "this token lacks the `{}` role needed for {path}",
                access.role_name()
            )));
        }
        if !entry.tenants.iter().any(|t| t.matches(account, project)) {
            fail("tenant");
            return Err(ApiError::forbidden(format!(
                "this token may not use tenant {account}:{project}"
            )));
        }
        Ok(())
    }
}

fn fail(reason: &'static str) {
    metrics::counter!("strata_http_auth_failures_total", "reason" => reason).increment(1);
}

/// The token a request presents, if any.
fn credentials(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        let token = if password.is_empty() { user } else { password };
        return (!token.is_empty()).then(|| token.to_owned());
    }
    None
}

/// The raw tenant segment of a cluster path (`/insert/<t>/...`, `/select/<t>/...`,
/// `/delete/<t>/...`).
fn path_tenant(path: &str) -> Option<&str> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let first = segments.next()?;
    if matches!(first, "insert" | "select" | "delete") {
        segments.next()
    } else {
        None
    }
}

/// Decodes `%XX` as the router does for path parameters, so the tenant checked here is the
/// tenant the handler uses. Invalid escapes stay as they are (and then fail tenant parsing).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The access kind of a path (without plugin-specific write paths).
///
/// Order matters: admin rules come first so that a path that also looks like ingestion or a
/// query (e.g. `/select/0/prometheus/api/v1/admin/...`) needs admin.
pub fn classify(path: &str, protect_metrics: bool) -> Access {
    match path {
        "/health" | "/-/healthy" | "/-/ready" => return Access::Open,
        "/metrics" if !protect_metrics => return Access::Open,
        _ => {}
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let first = segments.first().copied().unwrap_or("");
    let last = segments.last().copied().unwrap_or("");
    let admin = segments.contains(&"admin")
        || matches!(first, "snapshot" | "internal" | "delete" | "config")
        || path.ends_with("/-/reload")
        || path.ends_with("/plugins/reload")
        || path.ends_with("/status/config")
        || last.starts_with("force_");
    if admin {
        return Access::Admin;
    }
    match first {
        "insert" => return Access::Write,
        "select" | "ui" => return Access::Read,
        _ => {}
    }
    if path.contains("/api/v1/import") || matches!(last, "write" | "push" | "import" | "put" | "ingest") {
        return Access::Write;
    }
    Access::Read
}

/// The middleware: answers 400/401/403 or passes the request on.
pub(crate) async fn authorize(auth: Arc<Authenticator>, request: Request, next: Next) -> Response {
    match auth.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    const W: &str = "writer-0123456789abcdef";
    const R: &str = "reader-0123456789abcdef";
    const A: &str = "admin-0123456789abcdef";

    fn auth() -> Arc<Authenticator> {
        let t = |s: &str| TenantPattern::parse(s).unwrap();
        Authenticator::new(&AuthOptions {
            tokens: vec![
                TokenRule {
                    token: W.into(),
                    roles: vec![Access::Write],
                    tenants: vec![t("0:0"), t("42:*")],
                },
                TokenRule {
                    token: R.into(),
                    roles: vec![Access::Read],
                    tenants: vec![t("42:7")],
                },
                TokenRule {
                    token: A.into(),
                    roles: vec![Access::Admin, Access::Read],
                    tenants: vec![t("*")],
                },
            ],
            protect_metrics: false,
            write_paths: vec!["/custom/mount".into()],
        })
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {b64}")).unwrap(),
        );
        h
    }

    fn status(path: &str, headers: &HeaderMap) -> StatusCode {
        match auth().check(path, headers) {
            Ok(()) => StatusCode::OK,
            Err(e) => e.status,
        }
    }

    #[test]
    fn classification() {
        let cases = [
            ("/health", Access::Open),
            ("/metrics", Access::Open),
            ("/api/v1/write", Access::Write),
            ("/prometheus/api/v1/push", Access::Write),
            ("/api/v1/import/prometheus", Access::Write),
            ("/insert/42:1/prometheus", Access::Write),
            ("/influx/write", Access::Write),
            ("/api/v1/query", Access::Read),
            ("/api/v1/label/job/values", Access::Read),
            ("/api/v1/export", Access::Read),
            ("/select/0/prometheus/api/v1/query_range", Access::Read),
            ("/select/0/prometheus/api/v1/write", Access::Read),
            ("/select/0/prometheus/api/v1/admin/tsdb/delete_series", Access::Admin),
            ("/api/v1/admin/tsdb/delete_series", Access::Admin),
            ("/delete/0/prometheus/api/v1/admin/tsdb/delete_series", Access::Admin),
            ("/snapshot/create", Access::Admin),
            ("/internal/force_merge", Access::Admin),
            ("/-/reload", Access::Admin),
            ("/api/v1/plugins/reload", Access::Admin),
            ("/api/v1/plugins", Access::Read),
            ("/", Access::Read),
            ("/ui/write", Access::Read),
            ("/nope", Access::Read),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path, false), want, "{path}");
        }
        assert_eq!(classify("/metrics", true), Access::Read);
        assert_eq!(auth().classify("/custom/mount"), Access::Write);
    }

    #[test]
    fn missing_and_unknown_credentials_are_401() {
        assert_eq!(status("/api/v1/query", &HeaderMap::new()), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status("/api/v1/query", &bearer("nope-0123456789abcdef")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status("/api/v1/query", &bearer(&format!("{W}x"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status("/health", &HeaderMap::new()), StatusCode::OK);
        assert_eq!(status("/metrics", &HeaderMap::new()), StatusCode::OK);
    }

    #[test]
    fn roles_decide_the_kind() {
        assert_eq!(status("/api/v1/write", &bearer(W)), StatusCode::OK);
        assert_eq!(status("/api/v1/query", &bearer(W)), StatusCode::FORBIDDEN);
        assert_eq!(
            status("/api/v1/admin/tsdb/delete_series", &bearer(W)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status("/api/v1/admin/tsdb/delete_series", &bearer(A)), StatusCode::OK);
        assert_eq!(status("/api/v1/write", &bearer(A)), StatusCode::FORBIDDEN);
    }

    #[test]
    fn tenants_are_enforced_on_cluster_paths() {
        assert_eq!(
            status("/insert/42:9/prometheus/api/v1/write", &bearer(W)),
            StatusCode::OK
        );
        assert_eq!(status("/insert/42/prometheus/api/v1/write", &bearer(W)), StatusCode::OK);
        assert_eq!(status("/insert/0/prometheus/api/v1/write", &bearer(W)), StatusCode::OK);
        assert_eq!(
            status("/insert/43:0/prometheus/api/v1/write", &bearer(W)),
            StatusCode::FORBIDDEN
        );
        // The router decodes %3A into ':' for the handler; the check sees the same tenant.
        assert_eq!(
            status("/insert/43%3A0/prometheus/api/v1/write", &bearer(W)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status("/insert/42%3A1/prometheus/api/v1/write", &bearer(W)),
            StatusCode::OK
        );
        assert_eq!(
            status("/select/42:7/prometheus/api/v1/query", &bearer(R)),
            StatusCode::OK
        );
        assert_eq!(
            status("/select/42:8/prometheus/api/v1/query", &bearer(R)),
            StatusCode::FORBIDDEN
        );
        // The single role's own paths are tenant 0:0, which this reader may not use.
        assert_eq!(status("/api/v1/query", &bearer(R)), StatusCode::FORBIDDEN);
        assert_eq!(
            status("/select/bad/prometheus/api/v1/query", &bearer(R)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status("/select/7:1/prometheus/api/v1/query", &bearer(A)),
            StatusCode::OK
        );
    }

    #[test]
    fn basic_auth_forms() {
        assert_eq!(status("/api/v1/write", &basic(&format!("anyone:{W}"))), StatusCode::OK);
        assert_eq!(status("/api/v1/write", &basic(&format!("{W}:"))), StatusCode::OK);
        assert_eq!(status("/api/v1/write", &basic(W)), StatusCode::OK);
        assert_eq!(
            status("/api/v1/write", &basic(&format!("{W}:wrong"))),
            StatusCode::UNAUTHORIZED
        );
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(status("/api/v1/write", &garbage), StatusCode::UNAUTHORIZED);
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {W}")).unwrap(),
        );
        assert_eq!(status("/api/v1/write", &lower), StatusCode::OK);
    }

    #[test]
    fn tenant_patterns() {
        let p = TenantPattern::parse("42:*").unwrap();
        assert!(p.matches(42, 0) && p.matches(42, 99) && !p.matches(41, 0));
        assert!(TenantPattern::parse("*").unwrap().matches(7, 7));
        assert!(TenantPattern::parse("42").unwrap().matches(42, 0));
        assert!(!TenantPattern::parse("42").unwrap().matches(42, 1));
        for bad in ["", "x", "+1", "1:", "*:1", "99999999999"] {
            assert!(TenantPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_tokens_means_off() {
        assert!(Authenticator::new(&AuthOptions::default()).is_none());
    }
}
