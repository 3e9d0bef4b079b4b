//! Read and admin APIs that work on the storage directly rather than through PromQL:
//! `/api/v1/export` (VictoriaMetrics' JSON lines, streamed), `/api/v1/status/tsdb`
//! (cardinality) and `/api/v1/admin/tsdb/delete_series`. All are also served under
//! `/prometheus`.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_query::FunctionRegistry;
use strata_storage::index::TagFilter;
use strata_storage::{Storage, StorageError, Tenant, TimeRange};
use tokio::sync::mpsc;

use crate::admin_api::storage_error;
use crate::body::ChannelBody;
use crate::error::ApiError;
use crate::local::to_filters;
use crate::params::{Params, invalid_param, match_selectors, now_ms, optional_time};

/// Settings of these endpoints.
#[derive(Clone, Debug)]
pub struct StorageApiOptions {
    /// The tenant whose data they serve (0:0 on a single node).
    pub tenant: Tenant,
    /// Most series one export or delete may match.
    pub max_series: usize,
}

#[derive(Clone)]
struct ApiState {
    storage: Arc<Storage>,
    options: StorageApiOptions,
}

/// The routes.
pub fn routes(storage: Arc<Storage>, options: StorageApiOptions) -> Router {
    let mut router = Router::new();
    for prefix in ["", "/prometheus"] {
        router = router
            .route(&format!("{prefix}/api/v1/export"), get(export).post(export))
            .route(&format!("{prefix}/api/v1/status/tsdb"), get(tsdb_status))
            .route(
                &format!("{prefix}/api/v1/admin/tsdb/delete_series"),
                get(delete_series).post(delete_series).put(delete_series),
            );
    }
    router.with_state(ApiState { storage, options })
}

/// Selectors only need the parser; a shared built-in registry avoids rebuilding it per request.
fn registry() -> &'static FunctionRegistry {
    static REGISTRY: OnceLock<FunctionRegistry> = OnceLock::new();
    REGISTRY.get_or_init(FunctionRegistry::with_builtins)
}

fn filter_groups(p: &Params) -> Result<Vec<Vec<TagFilter>>, ApiError> {
    let groups = match_selectors(p, |m| strata_query::parse(m, registry()))?;
    if groups.is_empty() {
        return Err(ApiError::bad_request(
            "missing match[] parameter: give at least one series selector",
        ));
    }
    Ok(groups.iter().map(|g| to_filters(g)).collect())
}

/// Export output is sent in chunks of about this size.
const EXPORT_CHUNK: usize = 64 * 1024;

/// `/api/v1/export?match[]=...&start=...&end=...`: one JSON line per series,
/// `{"metric":{...},"values":[...],"timestamps":[...]}`, streamed while storage is read.
async fn export(State(state): State<ApiState>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let groups = filter_groups(&p)?;
    let end = optional_time(&p, "end", now_ms())?;
    let start = optional_time(&p, "start", 0)?;
    if start > end {
        return Err(invalid_param("end", "end is before start"));
    }
    let tr = TimeRange { min: start, max: end };

    // The first message is the outcome of the first chunk, so an error found before any
    // output (a bad regex, too many series) still gets its status code.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, StorageError>>(4);
    let ApiState { storage, options } = state;
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK);
        let mut seen: HashSet<Vec<(String, String)>> = HashSet::new();
        let multiple = groups.len() > 1;
        let result = groups.iter().try_for_each(|filters| {
            storage.search(
                options.tenant,
                filters,
                tr,
                options.max_series,
                &mut |name, timestamps, values| {
                    // Series matching several selectors are exported once.
                    if multiple && !seen.insert(name.labels.clone()) {
                        return Ok(());
                    }
                    let labels = export_order(&name.labels);
                    strata_ingest::jsonl::encode_export_line(&mut chunk, labels, timestamps, values);
                    if chunk.len() >= EXPORT_CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK));
                        tx.blocking_send(Ok(Bytes::from(full)))
                            .map_err(|_| StorageError::Unavailable("client went away".into()))?;
                    }
                    Ok(())
                },
            )
        });
        let last = match result {
            Ok(()) => Ok(Bytes::from(chunk)),
            Err(err) => Err(err),
        };
        let _ = tx.blocking_send(last);
    });

    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(err)) => return Err(storage_error(err)),
        None => return Err(ApiError::internal("export stopped unexpectedly")),
    };
    let body = Body::new(ChannelBody::new(first, rx));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/stream+json"),
    );
    Ok(response)
}

/// `__name__` first, then the other labels by name, as VictoriaMetrics writes export lines.
fn export_order(labels: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    let name = labels.iter().filter(|(n, _)| n == "__name__");
    let rest = labels.iter().filter(|(n, _)| n != "__name__");
    name.chain(rest).map(|(n, v)| (n.as_str(), v.as_str()))
}

/// `/api/v1/status/tsdb?topN=10&date=YYYY-MM-DD&focusLabel=...`: VictoriaMetrics' shape.
async fn tsdb_status(State(state): State<ApiState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, Body::empty()).await?;
    let top_n = match p.get("topN") {
        None | Some("") => 10,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid_param("topN", "must be an integer from 1 to 1000"))?,
    };
    let date_ms = match p.get("date") {
        None | Some("") => now_ms(),
        Some(v) => parse_date(v).ok_or_else(|| invalid_param("date", "expected YYYY-MM-DD"))?,
    };
    let focus = p.get("focusLabel").filter(|v| !v.is_empty()).map(str::to_owned);
    let ApiState { storage, options } = state;
    let status =
        tokio::task::spawn_blocking(move || storage.tsdb_status(options.tenant, date_ms, focus.as_deref(), top_n))
            .await
            .map_err(|err| ApiError::internal(format!("status task failed: {err}")))?
            .map_err(storage_error)?;
    Ok(axum::Json(serde_json::json!({"status": "success", "data": status})).into_response())
}

/// `YYYY-MM-DD` to the millisecond of its start (UTC).
fn parse_date(v: &str) -> Option<i64> {
    crate::params::parse_time("date", &format!("{v}T00:00:00Z")).ok()
}

/// `/api/v1/admin/tsdb/delete_series?match[]=...`: the series vanish from queries at once;
/// their data is removed by later merges. 204 on success, as Prometheus.
async fn delete_series(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let groups = filter_groups(&p)?;
    let ApiState { storage, options } = state;
    let deleted = tokio::task::spawn_blocking(move || {
        groups.iter().try_fold(0u64, |sum, filters| {
            Ok(sum + storage.delete_series(options.tenant, filters)?)
        })
    })
    .await
    .map_err(|err| ApiError::internal(format!("delete task failed: {err}")))?
    .map_err(storage_error)?;
    tracing::info!(deleted, "series deleted through the admin API");
    metrics::counter!("strata_series_deleted_total").increment(deleted);
    Ok(StatusCode::NO_CONTENT.into_response())
}
