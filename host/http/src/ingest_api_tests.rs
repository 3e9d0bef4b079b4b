use std::time::Duration;

use axum::http::Request;
use strata_ingest::limits::now_ms;
use strata_ingest::prompb::{self, Label, Sample, TimeSeries, WriteRequest, encode_snappy, v2};
use strata_ingest::{MemorySink, SinkError};
use tower::ServiceExt;

use super::*;

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn rw1(series: Vec<TimeSeries>) -> Vec<u8> {
    encode_snappy(&WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
}

fn app(sink: &Arc<MemorySink>) -> Router {
    let limits = IngestLimits {
        max_decompressed_bytes: 1 << 20,
        ..IngestLimits::default()
    };
    routes(sink.clone(), limits).merge(insert_routes(sink.clone(), IngestLimits::default()))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(router: Router, request: Request<Body>) -> Reply {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn remote_write_v1_stores_and_answers_204() {
    let sink = Arc::new(MemorySink::new());
    let now = now_ms();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let body = rw1(vec![ts(
        &[("job", "node"), ("__name__", "up")],
        &[(now - 2, stale), (now - 1, f64::INFINITY), (now, f64::NAN)],
    )]);
    for path in [
        "/api/v1/write",
        "/prometheus/api/v1/push",
        "/insert/3:4/prometheus/api/v1/write",
    ] {
        let r = send(app(&sink), post(path, body.clone())).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}: {}", r.body);
        assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "3");
    }
    let stored = sink.series();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored[0].labels[0],
        ("__name__".into(), "up".into()),
        "labels are sorted"
    );
    assert_eq!(
        stored[0].samples[0].1.to_bits(),
        0x7ff0_0000_0000_0002,
        "stale marker kept exactly"
    );
    assert!(stored[0].samples[1].1.is_infinite() && stored[0].samples[2].1.is_nan());
    assert_eq!(
        stored[2].tenant,
        Tenant {
            account_id: 3,
            project_id: 4
        }
    );
}

#[tokio::test]
async fn zstd_and_the_vm_handshake() {
    let sink = Arc::new(MemorySink::new());
    let r = send(
        app(&sink),
        Request::get("/api/v1/write?get_vm_proto_version=1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "1"));
    let req = WriteRequest {
        timeseries: vec![ts(&[("__name__", "z")], &[(now_ms(), 1.0)])],
        metadata: vec![],
    };
    let body = prompb::encode_zstd(&req, 1).unwrap();
    let request = Request::post("/api/v1/write")
        .header(header::CONTENT_ENCODING, "zstd")
        .body(Body::from(body))
        .unwrap();
    let r = send(app(&sink), request).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(sink.sample_count(), 1);
}

#[tokio::test]
async fn remote_write_v2_headers_and_histograms() {
    let sink = Arc::new(MemorySink::new());
    let mut req = v2::Request {
        symbols: vec!["".into(), "__name__".into(), "c_total".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2],
            samples: vec![
                v2::Sample {
                    value: 1.0,
                    timestamp: now_ms() - 1,
                },
                v2::Sample {
                    value: 2.0,
                    timestamp: now_ms(),
                },
            ],
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![],
                value: 1.0,
                timestamp: 1,
            }],
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref: 0,
                unit_ref: 0,
            }),
            created_timestamp: 5,
            histograms: vec![],
        }],
    };
    let request = |body| {
        Request::post("/api/v1/write")
            .header(header::CONTENT_TYPE, v2::CONTENT_TYPE)
            .body(Body::from(body))
            .unwrap()
    };
    let r = send(app(&sink), request(v2::encode_snappy(&req))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "2");
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Histograms-Written"], "0");
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Exemplars-Written"], "0");
    assert_eq!(sink.series()[0].labels, vec![("__name__".into(), "c_total".into())]);

    req.timeseries[0].histograms.push(prompb::Histogram::default());
    let r = send(app(&sink), request(v2::encode_snappy(&req))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("native histogram"), "{}", r.body);
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "0");
}

/// The bad-input table: every row gets its status and a message naming the problem, and
/// nothing of any of them is stored, while data accepted before stays.
#[tokio::test]
async fn bad_input_table() {
    let sink = Arc::new(MemorySink::new());
    let now = now_ms();
    let good = rw1(vec![ts(&[("__name__", "kept")], &[(now, 1.0)])]);
    assert_eq!(
        send(app(&sink), post("/api/v1/write", good.clone())).await.status,
        StatusCode::NO_CONTENT
    );

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 4);
    let garbage = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\x0fnot protobuf")
        .unwrap();
    let bomb = snap::raw::Encoder::new().compress_vec(&vec![0u8; 16 << 20]).unwrap();
    let big_value = "x".repeat(64 << 10);
    let many: Vec<(String, String)> = (0..1000).map(|i| (format!("l{i}"), "v".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let mut many_labels = many.clone();
    many_labels.push(("__name__", "m"));
    let two_series = |bad: TimeSeries| rw1(vec![ts(&[("__name__", "fine")], &[(now, 1.0)]), bad]);

    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "truncated snappy",
            post("/api/v1/write", truncated),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            "garbage protobuf",
            post("/api/v1/write", garbage),
            StatusCode::BAD_REQUEST,
            "protobuf",
        ),
        (
            "decompression bomb",
            post("/api/v1/write", bomb),
            StatusCode::PAYLOAD_TOO_LARGE,
            "max_decompressed_bytes",
        ),
        (
            "64 KB label",
            post(
                "/api/v1/write",
                two_series(ts(&[("__name__", "m"), ("big", &big_value)], &[(now, 1.0)])),
            ),
            StatusCode::BAD_REQUEST,
            "max_label_value_bytes",
        ),
        (
            "1000 labels",
            post("/api/v1/write", two_series(ts(&many_labels, &[(now, 1.0)]))),
            StatusCode::BAD_REQUEST,
            "max_labels_per_series",
        ),
        (
            "future timestamp",
            post(
                "/api/v1/write",
                two_series(ts(&[("__name__", "m")], &[(now + 3 * 86_400_000, 1.0)])),
            ),
            StatusCode::BAD_REQUEST,
            "max_future_ms",
        ),
        (
            "unsorted samples",
            post(
                "/api/v1/write",
                two_series(ts(&[("__name__", "m")], &[(now, 1.0), (now - 10, 2.0)])),
            ),
            StatusCode::BAD_REQUEST,
            "sorted by time",
        ),
        (
            "duplicate labels",
            post(
                "/api/v1/write",
                two_series(ts(&[("__name__", "m"), ("a", "1"), ("a", "2")], &[(now, 1.0)])),
            ),
            StatusCode::BAD_REQUEST,
            "more than once",
        ),
        (
            "invalid label name",
            post(
                "/api/v1/write",
                two_series(ts(&[("__name__", "m"), ("a-b", "1")], &[(now, 1.0)])),
            ),
            StatusCode::BAD_REQUEST,
            "series #1",
        ),
        (
            "unsupported content type",
            Request::post("/api/v1/write")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            "unsupported encoding",
            Request::post("/api/v1/write")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding",
        ),
        (
            "bad extra_label",
            post("/api/v1/write?extra_label=oops", good.clone()),
            StatusCode::BAD_REQUEST,
            "extra_label",
        ),
        (
            "bad import line",
            post(
                "/api/v1/import",
                b"{\"metric\":{},\"values\":[1],\"timestamps\":[1,2]}".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "line 1",
        ),
        (
            "bad exposition",
            post("/api/v1/import/prometheus", b"ok 1\nbad{ 1\n".to_vec()),
            StatusCode::BAD_REQUEST,
            "line 2",
        ),
        (
            "bad tenant",
            post("/insert/x/prometheus/api/v1/write", good.clone()),
            StatusCode::BAD_REQUEST,
            "tenant",
        ),
    ];
    for (name, request, status, needle) in cases {
        let r = send(app(&sink), request).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert!(r.body.contains("\"status\":\"error\""), "{name}: {}", r.body);
        assert!(r.body.contains(needle), "{name}: {} lacks {needle}", r.body);
        assert!(
            r.body.len() < 2000,
            "{name}: message echoes too much input ({} bytes)",
            r.body.len()
        );
        assert_eq!(sink.push_count(), 1, "{name}: something was pushed");
    }
    assert_eq!(sink.series()[0].labels[0].1, "kept");
}

#[tokio::test]
async fn storage_unavailable_is_503() {
    let sink = Arc::new(MemorySink::new());
    sink.set_failure(Some(SinkError::Unavailable("disk full".into())));
    let body = rw1(vec![ts(&[("__name__", "m")], &[(now_ms(), 1.0)])]);
    let r = send(app(&sink), post("/api/v1/write", body)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("unavailable"), "{}", r.body);
}

/// A sink whose pushes wait for a signal, to hold a request's slot.
struct GatedSink(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

impl SampleSink for GatedSink {
    fn push(&self, _: Tenant, batch: &strata_ingest::MetricBatch) -> Result<strata_ingest::PushOutcome, SinkError> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = rx.recv_timeout(Duration::from_secs(5));
        Ok(strata_ingest::PushOutcome {
            samples_written: batch.sample_count() as u64,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_concurrent_requests_is_503() {
    let (release, gate) = std::sync::mpsc::channel();
    let sink = Arc::new(GatedSink(std::sync::Mutex::new(gate)));
    let limits = IngestLimits {
        max_concurrent_requests: 1,
        max_queue_wait_ms: 50,
        ..IngestLimits::default()
    };
    let router = routes(sink, limits);
    let body = rw1(vec![ts(&[("__name__", "m")], &[(now_ms(), 1.0)])]);
    let first = tokio::spawn(send(router.clone(), post("/api/v1/write", body.clone())));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = send(router, post("/api/v1/write", body)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("max_concurrent_requests"), "{}", r.body);
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn imports_with_extra_labels_and_timestamp() {
    let sink = Arc::new(MemorySink::new());
    let now = now_ms();
    let json = format!(
        "{{\"metric\":{{\"__name__\":\"bid\",\"ticker\":\"MSFT\"}},\"values\":[1.67],\"timestamps\":[{now}]}}\n"
    );
    let r = send(
        app(&sink),
        post("/api/v1/import?extra_label=src%3Dvm", json.into_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let text = b"# TYPE m gauge\nm{a=\"1\"} 5\n".to_vec();
    let r = send(
        app(&sink),
        post(
            &format!("/prometheus/api/v1/import/prometheus?timestamp={now}&extra_label=env=prod"),
            text,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let stored = sink.series();
    assert_eq!(
        stored[0].labels,
        vec![
            ("__name__".into(), "bid".into()),
            ("src".into(), "vm".into()),
            ("ticker".into(), "MSFT".into())
        ]
    );
    assert_eq!(stored[1].samples, vec![(now, 5.0)]);
    assert!(stored[1].labels.contains(&("env".into(), "prod".into())));
}

#[tokio::test]
async fn server_body_limit_gives_413() {
    let metrics = crate::MetricsHandle::install(&crate::BuildInfo {
        version: "test",
        role: "single".into(),
    });
    let sink = Arc::new(MemorySink::new());
    let router = crate::ServerBuilder::new(
        crate::HttpOptions {
            max_request_body: 1 << 20,
            shutdown_timeout: Duration::from_secs(1),
        },
        metrics,
    )
    .merge(app(&sink))
    .build();
    // A body announced as 1 GB is refused from its header, before anything is read.
    let declared = Request::post("/api/v1/write")
        .header(header::CONTENT_LENGTH, "1073741824")
        .body(Body::from(vec![0u8; 16]))
        .unwrap();
    assert_eq!(
        send(router.clone(), declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Without Content-Length the read stops at the limit.
    let streamed = Request::post("/api/v1/write")
        .body(Body::from(vec![0u8; 2 << 20]))
        .unwrap();
    let r = send(router, streamed).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(sink.push_count(), 0);
}

#[test]
fn tenant_and_query_parsing() {
    assert_eq!(
        parse_tenant("7").unwrap(),
        Tenant {
            account_id: 7,
            project_id: 0
        }
    );
    assert_eq!(
        parse_tenant("7:9").unwrap(),
        Tenant {
            account_id: 7,
            project_id: 9
        }
    );
    assert!(parse_tenant("7:").is_err());
    let uri: Uri = "/x?extra_label=a%3Db+c&extra_label=d=e&other=1&bad=%zz"
        .parse()
        .unwrap();
    assert_eq!(
        query_values(&uri, "extra_label").collect::<Vec<_>>(),
        vec!["a=b c", "d=e"]
    );
    assert_eq!(query_values(&uri, "bad").collect::<Vec<_>>(), vec!["%zz"]);
}
