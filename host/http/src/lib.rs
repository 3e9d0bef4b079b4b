//! The HTTP layer every role serves: routing, Prometheus-shaped errors, request body limits,
//! request metrics, `/health` and `/metrics`, and graceful shutdown.
//!
//! Other crates contribute routes as `axum::Router`s that [`ServerBuilder`] merges; the common
//! behaviour (limits, metrics, error shape for unknown paths) wraps all of them.

pub mod admin_api;
pub mod auth;
pub mod body;
pub mod error;
pub mod ingest_api;
pub mod limits;
pub mod local;
mod params;
pub mod query_api;
pub mod self_metrics;
pub mod storage_api;
pub mod tenant_limits;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub use error::{ApiError, ErrorType};
pub use self_metrics::{BuildInfo, MetricsHandle};

/// Settings of one HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// TLS, authentication and query concurrency of a listener. The default is plain HTTP, no
/// authentication, and the default query limits.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Serve HTTPS with this certificate (reloaded when the files change).
    pub tls: Option<tls::TlsOptions>,
    /// Tokens, roles and tenants; no tokens = authentication off.
    pub auth: auth::AuthOptions,
    /// Query concurrency and queue wait.
    pub limits: limits::LimitOptions,
}

impl Security {
    /// `https` when the listener serves TLS, else `http`: for log lines and self-scrapes.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Assembles the router of a role: the operational endpoints plus the routes other crates add.
pub struct ServerBuilder {
    router: Router,
    options: HttpOptions,
    security: Security,
}

impl ServerBuilder {
    /// Starts with `/health`, `/-/healthy`, `/-/ready` and `/metrics`.
    pub fn new(options: HttpOptions, metrics: MetricsHandle) -> Self {
        let router = Router::new()
            .route("/health", get(health))
            .route("/-/healthy", get(health))
            .route("/-/ready", get(health))
            .route("/metrics", get(render_metrics))
            .with_state(metrics);
        Self {
            router,
            options,
            security: Security::default(),
        }
    }

    /// Sets authentication and query limits for [`ServerBuilder::build`]; pass the same value to
    /// [`serve_secure`] for TLS.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Adds routes from another crate.
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    /// The finished router with limits, metrics and fallbacks applied.
    pub fn build(self) -> Router {
        let limit = self.options.max_request_body;
        let limiter = limits::QueryLimiter::new(&self.security.limits);
        // Layers run outside in: metrics, authentication (before anything costs a slot), query
        // slots, body limit, handler.
        let mut router = self
            .router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn(move |req, next| limit_body(limit, req, next)))
            .layer(middleware::from_fn(move |req, next| {
                limits::limit_queries(Arc::clone(&limiter), req, next)
            }));
        if let Some(authenticator) = auth::Authenticator::new(&self.security.auth) {
            router = router.layer(middleware::from_fn(move |req, next| {
                auth::authorize(Arc::clone(&authenticator), req, next)
            }));
        }
        router.layer(middleware::from_fn(record_request))
    }

    /// The options this server was built with.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }
}

async fn health() -> &'static str {
    "OK"
}

async fn render_metrics(State(metrics): State<MetricsHandle>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("unknown path {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::NotAcceptable,
        format!(
            "method {} is not allowed for {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Refuses a body over the limit: at once when Content-Length says so, and while streaming
/// otherwise (a chunked body is cut off at the limit, and the handler's read fails with 413).
async fn limit_body(limit: u64, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        metrics::counter!("strata_http_request_body_too_large_total").increment(1);
        return ApiError::payload_too_large(limit).into_response();
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    next.run(Request::from_parts(parts, Body::new(limited))).await
}

/// Reads a whole request body within the server's limit, mapping "too large" to 413 and a broken
/// connection to 400. Handlers use this instead of `axum::body::to_bytes` so both limits agree.
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let source = err.into_inner();
            if let Some(too_large) = source.downcast_ref::<http_body_util::LengthLimitError>() {
                metrics::counter!("strata_http_request_body_too_large_total").increment(1);
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorType::BadData,
                    format!("request body {too_large}"),
                ))
            } else {
                Err(ApiError::bad_request(format!("cannot read request body: {source}")))
            }
        }
    }
}

/// Counts requests by route and status and times them. The route is the matched pattern, so
/// the label set stays bounded whatever paths clients send.
async fn record_request(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics::counter!("strata_http_requests_total", "path" => path.clone(), "code" => code).increment(1);
    metrics::histogram!("strata_http_request_duration_seconds", "path" => path).record(started.elapsed().as_secs_f64());
    response
}

/// Binds `addr`, with an error that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on {addr}: {err}; is another process using it? Choose another address with --http-listen-addr"),
        )
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits up to `timeout` for
/// in-flight requests to finish before returning. Plain HTTP; see [`serve_secure`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_secure(listener, router, &Security::default(), timeout, shutdown).await
}

/// As [`serve`], with HTTPS when `security.tls` is set (a bad certificate or key fails here,
/// naming the file). Warns when a non-loopback address is served without TLS or tokens.
pub async fn serve_secure(
    listener: TcpListener,
    router: Router,
    security: &Security,
    timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    warn_if_exposed(local, security);
    match &security.tls {
        Some(options) => {
            let listener = tls::TlsListener::new(listener, options.clone())?;
            tracing::info!(addr = %local, cert = %options.cert_file.display(), "serving HTTPS");
            serve_on(listener, router, timeout, shutdown).await
        }
        None => serve_on(listener, router, timeout, shutdown).await,
    }
}

/// Logs what is missing when `addr` is reachable from other hosts.
fn warn_if_exposed(addr: SocketAddr, security: &Security) -> bool {
    if addr.ip().is_loopback() {
        return false;
    }
    let tls = security.tls.is_some();
    let auth = !security.auth.tokens.is_empty();
    if tls && auth {
        return false;
    }
    let missing = match (tls, auth) {
        (false, false) => {
            "without TLS and without authentication: anyone who can reach it can read, write and delete data"
        }
        (false, true) => "without TLS: tokens and data cross the network in clear text",
        _ => "without authentication: anyone who can reach it can read, write and delete data",
    };
    tracing::warn!(%addr, "listening on a non-loopback address {missing}; set http.tls_cert_file/tls_key_file and [[auth.tokens]] (docs/operations.md#security)");
    true
}

async fn serve_on<L>(
    listener: L,
    router: Router,
    timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router.into_make_service()).with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let mut task = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut task => return flatten(result),
        () = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(result) => flatten(result),
        Err(_) => {
            tracing::warn!(?timeout, "in-flight HTTP requests did not finish in time; closing them");
            task.abort();
            Ok(())
        }
    }
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    result.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(limit: u64) -> Router {
        let metrics = MetricsHandle::install(&BuildInfo {
            version: "test",
            role: "single".into(),
        });
        let echo = Router::new().route(
            "/echo",
            post(|body: Body| async move { read_body(body).await.map(|b| b.len().to_string()) }),
        );
        ServerBuilder::new(
            HttpOptions {
                max_request_body: limit,
                shutdown_timeout: Duration::from_secs(1),
            },
            metrics,
        )
        .merge(echo)
        .build()
    }

    async fn call(router: Router, request: Request) -> (StatusCode, String) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn secured(security: Security) -> Router {
        let metrics = MetricsHandle::install(&BuildInfo {
            version: "test",
            role: "single".into(),
        });
        // A query that waits until told, to hold a query slot.
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let held = std::sync::Arc::clone(&gate);
        let routes = Router::new()
            .route(
                "/api/v1/query",
                get(move || {
                    let held = std::sync::Arc::clone(&held);
                    async move {
                        held.notified().await;
                        "done"
                    }
                }),
            )
            .route("/api/v1/write", post(|| async { StatusCode::NO_CONTENT }));
        ServerBuilder::new(
            HttpOptions {
                max_request_body: 1024,
                shutdown_timeout: Duration::from_secs(1),
            },
            metrics,
        )
        .merge(routes)
        .security(security)
        .build()
    }

    #[tokio::test]
    async fn builder_applies_auth_to_every_route_but_probes() {
        let security = Security {
            auth: auth::AuthOptions {
                tokens: vec![auth::TokenRule {
                    token: "writer-0123456789abcdef".into(),
                    roles: vec![auth::Access::Write],
                    tenants: vec![auth::TenantPattern::parse("0:0").unwrap()],
                }],
                ..auth::AuthOptions::default()
            },
            ..Security::default()
        };
        let app = secured(security);
        let no_token = Request::post("/api/v1/write").body(Body::empty()).unwrap();
        let (status, body) = call(app.clone(), no_token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"errorType\":\"unauthorized\""), "{body}");
        let ok = Request::post("/api/v1/write")
            .header(header::AUTHORIZATION, "Bearer writer-0123456789abcdef")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(app.clone(), ok).await.0, StatusCode::NO_CONTENT);
        let wrong_role = Request::get("/api/v1/query")
            .header(header::AUTHORIZATION, "Bearer writer-0123456789abcdef")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(app.clone(), wrong_role).await.0, StatusCode::FORBIDDEN);
        // Unknown paths need credentials too (no probing of what exists).
        let unknown = Request::get("/nope").body(Body::empty()).unwrap();
        assert_eq!(call(app.clone(), unknown).await.0, StatusCode::UNAUTHORIZED);
        let health = Request::get("/health").body(Body::empty()).unwrap();
        assert_eq!(call(app, health).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn builder_limits_concurrent_queries() {
        let security = Security {
            limits: limits::LimitOptions {
                max_concurrent_queries: 1,
                query_queue_wait: Duration::from_millis(20),
                ..limits::LimitOptions::default()
            },
            ..Security::default()
        };
        let app = secured(security);
        let first = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/api/v1/query").body(Body::empty()).unwrap()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = app
            .clone()
            .oneshot(Request::get("/api/v1/query").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        // Writes and probes are not queries.
        let write = Request::post("/api/v1/write").body(Body::empty()).unwrap();
        assert_eq!(call(app.clone(), write).await.0, StatusCode::NO_CONTENT);
        first.abort();
    }

    #[test]
    fn exposure_warning_only_off_loopback_and_without_both_defences() {
        let open = Security::default();
        assert!(!warn_if_exposed("127.0.0.1:1".parse().unwrap(), &open));
        assert!(!warn_if_exposed("[::1]:1".parse().unwrap(), &open));
        assert!(warn_if_exposed("0.0.0.0:1".parse().unwrap(), &open));
        let mut both = Security {
            tls: Some(tls::TlsOptions::new("c.pem", "k.pem")),
            ..Security::default()
        };
        assert!(
            warn_if_exposed("10.0.0.1:1".parse().unwrap(), &both),
            "TLS without tokens"
        );
        both.auth.tokens.push(auth::TokenRule {
            token: "t".repeat(20),
            roles: vec![auth::Access::Read],
            tenants: Vec::new(),
        });
        assert!(!warn_if_exposed("10.0.0.1:1".parse().unwrap(), &both));
    }

    #[tokio::test]
    async fn unknown_path_is_prometheus_shaped_404() {
        let (status, body) = call(app(1024), Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"errorType\":\"not_found\""), "{body}");
        assert!(body.contains("/nope"), "{body}");
    }

    #[tokio::test]
    async fn wrong_method_is_405_with_shape() {
        let (status, body) = call(app(1024), Request::post("/health").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body.contains("\"status\":\"error\""), "{body}");
    }

    #[tokio::test]
    async fn body_limit_applies_with_and_without_content_length() {
        let small = Request::post("/echo").body(Body::from(vec![0u8; 100])).unwrap();
        assert_eq!(call(app(1024), small).await, (StatusCode::OK, "100".into()));

        let declared = Request::post("/echo")
            .header(header::CONTENT_LENGTH, "5000")
            .body(Body::from(vec![0u8; 5000]))
            .unwrap();
        let (status, body) = call(app(1024), declared).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("max_request_body"), "{body}");

        // Without a Content-Length header (as with a chunked upload) the body is cut off
        // while it is read.
        let undeclared = Request::post("/echo").body(Body::from(vec![1u8; 1600])).unwrap();
        assert!(!undeclared.headers().contains_key(header::CONTENT_LENGTH));
        let (status, body) = call(app(1024), undeclared).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    }
}
