//! The select role's HTTP routes: `/select/<accountID>[:<projectID>]/prometheus/api/v1/...`
//! (query, query_range, series, labels, label values, ...), answered by the same query API
//! handlers as single node (`strata_http::query_api`) over a per-request fan-out source;
//! `export` and `status/tsdb` from [`crate::select_api`]; `/delete/<tenant>/...` and
//! `/admin/tenants`. Tenant 0:0 is also served at the single node's paths (`/api/v1/...`,
//! `/prometheus/api/v1/...`), so the web UI and Grafana data sources made for a single node
//! work against select unchanged.
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
use strata_http::tenant_limits::TenantLimits;
use tower::ServiceExt;

use strata_storage::Tenant;

use crate::select::SelectCluster;
use crate::select_api::{self, Params};

/// Settings of the select routes.
#[derive(Clone, Debug, Default)]
pub struct SelectApiOptions {
    /// The query engine's options.
    pub query: QueryApiOptions,
    /// Answer 503 rather than a partial result.
    pub deny_partial_response: bool,
    /// `[[limits.tenants]]`: a tenant's query limits override `query.engine` for its requests.
    pub tenant_limits: Option<Arc<TenantLimits>>,
}

#[derive(Clone)]
struct SelectState {
    cluster: Arc<SelectCluster>,
    options: SelectApiOptions,
}

/// The select routes over `cluster`.
pub fn routes(cluster: Arc<SelectCluster>, options: SelectApiOptions) -> Router {
    let mut router = Router::new()
        .route("/select/{tenant}/prometheus/{*rest}", any(select))
        .route("/select/{tenant}/prometheus/api/v1/export", get(export).post(export))
        .route("/select/{tenant}/prometheus/api/v1/status/tsdb", get(tsdb_status))
        .route(
            "/delete/{tenant}/prometheus/api/v1/admin/tsdb/delete_series",
            get(delete_series).post(delete_series),
        )
        .route("/admin/tenants", get(tenants));
    for prefix in ["", "/prometheus"] {
        router = router
            .route(&format!("{prefix}/api/v1/{{*rest}}"), any(root_select))
            .route(&format!("{prefix}/api/v1/export"), get(root_export).post(root_export))
            .route(&format!("{prefix}/api/v1/status/tsdb"), get(root_tsdb_status))
            .route(
                &format!("{prefix}/api/v1/admin/tsdb/delete_series"),
                get(root_delete_series).post(root_delete_series),
            );
    }
    router.with_state(SelectState { cluster, options })
}

async fn export(
    State(st): State<SelectState>,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant(&tenant)?;
    let max_series = engine_options(&st, tenant).max_series;
    select_api::export(st.cluster, tenant, max_series, p).await
}

async fn root_export(State(st): State<SelectState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let max_series = engine_options(&st, Tenant::default()).max_series;
    select_api::export(st.cluster, Tenant::default(), max_series, p).await
}

/// The query engine options for `tenant`: the role's, with its `[[limits.tenants]]` overrides.
fn engine_options(st: &SelectState, tenant: Tenant) -> strata_query::QueryOptions {
    match &st.options.tenant_limits {
        Some(limits) => limits.query_options(&st.options.query.engine, tenant),
        None => st.options.query.engine.clone(),
    }
}

async fn tsdb_status(
    State(st): State<SelectState>,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let deny = st.options.deny_partial_response || denies_partial(&uri);
    select_api::tsdb_status(st.cluster, parse_tenant(&tenant)?, p, deny).await
}

async fn root_tsdb_status(
    State(st): State<SelectState>,
    Query(p): Query<Params>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let deny = st.options.deny_partial_response || denies_partial(&uri);
    select_api::tsdb_status(st.cluster, Tenant::default(), p, deny).await
}

async fn tenants(State(st): State<SelectState>) -> Result<Response, ApiError> {
    select_api::tenants(st.cluster).await
}

/// `/api/v1/...` and `/prometheus/api/v1/...`: tenant 0:0.
async fn root_select(
    State(st): State<SelectState>,
    Path(rest): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    run_query_api(st, Tenant::default(), format!("api/v1/{rest}"), req).await
}

async fn root_delete_series(State(st): State<SelectState>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    delete_for(st, Tenant::default(), params).await
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
    run_query_api(st, parse_tenant(&tenant)?, rest, req).await
}

/// Runs the query API router for `tenant` on path `rest` and fixes up partial answers.
async fn run_query_api(st: SelectState, tenant: Tenant, rest: String, req: Request) -> Result<Response, ApiError> {
    let deny = st.options.deny_partial_response || denies_partial(req.uri());
    let options = QueryApiOptions {
        engine: engine_options(&st, tenant),
    };
    let source = st.cluster.source_with_max_series(tenant, options.engine.max_series);
    let status = source.status();
    let router = query_api::routes(Arc::new(source), options);

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
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    delete_for(st, parse_tenant(&tenant)?, params).await
}

async fn delete_for(st: SelectState, tenant: Tenant, params: Params) -> Result<Response, ApiError> {
    let groups = select_api::selectors(&params)?;
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
