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
use axum::extract::{Path, Request, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
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
