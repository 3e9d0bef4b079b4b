//! Ingestion endpoints: Prometheus remote write (1.0 and 2.0) and VictoriaMetrics-style imports.
//!
//! | path (also under `/prometheus`) | body |
//! |---|---|
//! | `POST /api/v1/write`, `POST /api/v1/push` | remote write, snappy or zstd |
//! | `POST /api/v1/import` | JSON lines |
//! | `POST /api/v1/import/prometheus` | text exposition (`timestamp=` ms for lines without one) |
//!
//! All take `extra_label=name=value` (repeatable). Success is 204. A request is all-or-nothing:
//! 400 (bad input, message says what and where), 413 (too large), 415 (unsupported
//! Content-Type/Encoding) store nothing; 503 means storage could not take it now — retry.
//!
//! `?get_vm_proto_version=1` answers `1`: vmagent then sends zstd-compressed bodies with
//! `Content-Encoding: zstd`, which the decoder accepts (and falls back between codecs anyway).
//!
//! Decoding runs on tokio's blocking pool: it is CPU work, and `SampleSink::push` may block.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use strata_ingest::{
    IngestError, IngestFailure, IngestLimits, Ingestor, RejectReason, RequestMeta, SampleSink, SinkError, Tenant,
    WriteSummary, parse_extra_labels,
};

use crate::error::{ApiError, ErrorType};
use crate::read_body;

#[derive(Clone)]
struct IngestState {
    ingestor: Ingestor,
    /// Bounds requests being decoded at once (memory: each may hold a 32 MiB body).
    slots: Arc<tokio::sync::Semaphore>,
    queue_wait: Duration,
}

impl IngestState {
    fn new(sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(limits.concurrency())),
            queue_wait: Duration::from_millis(limits.max_queue_wait_ms),
            ingestor: Ingestor::new(sink, limits),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    RemoteWrite,
    ImportJson,
    ImportPrometheus,
}

/// Single-node ingestion routes, writing for tenant 0:0.
pub fn routes(sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Router {
    let state = IngestState::new(sink, limits);
    let mut router = Router::new();
    for prefix in ["", "/prometheus"] {
        router = router
            .route(
                &format!("{prefix}/api/v1/write"),
                post(remote_write).get(handshake_only),
            )
            .route(&format!("{prefix}/api/v1/push"), post(remote_write).get(handshake_only))
            .route(&format!("{prefix}/api/v1/import"), post(import_json))
            .route(&format!("{prefix}/api/v1/import/prometheus"), post(import_prometheus));
    }
    router.with_state(state)
}

/// Insert-role routes with the tenant in the path: `/insert/<accountID>[:<projectID>]/prometheus/…`
/// (`/api/v1/write`, `/api/v1/push`, `/api/v1/import`, `/api/v1/import/prometheus`, and the
/// bare `/insert/<t>/prometheus` that vmagent uses as a remote-write URL).
pub fn insert_routes(sink: Arc<dyn SampleSink>, limits: IngestLimits) -> Router {
    let state = IngestState::new(sink, limits);
    Router::new()
        .route(
            "/insert/{tenant}/prometheus",
            post(tenant_remote_write).get(handshake_only),
        )
        .route(
            "/insert/{tenant}/prometheus/api/v1/write",
            post(tenant_remote_write).get(handshake_only),
        )
        .route(
            "/insert/{tenant}/prometheus/api/v1/push",
            post(tenant_remote_write).get(handshake_only),
        )
        .route("/insert/{tenant}/prometheus/api/v1/import", post(tenant_import_json))
        .route(
            "/insert/{tenant}/prometheus/api/v1/import/prometheus",
            post(tenant_import_prometheus),
        )
        .with_state(state)
}

/// Parses a tenant path segment: `accountID` or `accountID:projectID`.
pub fn parse_tenant(segment: &str) -> Result<Tenant, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid tenant \"{segment}\": want accountID or accountID:projectID"
        ))
    };
    let (account, project) = segment.split_once(':').unwrap_or((segment, "0"));
    Ok(Tenant {
        account_id: account.parse().map_err(|_| bad())?,
        project_id: project.parse().map_err(|_| bad())?,
    })
}

async fn remote_write(State(st): State<IngestState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    handle(st, Kind::RemoteWrite, Tenant::default(), uri, headers, body).await
}

async fn import_json(State(st): State<IngestState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    handle(st, Kind::ImportJson, Tenant::default(), uri, headers, body).await
}

async fn import_prometheus(State(st): State<IngestState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    handle(st, Kind::ImportPrometheus, Tenant::default(), uri, headers, body).await
}

async fn tenant_remote_write(
    State(st): State<IngestState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match parse_tenant(&tenant) {
        Ok(t) => handle(st, Kind::RemoteWrite, t, uri, headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn tenant_import_json(
    State(st): State<IngestState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match parse_tenant(&tenant) {
        Ok(t) => handle(st, Kind::ImportJson, t, uri, headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn tenant_import_prometheus(
    State(st): State<IngestState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match parse_tenant(&tenant) {
        Ok(t) => handle(st, Kind::ImportPrometheus, t, uri, headers, body).await,
        Err(e) => e.into_response(),
    }
}

/// GET on a write path: only the vmagent handshake is meaningful.
async fn handshake_only(uri: Uri) -> Response {
    if query_values(&uri, "get_vm_proto_version").next().is_some() {
        return "1".into_response();
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::NotAcceptable,
        format!("use POST to write to {}", uri.path()),
    )
    .into_response()
}

async fn handle(st: IngestState, kind: Kind, tenant: Tenant, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    if matches!(kind, Kind::RemoteWrite) && query_values(&uri, "get_vm_proto_version").next().is_some() {
        return "1".into_response();
    }
    let result = async {
        let extra = parse_extra_labels(
            query_values(&uri, "extra_label")
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )
        .map_err(|e| Ok(IngestFailure::Input(e)))?;
        let timestamp = match query_values(&uri, "timestamp").next() {
            None => None,
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                Ok(IngestFailure::Input(IngestError::new(
                    RejectReason::BadParameter,
                    format!("timestamp=\"{t}\" is not an integer number of milliseconds"),
                )))
            })?),
        };
        let content_type = header_string(&headers, header::CONTENT_TYPE);
        let content_encoding = header_string(&headers, header::CONTENT_ENCODING);
        // Wait for a slot before reading the body, so waiting requests hold no body memory.
        let _slot = match tokio::time::timeout(st.queue_wait, st.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                metrics::counter!("strata_ingest_requests_throttled_total").increment(1);
                return Err(Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::Unavailable,
                    format!(
                        "too many concurrent ingestion requests (max_concurrent_requests={}); retry later",
                        st.ingestor.limits().concurrency()
                    ),
                )));
            }
        };
        let bytes = read_body(body).await.map_err(Err)?;
        let ingestor = st.ingestor.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let meta = RequestMeta {
                content_type: content_type.as_deref(),
                content_encoding: content_encoding.as_deref(),
                extra_labels: &extra,
            };
            match kind {
                Kind::RemoteWrite => ingestor.remote_write(tenant, &bytes, &meta),
                Kind::ImportJson => ingestor.import_json(tenant, &bytes, &meta),
                Kind::ImportPrometheus => {
                    let ts = timestamp.unwrap_or_else(strata_ingest::limits::now_ms);
                    ingestor.import_prometheus(tenant, &bytes, &meta, ts)
                }
            }
        })
        .await;
        match joined {
            Ok(r) => r.map_err(Ok),
            Err(join) => Err(Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorType::Internal,
                format!("ingestion task failed: {join}"),
            ))),
        }
    }
    .await;
    respond(kind, result)
}

/// `Err(Ok(failure))` is an ingestion failure, `Err(Err(api))` an HTTP-level one.
fn respond(kind: Kind, result: Result<WriteSummary, Result<IngestFailure, ApiError>>) -> Response {
    let (mut response, written) = match result {
        Ok(summary) => (StatusCode::NO_CONTENT.into_response(), summary),
        Err(err) => {
            let api = match err {
                Err(api) => api,
                Ok(IngestFailure::Input(e)) => {
                    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
                    ApiError::new(status, ErrorType::BadData, e.message)
                }
                Ok(IngestFailure::Sink(SinkError::Unavailable(m))) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::Unavailable,
                    format!("storage is unavailable, retry later: {m}"),
                ),
                Ok(IngestFailure::Sink(SinkError::Rejected(m))) => {
                    ApiError::bad_request(format!("storage rejected the data: {m}"))
                }
            };
            (api.into_response(), WriteSummary::default())
        }
    };
    if matches!(kind, Kind::RemoteWrite) {
        // Remote-write 2.0 requires these on every response; on an error nothing was written.
        let h = response.headers_mut();
        h.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            HeaderValue::from(written.samples),
        );
        h.insert(
            "X-Prometheus-Remote-Write-Histograms-Written",
            HeaderValue::from(written.histograms),
        );
        h.insert(
            "X-Prometheus-Remote-Write-Exemplars-Written",
            HeaderValue::from(written.exemplars),
        );
    }
    response
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The decoded values of query parameter `key`, in order (repeated keys allowed).
fn query_values<'u>(uri: &'u Uri, key: &'u str) -> impl Iterator<Item = String> + 'u {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Decodes `application/x-www-form-urlencoded` text; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "ingest_api_tests.rs"]
mod tests;
