//! Ingestion plugins over HTTP: status codes, gzip, validation, the admin API.

mod common;

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use strata_ingest::{IngestLimits, MemorySink};
use strata_plugin_host::routes::{admin_routes, ingest_routes};
use strata_plugin_host::{HostOptions, PluginHost};
use tower::ServiceExt;

fn setup() -> (axum::Router, Arc<MemorySink>) {
    let host = Arc::new(
        PluginHost::load(
            HostOptions::default(),
            vec![
                common::spec("influx", "strata_influx"),
                common::spec("hostile", "strata_hostile"),
            ],
        )
        .unwrap(),
    );
    let sink = Arc::new(MemorySink::new());
    let router = ingest_routes(host.clone(), sink.clone(), IngestLimits::default()).merge(admin_routes(host));
    (router, sink)
}

async fn send(router: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).body(body.into()).unwrap()
}

#[tokio::test]
async fn influx_write_paths_store_samples() {
    let (router, sink) = setup();
    let now_s = strata_ingest::limits::now_ms() / 1000;
    for path in ["/write", "/influx/write", "/api/v2/write"] {
        let body = format!("cpu,host=a usage=1.5 {now_s}\n");
        let (status, text) = send(&router, post(&format!("{path}?precision=s"), body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {text}");
    }
    let series = sink.series();
    assert_eq!(sink.sample_count(), 3);
    assert!(
        series[0]
            .labels
            .contains(&("__name__".to_string(), "cpu_usage".to_string()))
    );
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let (router, sink) = setup();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"mem free=3\nmem used=4\n").unwrap();
    let req = Request::post("/write")
        .header("content-encoding", "gzip")
        .body(Body::from(gz.finish().unwrap()))
        .unwrap();
    let (status, text) = send(&router, req).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(sink.sample_count(), 2);
    let req = Request::post("/write")
        .header("content-encoding", "br")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&router, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn failures_name_the_plugin_and_reason_and_nothing_is_stored() {
    let (router, sink) = setup();
    let (status, text) = send(&router, post("/write", "cpu usage=oops\n")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("plugin influx: line 1"), "{text}");

    let (status, text) = send(&router, post("/hostile?mode=loop", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("plugin hostile: timeout"), "{text}");

    let (status, text) = send(&router, post("/hostile?mode=trap", "")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("plugin hostile: trap"), "{text}");

    let (status, text) = send(&router, post("/hostile?mode=invalid", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("plugin hostile"), "{text}");
    assert_eq!(sink.sample_count(), 0);

    let (status, _) = send(&router, post("/hostile?mode=ok", "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sink.sample_count(), 1);
}

#[tokio::test]
async fn admin_api_lists_and_reloads() {
    let (router, _) = setup();
    send(&router, post("/hostile?mode=trap", "")).await;
    let (status, text) = send(&router, Request::get("/api/v1/plugins").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let hostile = data.iter().find(|p| p["name"] == "hostile").unwrap();
    assert_eq!(hostile["failures"]["trap"], 1);
    assert_eq!(hostile["http_paths"][0], "/hostile");
    let (status, text) = send(&router, post("/api/v1/plugins/reload", "")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("influx"));
}

#[tokio::test]
async fn insert_role_routes_carry_the_tenant_in_the_path() {
    let host =
        Arc::new(PluginHost::load(HostOptions::default(), vec![common::spec("influx", "strata_influx")]).unwrap());
    let sink = Arc::new(MemorySink::new());
    let router = strata_plugin_host::routes::tenant_ingest_routes(host, sink.clone(), IngestLimits::default());
    for (uri, account, project) in [
        ("/insert/7/influx/write", 7, 0),
        ("/insert/3:4/influx/api/v2/write", 3, 4),
    ] {
        let (status, text) = send(&router, post(uri, "m value=1\n")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{uri}: {text}");
        let last = sink.series().pop().unwrap();
        assert_eq!(
            (last.tenant.account_id, last.tenant.project_id),
            (account, project),
            "{uri}"
        );
    }
    let (status, text) = send(&router, post("/insert/x:y/influx/write", "m value=1\n")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("invalid tenant"), "{text}");
    // Single-node paths are not mounted here.
    assert_eq!(
        send(&router, post("/write", "m value=1\n")).await.0,
        StatusCode::NOT_FOUND
    );
}
