//! Prometheus' query API over a `SeriesSource`, in Prometheus' response shapes plus
//! VictoriaMetrics' `isPartial` and `stats` fields.
//!
//! | path (also under `/prometheus`) | parameters |
//! |---|---|
//! | `GET/POST /api/v1/query` | `query`, `time` |
//! | `GET/POST /api/v1/query_range` | `query`, `start`, `end`, `step` |
//! | `GET/POST /api/v1/series` | `match[]` (1+), `start`, `end`, `limit` |
//! | `GET/POST /api/v1/labels` | `match[]`, `start`, `end`, `limit` |
//! | `GET /api/v1/label/{name}/values` | `match[]`, `start`, `end`, `limit` |
//! | `GET/POST /api/v1/format_query` | `query` |
//! | `GET /api/v1/status/buildinfo` | — (reports Prometheus API version 2.42.0 for client feature checks) |
//! | `GET /api/v1/status/flags`, `GET /api/v1/metadata` | — (empty object) |
//! | `GET/POST /api/v1/query_exemplars` | — (empty list: no exemplars are stored) |
//!
//! Times are Unix seconds (fractions allowed) or RFC 3339; `step` is seconds or a duration
//! (`15s`, `1m`). POST takes the same parameters as an `application/x-www-form-urlencoded` body.
//! Errors: 400 `bad_data` (bad parameters or a query that does not parse), 422 `execution`
//! (evaluation failed or hit a limit), 503 `timeout`. Evaluation runs on the blocking pool.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_query::{
    Engine, FunctionRegistry, LabelMatcher, Labels, QueryError, QueryOptions, QueryResult, QueryValue, SeriesSource,
};

use crate::error::{ApiError, ErrorType};
use crate::params::{Params, invalid_param, now_ms, optional_time, parse_duration, parse_time, required};

/// Settings of the query API.
#[derive(Clone, Debug, Default)]
pub struct QueryApiOptions {
    /// Engine limits and defaults (lookback, max series/samples, timeout, threads).
    pub engine: QueryOptions,
}

#[derive(Clone)]
struct QueryState {
    engine: Engine,
    /// When the routes were built (the server's start, for `status/runtimeinfo`).
    started_ms: i64,
}

/// The query routes, at `/api/v1/...` and `/prometheus/api/v1/...`, with the built-in functions.
pub fn routes(source: Arc<dyn SeriesSource>, opts: QueryApiOptions) -> Router {
    engine_routes(Engine::new(source, opts.engine))
}

/// The query routes with a function registry that includes plugin functions.
pub fn routes_with_registry(
    source: Arc<dyn SeriesSource>,
    opts: QueryApiOptions,
    registry: Arc<FunctionRegistry>,
) -> Router {
    engine_routes(Engine::with_registry(source, registry, opts.engine))
}

fn engine_routes(engine: Engine) -> Router {
    let state = QueryState {
        engine,
        started_ms: now_ms(),
    };
    let mut router = Router::new();
    for prefix in ["", "/prometheus"] {
        router = router
            .route(&format!("{prefix}/api/v1/query"), get(query).post(query))
            .route(
                &format!("{prefix}/api/v1/query_range"),
                get(query_range).post(query_range),
            )
            .route(&format!("{prefix}/api/v1/series"), get(series).post(series))
            .route(&format!("{prefix}/api/v1/labels"), get(labels).post(labels))
            .route(&format!("{prefix}/api/v1/label/{{name}}/values"), get(label_values))
            .route(
                &format!("{prefix}/api/v1/format_query"),
                get(format_query).post(format_query),
            )
            .route(&format!("{prefix}/api/v1/status/buildinfo"), get(buildinfo))
            .route(&format!("{prefix}/api/v1/status/flags"), get(flags))
            .route(&format!("{prefix}/api/v1/status/runtimeinfo"), get(runtimeinfo))
            .route(&format!("{prefix}/api/v1/metadata"), get(empty_object))
            .route(
                &format!("{prefix}/api/v1/query_exemplars"),
                get(empty_list).post(empty_list),
            );
    }
    router.with_state(state)
}

fn query_error(err: QueryError) -> ApiError {
    match err {
        QueryError::Parse(e) => invalid_param("query", e),
        QueryError::BadRequest(m) => ApiError::bad_request(m),
        QueryError::Timeout => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout, err.to_string()),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Execution,
            other.to_string(),
        ),
    }
}

/// Go's strconv.FormatFloat(v, 'f', -1, 64), as Prometheus writes sample values.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Milliseconds as JSON seconds: `1700000000` or `1700000000.5`.
fn fmt_ts(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn json_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lab) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(&lab.name));
        out.push(':');
        out.push_str(&json_str(&lab.value));
    }
    out.push('}');
}

fn json_point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    out.push_str(&fmt_ts(t));
    out.push(',');
    out.push_str(&json_str(v));
    out.push(']');
}

/// The `data` object of a query result.
fn result_json(v: &QueryValue) -> String {
    let mut out = String::new();
    match v {
        QueryValue::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            json_point(&mut out, *t, &fmt_value(*v));
        }
        QueryValue::String { t, v } => {
            out.push_str("{\"resultType\":\"string\",\"result\":");
            json_point(&mut out, *t, v);
        }
        QueryValue::Vector(samples) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                json_point(&mut out, s.t, &fmt_value(s.v));
                out.push('}');
            }
            out.push(']');
        }
        QueryValue::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (k, (t, v)) in s.points.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    json_point(&mut out, *t, &fmt_value(*v));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

fn success(data: String, stats: Option<(usize, u128)>) -> Response {
    let mut body = format!("{{\"status\":\"success\",\"isPartial\":false,\"data\":{data}");
    if let Some((series, ms)) = stats {
        body.push_str(&format!(
            ",\"stats\":{{\"seriesFetched\":\"{series}\",\"executionTimeMsec\":{ms}}}"
        ));
    }
    body.push('}');
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
}

fn query_response(res: QueryResult, started: Instant) -> Response {
    success(
        result_json(&res.value),
        Some((res.stats.series_fetched, started.elapsed().as_millis())),
    )
}

async fn query(State(st): State<QueryState>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let q = required(&p, "query")?.to_string();
    let t = optional_time(&p, "time", now_ms())?;
    let started = Instant::now();
    let res = run_blocking(move || st.engine.instant_query(&q, t).map_err(query_error)).await?;
    Ok(query_response(res, started))
}

async fn query_range(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let q = required(&p, "query")?.to_string();
    let start = parse_time("start", required(&p, "start")?)?;
    let end = parse_time("end", required(&p, "end")?)?;
    let step = parse_duration("step", required(&p, "step")?)?;
    if end < start {
        return Err(invalid_param("end", "end timestamp must not be before start time"));
    }
    if step <= 0 {
        return Err(invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let started = Instant::now();
    let res = run_blocking(move || st.engine.range_query(&q, start, end, step).map_err(query_error)).await?;
    Ok(query_response(res, started))
}

/// Parses each `match[]` selector into its matchers.
fn selectors(engine: &Engine, p: &Params) -> Result<Vec<Vec<LabelMatcher>>, ApiError> {
    crate::params::match_selectors(p, |m| engine.parse(m))
}

fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(v) => v
            .parse()
            .map_err(|_| invalid_param("limit", format!("cannot parse \"{v}\" to a positive integer"))),
    }
}

fn source_error(e: strata_query::SourceError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution, e.to_string())
}

async fn series(State(st): State<QueryState>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let sels = selectors(&st.engine, &p)?;
    if sels.is_empty() {
        return Err(ApiError::bad_request("no match[] parameter provided"));
    }
    let start = optional_time(&p, "start", i64::MIN / 2)?;
    let end = optional_time(&p, "end", i64::MAX / 2)?;
    let limit = limit(&p)?;
    let set = run_blocking(move || {
        let mut set = BTreeSet::new();
        for m in &sels {
            set.extend(st.engine.source().series_labels(m, start, end).map_err(source_error)?);
        }
        Ok(set)
    })
    .await?;
    let mut data = String::from("[");
    for (i, l) in set.iter().take(limit).enumerate() {
        if i > 0 {
            data.push(',');
        }
        json_labels(&mut data, l);
    }
    data.push(']');
    Ok(success(data, None))
}

fn string_list(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| json_str(&s)).collect();
    format!("[{}]", v.join(","))
}

/// Shared by `labels` and `label/{name}/values`: the union over all `match[]` (or everything).
async fn lookup(st: QueryState, p: Params, name: Option<String>) -> Result<Response, ApiError> {
    let mut sels = selectors(&st.engine, &p)?;
    if sels.is_empty() {
        sels.push(Vec::new());
    }
    let start = optional_time(&p, "start", i64::MIN / 2)?;
    let end = optional_time(&p, "end", i64::MAX / 2)?;
    let limit = limit(&p)?;
    let set = run_blocking(move || {
        let mut set = BTreeSet::new();
        for m in &sels {
            let found = match &name {
                None => st.engine.source().label_names(m, start, end),
                Some(n) => st.engine.source().label_values(n, m, start, end),
            }
            .map_err(source_error)?;
            set.extend(found);
        }
        Ok(set)
    })
    .await?;
    Ok(success(string_list(set.into_iter().take(limit)), None))
}

async fn labels(State(st): State<QueryState>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    lookup(st, p, None).await
}

async fn label_values(
    State(st): State<QueryState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    lookup(st, p, Some(name)).await
}

async fn format_query(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::read(&uri, &headers, body).await?;
    let q = required(&p, "query")?;
    let expr = st.engine.parse(q).map_err(query_error)?;
    Ok(success(json_str(&expr.to_string()), None))
}

/// Grafana and other clients enable features by the Prometheus version they see; we implement
/// the 2.42 API, and say which program actually answers in `application`/`strataVersion`.
async fn buildinfo() -> Response {
    let data = serde_json::json!({
        "version": "2.42.0",
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "strata",
        "strataVersion": env!("CARGO_PKG_VERSION"),
    });
    success(data.to_string(), None)
}

/// Prometheus' flag names for the engine settings Strata has, with their values.
async fn flags(State(st): State<QueryState>) -> Response {
    let o = st.engine.options();
    let data = serde_json::json!({
        "query.lookback-delta": fmt_duration(o.lookback_ms),
        "query.max-samples": o.max_samples.to_string(),
        "query.timeout": fmt_duration(o.timeout.as_millis() as i64),
        "query.max-series": o.max_series.to_string(),
        "query.max-points-per-series": o.max_points_per_series.to_string(),
    });
    success(data.to_string(), None)
}

/// `status/runtimeinfo` in Prometheus' shape; the Go runtime fields carry Strata's nearest
/// equivalents (threads for goroutines, CPUs for GOMAXPROCS).
async fn runtimeinfo(State(st): State<QueryState>) -> Response {
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse::<u64>().ok()))
        })
        .flatten()
        .unwrap_or(0);
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let started = crate::params::format_rfc3339(st.started_ms);
    let data = serde_json::json!({
        "startTime": started,
        "CWD": cwd,
        "reloadConfigSuccess": true,
        "lastConfigTime": started,
        "corruptionCount": 0,
        "goroutineCount": threads,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": "",
    });
    success(data.to_string(), None)
}

/// Milliseconds as a Prometheus duration (`5m`, `1h30m`, `2m30s500ms`).
fn fmt_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

async fn empty_object() -> Response {
    success("{}".into(), None)
}

async fn empty_list() -> Response {
    success("[]".into(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_body;
    use axum::http::Request;
    use strata_query::MemSource;
    use tower::ServiceExt;

    fn app() -> Router {
        let mut src = MemSource::new();
        for (inst, step) in [("a", 1.0), ("b", 2.0)] {
            src.add(
                Labels::from_pairs([("__name__", "up_total"), ("job", "api"), ("instance", inst)]),
                (0..=20).map(|k| (k * 15_000, k as f64 * step)),
            );
        }
        routes(Arc::new(src), QueryApiOptions::default())
    }

    async fn call(req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = read_body(resp.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn get(uri: &str) -> (StatusCode, serde_json::Value) {
        call(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    #[tokio::test]
    async fn instant_query_vector_shape() {
        let (s, v) = get("/api/v1/query?query=sum(up_total)&time=60").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "success");
        assert_eq!(v["isPartial"], false);
        assert_eq!(v["data"]["resultType"], "vector");
        assert_eq!(v["data"]["result"][0]["metric"], serde_json::json!({}));
        assert_eq!(v["data"]["result"][0]["value"], serde_json::json!([60, "12"]));
        assert_eq!(v["stats"]["seriesFetched"], "2");
    }

    #[tokio::test]
    async fn scalar_and_rfc3339_time() {
        let (s, v) = get("/prometheus/api/v1/query?query=1%2B1&time=1970-01-01T00:01:00.5Z").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["resultType"], "scalar");
        assert_eq!(v["data"]["result"], serde_json::json!([60.5, "2"]));
    }

    #[tokio::test]
    async fn range_query_post_form() {
        let req = Request::post("/api/v1/query_range")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "query=up_total%7Binstance%3D%22b%22%7D&start=0&end=30&step=15s",
            ))
            .unwrap();
        let (s, v) = call(req).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["resultType"], "matrix");
        assert_eq!(
            v["data"]["result"][0]["values"],
            serde_json::json!([[0, "0"], [15, "2"], [30, "4"]])
        );
        assert_eq!(v["data"]["result"][0]["metric"]["__name__"], "up_total");
    }

    #[tokio::test]
    async fn errors_have_prometheus_status_and_type() {
        let (s, v) = get("/api/v1/query?query=sum(").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["errorType"], "bad_data");
        assert_eq!(
            v["error"],
            "invalid parameter \"query\": 1:5: parse error: unexpected end of input"
        );
        let (s, _) = get("/api/v1/query_range?query=up_total&start=10&end=0&step=1").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = get("/api/v1/query_range?query=up_total&start=0&end=10&step=x").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, v) =
            get("/api/v1/query?query=label_replace(up_total,%22instance%22,%22x%22,%22job%22,%22.*%22)&time=60").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["errorType"], "execution");
        let (s, _) = get("/api/v1/query").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn series_and_labels() {
        let (s, v) = get("/api/v1/series?match[]=up_total%7Binstance%3D%22a%22%7D").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["data"],
            serde_json::json!([{"__name__": "up_total", "instance": "a", "job": "api"}])
        );
        let (_, v) = get("/api/v1/labels").await;
        assert_eq!(v["data"], serde_json::json!(["__name__", "instance", "job"]));
        let (_, v) = get("/api/v1/label/instance/values?limit=1").await;
        assert_eq!(v["data"], serde_json::json!(["a"]));
        let (s, _) = get("/api/v1/series").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (_, v) = get("/api/v1/format_query?query=sum(foo)%20by(a)").await;
        assert_eq!(v["data"], "sum by (a) (foo)");
        let (_, v) = get("/prometheus/api/v1/status/buildinfo").await;
        assert_eq!(v["data"]["version"], "2.42.0");
        let (_, v) = get("/api/v1/query_exemplars?query=up_total").await;
        assert_eq!(v["data"], serde_json::json!([]));
        let (_, v) = get("/api/v1/metadata").await;
        assert_eq!(v["data"], serde_json::json!({}));
        let (_, v) = get("/api/v1/status/flags").await;
        assert_eq!(v["data"]["query.lookback-delta"], "5m");
        assert_eq!(v["data"]["query.timeout"], "2m");
        assert_eq!(v["data"]["query.max-samples"], "50000000");
        let (s, v) = get("/prometheus/api/v1/status/runtimeinfo").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["data"]["reloadConfigSuccess"], true);
        assert_eq!(v["data"]["corruptionCount"], 0);
        let started = v["data"]["startTime"].as_str().unwrap_or_default();
        assert!(crate::params::parse_rfc3339(started).is_some(), "{started}");
    }

    #[tokio::test]
    async fn limits_and_timeouts_have_prometheus_errors() {
        let mut src = MemSource::new();
        for k in 0..5 {
            src.add(
                Labels::from_pairs([("__name__", "m"), ("k", &k.to_string())]),
                (0..=100).map(|i| (i * 15_000, i as f64)),
            );
        }
        let app = |engine: QueryOptions| routes(Arc::new(src.clone()), QueryApiOptions { engine });
        let call = |app: Router, uri: &str| {
            let uri = uri.to_string();
            async move {
                let resp = app
                    .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = resp.status();
                let v: serde_json::Value = serde_json::from_slice(&read_body(resp.into_body()).await.unwrap()).unwrap();
                (status, v)
            }
        };
        let few_series = QueryOptions {
            max_series: 2,
            ..QueryOptions::default()
        };
        let (s, v) = call(app(few_series), "/api/v1/query?query=sum(m)&time=100").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["errorType"], "execution");
        assert!(v["error"].as_str().unwrap().contains("max number of series"), "{v}");
        let few_samples = QueryOptions {
            max_samples: 50,
            ..QueryOptions::default()
        };
        let (s, v) = call(app(few_samples), "/api/v1/query?query=sum_over_time(m[20m])&time=1500").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["error"].as_str().unwrap().contains("too many samples"), "{v}");
        let (s, v) = call(
            app(QueryOptions::default()),
            "/api/v1/query_range?query=m&start=0&end=20000&step=1",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().contains("11000 points"), "{v}");
        let no_time = QueryOptions {
            timeout: std::time::Duration::ZERO,
            ..QueryOptions::default()
        };
        let (s, v) = call(app(no_time), "/api/v1/query?query=sum(m)&time=100").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["errorType"], "timeout");
    }

    #[test]
    fn time_formats() {
        assert_eq!(fmt_ts(1_700_000_000_000), "1700000000");
        assert_eq!(fmt_ts(1_500), "1.5");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(parse_duration("step", "1m").unwrap(), 60_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
    }
}
