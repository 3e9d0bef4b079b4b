//! The select role's HTTP routes: `/select/<accountID>[:<projectID>]/prometheus/api/v1/...`
//! (query, query_range, series, labels, label values, ...), answered by the same query API
//! handlers as single node (`strata_http::query_api`) over a per-request fan-out source.
//!
//! Per request: parse the tenant, make a [`ClusterSource`] with a fresh status, run the query
//! API router on the path after `/prometheus`, then look at the status: a partial result gets
//! `"isPartial":true` (or 503 when partial responses are denied, by configuration or by
//! `deny_partial_response=1`), and a read no node answered becomes 503 instead of 422.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use strata_http::ApiError;
use strata_http::ingest_api::parse_tenant;
use strata_http::query_api::{self, QueryApiOptions};
use tower::ServiceExt;

use crate::select::SelectCluster;

/// Settings of the select routes.
#[derive(Clone, Debug, Default)]
pub struct SelectApiOptions {
    /// The query engine's options.
    pub query: QueryApiOptions,
    /// Answer 503 rather than a partial result.
    pub deny_partial_response: bool,
}

#[derive(Clone)]
struct SelectState {
    cluster: Arc<SelectCluster>,
    options: SelectApiOptions,
}

/// The `/select/{tenant}/prometheus/...` routes over `cluster`.
pub fn routes(cluster: Arc<SelectCluster>, options: SelectApiOptions) -> Router {
    Router::new()
        .route("/select/{tenant}/prometheus/{*rest}", any(select))
        .route(
            "/delete/{tenant}/prometheus/api/v1/admin/tsdb/delete_series",
            get(delete_series).post(delete_series),
        )
        .with_state(SelectState { cluster, options })
}

/// Largest response body the select node buffers to set `isPartial`.
const MAX_RESPONSE: usize = 1 << 30;
const FULL_PREFIX: &[u8] = b"{\"status\":\"success\",\"isPartial\":false";
const PARTIAL_PREFIX: &[u8] = b"{\"status\":\"success\",\"isPartial\":true";

fn denies_partial(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "deny_partial_response=1" | "deny_partial_response=true"))
    })
}

async fn select(
    State(st): State<SelectState>,
    Path((tenant, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant(&tenant)?;
    let deny = st.options.deny_partial_response || denies_partial(req.uri());
    let source = st.cluster.source(tenant);
    let status = source.status();
    let router = query_api::routes(Arc::new(source), st.options.query.clone());

    let (parts, body) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    // A fresh request, not the old parts: their extensions carry this route's path parameters,
    // which the inner router's `Path` extractors would see as their own.
    let mut inner = Request::builder()
        .method(parts.method)
        .uri(path_and_query)
        .version(parts.version)
        .body(body)
        .map_err(|_| ApiError::bad_request("invalid request path"))?;
    *inner.headers_mut() = parts.headers;
    let response = router.oneshot(inner).await.unwrap_or_else(|never| match never {});

    if status.is_unavailable() {
        return Err(ApiError::unavailable("no storage node answered; retry later"));
    }
    if !status.is_partial() {
        return Ok(response);
    }
    if deny {
        return Err(ApiError::unavailable(
            "some storage nodes did not answer and partial responses are denied",
        ));
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_RESPONSE)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the query response: {e}")))?;
    let bytes = match bytes.strip_prefix(FULL_PREFIX) {
        Some(tail) => [PARTIAL_PREFIX, tail].concat(),
        None => bytes.to_vec(),
    };
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok((parts.status, parts.headers, Body::from(bytes)).into_response())
}

/// `/delete/<tenant>/prometheus/api/v1/admin/tsdb/delete_series?match[]=...`: deletes on every
/// storage node; 204 when all of them did, 503 when one could not be reached.
async fn delete_series(
    State(st): State<SelectState>,
    Path(tenant): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant(&tenant)?;
    let registry = strata_query::FunctionRegistry::with_builtins();
    let mut groups = Vec::new();
    for (k, v) in &params {
        if k != "match[]" {
            continue;
        }
        match strata_query::parse(v, &registry) {
            Ok(strata_query::Expr::Vector(vs)) => groups.push(vs.matchers),
            Ok(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid parameter \"match[]\": {v:?} is not an instant vector selector"
                )));
            }
            Err(e) => return Err(ApiError::bad_request(format!("invalid parameter \"match[]\": {e}"))),
        }
    }
    if groups.is_empty() {
        return Err(ApiError::bad_request(
            "missing match[] parameter: give at least one series selector",
        ));
    }
    let cluster = Arc::clone(&st.cluster);
    let deleted = tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        for g in &groups {
            total += cluster.delete_series(tenant, g)?;
        }
        Ok::<u64, strata_query::SourceError>(total)
    })
    .await
    .map_err(|e| ApiError::internal(format!("delete task failed: {e}")))?
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(
        deleted,
        account = tenant.account_id,
        project = tenant.project_id,
        "series deleted"
    );
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
