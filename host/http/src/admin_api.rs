//! Operational endpoints for the storage, named as VictoriaMetrics names them so its tooling
//! and runbooks work: `/internal/force_flush`, `/internal/force_merge`, `/snapshot/*`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use strata_storage::{Storage, StorageError};

use crate::ApiError;

/// The routes; GET and POST both work, as with VictoriaMetrics.
pub fn routes(storage: Arc<Storage>) -> Router {
    Router::new()
        .route("/internal/force_flush", get(force_flush).post(force_flush))
        .route("/internal/force_merge", get(force_merge).post(force_merge))
        .route("/snapshot/create", get(snapshot_create).post(snapshot_create))
        .route("/snapshot/list", get(snapshot_list).post(snapshot_list))
        .route("/snapshot/delete", get(snapshot_delete).post(snapshot_delete))
        .route(
            "/snapshot/delete_all",
            get(snapshot_delete_all).post(snapshot_delete_all),
        )
        .with_state(storage)
}

/// Maps engine errors to HTTP: the client's fault is 4xx with the message; ours is 5xx with a
/// generic message, and the details (paths, OS errors) go to the log only.
pub fn storage_error(err: StorageError) -> ApiError {
    match err {
        StorageError::InvalidInput(message) => ApiError::bad_request(message),
        err @ StorageError::TooManySeries { .. } => ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            crate::ErrorType::Execution,
            err.to_string(),
        ),
        StorageError::Unavailable(message) => ApiError::unavailable(message),
        err @ (StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::Locked(_)) => {
            tracing::error!("storage error: {err}");
            metrics::counter!("strata_storage_errors_total").increment(1);
            ApiError::internal("storage error; the server log has the details")
        }
    }
}

/// Runs blocking storage work off the async threads.
async fn blocking<T: Send + 'static>(
    storage: Arc<Storage>,
    work: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || work(&storage))
        .await
        .map_err(|err| ApiError::internal(format!("storage task failed: {err}")))?
        .map_err(storage_error)
}

async fn force_flush(State(storage): State<Arc<Storage>>) -> Result<Response, ApiError> {
    blocking(storage, Storage::force_flush).await?;
    Ok(().into_response())
}

#[derive(Deserialize)]
struct MergeParams {
    #[serde(default)]
    partition_prefix: String,
}

async fn force_merge(
    State(storage): State<Arc<Storage>>,
    Query(params): Query<MergeParams>,
) -> Result<Response, ApiError> {
    blocking(storage, move |s| s.force_merge(&params.partition_prefix)).await?;
    Ok(().into_response())
}

async fn snapshot_create(State(storage): State<Arc<Storage>>) -> Result<Json<serde_json::Value>, ApiError> {
    let name = blocking(storage, Storage::create_snapshot).await?;
    Ok(Json(serde_json::json!({"status": "ok", "snapshot": name})))
}

async fn snapshot_list(State(storage): State<Arc<Storage>>) -> Result<Json<serde_json::Value>, ApiError> {
    let names = blocking(storage, Storage::list_snapshots).await?;
    Ok(Json(serde_json::json!({"status": "ok", "snapshots": names})))
}

#[derive(Deserialize)]
struct DeleteParams {
    snapshot: Option<String>,
}

async fn snapshot_delete(
    State(storage): State<Arc<Storage>>,
    Query(params): Query<DeleteParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = params
        .snapshot
        .ok_or_else(|| ApiError::bad_request("missing `snapshot` parameter: /snapshot/delete?snapshot=<name>"))?;
    blocking(storage, move |s| s.delete_snapshot(&name)).await?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

async fn snapshot_delete_all(State(storage): State<Arc<Storage>>) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(storage, |s| {
        for name in s.list_snapshots()? {
            s.delete_snapshot(&name)?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}
