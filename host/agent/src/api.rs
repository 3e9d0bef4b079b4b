//! HTTP routes of the agent: `/api/v1/targets` (Prometheus' shape), `/targets` (plain text)
//! and `POST /-/reload`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::manager::{ScrapeManager, TargetsSnapshot};
use crate::relabel::Labels;

/// The routes, serving `manager`.
pub fn routes(manager: Arc<ScrapeManager>) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets_json))
        .route("/prometheus/api/v1/targets", get(targets_json))
        .route("/targets", get(targets_text))
        .route("/-/reload", post(reload).get(reload))
        .with_state(manager)
}

fn label_object(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// The `/api/v1/targets` document for `snapshot`.
pub fn targets_document(snapshot: &TargetsSnapshot) -> Value {
    let active: Vec<Value> = snapshot
        .active
        .iter()
        .map(|t| {
            let s = &t.status;
            json!({
                "discoveredLabels": label_object(&t.spec.discovered),
                "labels": label_object(&t.spec.labels),
                "scrapePool": t.spec.job,
                "scrapeUrl": t.spec.url,
                "globalUrl": t.spec.url,
                "lastError": s.last_error,
                "lastScrape": if s.last_scrape_ms == 0 { "0001-01-01T00:00:00Z".to_owned() } else { rfc3339(s.last_scrape_ms) },
                "lastScrapeDuration": s.last_duration.as_secs_f64(),
                "lastSamplesScraped": s.last_samples,
                "health": s.health.as_str(),
                "scrapeInterval": crate::duration::PromDuration(t.spec.interval).to_string(),
                "scrapeTimeout": crate::duration::PromDuration(t.spec.timeout).to_string(),
            })
        })
        .collect();
    let dropped: Vec<Value> = snapshot
        .dropped
        .iter()
        .map(|d| json!({"discoveredLabels": label_object(&d.discovered)}))
        .collect();
    json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": dropped}})
}

async fn targets_json(State(manager): State<Arc<ScrapeManager>>) -> Json<Value> {
    Json(targets_document(&manager.targets()))
}

async fn targets_text(State(manager): State<Arc<ScrapeManager>>) -> String {
    let snapshot = manager.targets();
    let mut out = String::new();
    for t in &snapshot.active {
        let labels: Vec<String> = t.spec.labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        out.push_str(&format!(
            "job={:?} state={} endpoint={} labels={{{}}} last_scrape={} scrape_duration={:.3}s samples={} error={:?}\n",
            t.spec.job,
            t.status.health.as_str(),
            t.spec.url,
            labels.join(","),
            if t.status.last_scrape_ms == 0 {
                "never".to_owned()
            } else {
                rfc3339(t.status.last_scrape_ms)
            },
            t.status.last_duration.as_secs_f64(),
            t.status.last_samples,
            t.status.last_error,
        ));
    }
    out.push_str(&format!("dropped targets: {}\n", snapshot.dropped.len()));
    out
}

async fn reload(State(manager): State<Arc<ScrapeManager>>) -> Response {
    match tokio::task::spawn_blocking(move || manager.reload()).await {
        Ok(Ok(summary)) => (
            StatusCode::OK,
            format!(
                "reloaded: {} targets ({} started, {} stopped)\n",
                summary.targets, summary.started, summary.stopped
            ),
        )
            .into_response(),
        Ok(Err(err)) => (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload task failed: {err}\n"),
        )
            .into_response(),
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[tokio::test]
    async fn targets_and_reload_routes() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("p.yml");
        std::fs::write(
            &config,
            "scrape_configs:\n  - job_name: j\n    static_configs: [{targets: ['127.0.0.1:1']}]\n    relabel_configs: [{source_labels: [__address__], regex: 'x', action: drop}]\n",
        )
        .unwrap();
        let manager = Arc::new(
            ScrapeManager::start(
                crate::manager::ScrapeOptions {
                    config_file: Some(config.clone()),
                    strict_parse: true,
                    check_interval: std::time::Duration::ZERO,
                    self_scrape: None,
                },
                Arc::new(strata_ingest::MemorySink::new()),
            )
            .unwrap(),
        );
        let app = routes(Arc::clone(&manager));
        let call = |req: Request<Body>| {
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (status, body) = call(Request::get("/api/v1/targets").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let doc: Value = serde_json::from_str(&body).unwrap();
        let t = &doc["data"]["activeTargets"][0];
        assert_eq!(t["scrapePool"], "j");
        assert_eq!(t["scrapeUrl"], "http://127.0.0.1:1/metrics");
        assert_eq!(t["labels"]["instance"], "127.0.0.1:1");
        assert_eq!(t["discoveredLabels"]["__address__"], "127.0.0.1:1");
        assert_eq!(t["scrapeInterval"], "1m");
        assert_eq!(doc["data"]["droppedTargets"].as_array().unwrap().len(), 0);

        std::fs::write(&config, "scrape_configs: [{job_name: j, nope: 1}]\n").unwrap();
        let (status, body) = call(Request::post("/-/reload").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("nope"));
        std::fs::write(&config, "scrape_configs: []\n").unwrap();
        let (status, body) = call(Request::post("/-/reload").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("0 targets"), "{body}");
        let (_, text) = call(Request::get("/targets").body(Body::empty()).unwrap()).await;
        assert!(text.contains("dropped targets: 0"), "{text}");
        manager.shutdown();
    }
}
