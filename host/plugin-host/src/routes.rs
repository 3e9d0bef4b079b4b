//! HTTP: ingestion plugins on their paths, and the plugin admin API.
//!
//! An ingestion request runs: read body (server limit) → decompress (`gzip` or identity,
//! bounded by `max_decompressed_bytes`) → the plugin parses in a plugin instance on a blocking
//! thread → [`IngestLimits::validate`] → [`SampleSink::push`]. All-or-nothing, like the
//! built-in endpoints; success is `204 No Content` (what Influx clients expect).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use strata_ingest::{IngestError, IngestLimits, MetricBatch, SampleSink, SinkError, Tenant};

use crate::error::{CallFailure, PluginError};
use crate::{PluginHost, PluginStatus};

/// The `errorType` values Prometheus uses, as far as plugins need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is malformed (400, 413, 415).
    BadData,
    /// Overloaded or unavailable (503).
    Unavailable,
    /// The call took too long (503).
    Timeout,
    /// Our fault, or the plugin's (500).
    Internal,
}

/// An error response in Prometheus' shape: `{"status":"error","errorType":...,"error":...}`
/// (the same shape strata-http uses; kept here so this crate does not depend on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Prometheus error type.
    pub error_type: ErrorType,
    /// Message for the client.
    pub message: String,
}

impl ApiError {
    /// An error with a status, type and message.
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::BadData, message)
    }
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorType::Unavailable, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_type = match self.error_type {
            ErrorType::BadData => "bad_data",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
        };
        let body = serde_json::json!({ "status": "error", "errorType": error_type, "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Reads the whole body; the server's body limit (a `Limited` body) surfaces as 413.
async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let source = err.into_inner();
            if source.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorType::BadData,
                    format!("request body {source}"),
                ))
            } else {
                Err(ApiError::bad_request(format!("cannot read request body: {source}")))
            }
        }
    }
}

#[derive(Clone)]
struct IngestState {
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Routes for every loaded ingestion plugin's HTTP paths. The plugin is looked up by name on
/// every request, so a reload takes effect without rebuilding the router; paths are fixed when
/// this is called (a reload that changes a plugin's paths needs a restart to remount them).
pub fn ingest_routes(host: Arc<PluginHost>, sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Router {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.concurrency()));
    let mut router = Router::new();
    for (plugin, path) in host.http_mounts() {
        let state = IngestState {
            host: host.clone(),
            plugin,
            sink: sink.clone(),
            limits: limits.clone(),
            slots: slots.clone(),
        };
        router = router.route(&path, post(ingest).with_state(state));
    }
    router
}

/// Insert-role routes: every ingestion mount again under `/insert/{tenant}/{plugin}{path}`
/// (e.g. `/insert/0/influx/write`, as VictoriaMetrics' cluster), and mounts under `/api/v1/`
/// also under `/insert/{tenant}/prometheus{path}` (e.g. `/insert/0/prometheus/api/v1/import/csv`).
/// The tenant is `accountID` or `accountID:projectID`.
pub fn tenant_ingest_routes(host: Arc<PluginHost>, sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Router {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.concurrency()));
    let mut router = Router::new();
    for (plugin, path) in host.http_mounts() {
        let mut paths = vec![format!("/insert/{{tenant}}/{plugin}{path}")];
        if path.starts_with("/api/v1/") {
            paths.push(format!("/insert/{{tenant}}/prometheus{path}"));
        }
        let state = IngestState {
            host: host.clone(),
            plugin,
            sink: sink.clone(),
            limits: limits.clone(),
            slots: slots.clone(),
        };
        for p in paths {
            router = router.route(&p, post(tenant_ingest).with_state(state.clone()));
        }
    }
    router
}

/// Parses a tenant path segment: `accountID` or `accountID:projectID`.
pub fn parse_tenant(segment: &str) -> Result<Tenant, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid tenant {segment:?}: want accountID or accountID:projectID"
        ))
    };
    let (account, project) = segment.split_once(':').unwrap_or((segment, "0"));
    Ok(Tenant {
        account_id: account.parse().map_err(|_| bad())?,
        project_id: project.parse().map_err(|_| bad())?,
    })
}

/// `GET /api/v1/plugins` (the listing) and `POST /api/v1/plugins/reload`.
pub fn admin_routes(host: Arc<PluginHost>) -> Router {
    Router::new()
        .route("/api/v1/plugins", get(list))
        .route("/api/v1/plugins/reload", post(reload))
        .with_state(host)
}

async fn list(State(host): State<Arc<PluginHost>>) -> Response {
    let body: Vec<PluginStatus> = host.list();
    axum::Json(serde_json::json!({ "status": "success", "data": body })).into_response()
}

async fn reload(State(host): State<Arc<PluginHost>>) -> Response {
    let results = match tokio::task::spawn_blocking(move || host.reload()).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(format!("reload task failed: {e}")).into_response(),
    };
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    let reloaded: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.as_str())
        .collect();
    if failed.is_empty() {
        axum::Json(serde_json::json!({ "status": "success", "data": { "reloaded": reloaded } })).into_response()
    } else {
        ApiError::bad_request(format!(
            "kept the previous version of refused plugins: {}",
            failed.join("; ")
        ))
        .into_response()
    }
}

async fn ingest(
    State(st): State<IngestState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest_inner(st, Tenant::default(), params, headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn tenant_ingest(
    State(st): State<IngestState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match parse_tenant(&tenant) {
        Ok(tenant) => ingest_inner(st, tenant, params, headers, body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn ingest_inner(
    st: IngestState,
    tenant: Tenant,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let Some(plugin) = st.host.ingest_plugin(&st.plugin) else {
        return Err(ApiError::unavailable(format!("plugin {} is not loaded", st.plugin)));
    };
    let _slot = st
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let body = read_body(body).await?;
    let limits = st.limits.clone();
    let sink = st.sink.clone();
    let joined = tokio::task::spawn_blocking(move || -> Result<usize, ApiError> {
        let raw = decompress(&body, encoding.as_deref(), limits.max_decompressed_bytes)?;
        let now = strata_ingest::limits::now_ms();
        let mut batch = MetricBatch::new();
        plugin
            .parse_into(&params, &raw, now, &mut batch)
            .map_err(|e| plugin_error(&e))?;
        limits
            .validate(&mut batch, now)
            .map_err(|e| input_error(plugin.name(), &e))?;
        if batch.is_empty() {
            return Ok(0);
        }
        sink.push(tenant, &batch).map_err(|e| match e {
            SinkError::Unavailable(m) => ApiError::unavailable(m),
            SinkError::Rejected(m) => ApiError::bad_request(m),
        })?;
        Ok(batch.sample_count())
    })
    .await;
    let samples = joined.map_err(|e| ApiError::internal(format!("plugin task failed: {e}")))??;
    metrics::counter!("strata_rows_inserted_total", "type" => format!("plugin_{}", st.plugin))
        .increment(samples as u64);
    Ok(())
}

fn decompress(body: &[u8], encoding: Option<&str>, limit: usize) -> Result<Vec<u8>, ApiError> {
    match encoding.map(str::trim) {
        None | Some("" | "identity") => {
            if body.len() > limit {
                return Err(too_large(limit));
            }
            Ok(body.to_vec())
        }
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            // Read one byte past the limit to tell "exactly at" from "over".
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("cannot gunzip the body: {e}")))?;
            if out.len() > limit {
                return Err(too_large(limit));
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::BadData,
            format!("unsupported Content-Encoding {other:?}; use gzip or identity"),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorType::BadData,
        format!("body decompresses to more than max_decompressed_bytes={limit}"),
    )
}

fn input_error(plugin: &str, e: &IngestError) -> ApiError {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, ErrorType::BadData, format!("plugin {plugin}: {}", e.message))
}

/// Bad input is the client's (400); a failing plugin is ours (500), a slow one 503.
pub fn plugin_error(e: &PluginError) -> ApiError {
    match e {
        PluginError::Parse { .. } => ApiError::bad_request(e.to_string()),
        PluginError::Call {
            failure: CallFailure::Timeout { .. },
            ..
        } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout, e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}
