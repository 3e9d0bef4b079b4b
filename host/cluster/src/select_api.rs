//! Select-role endpoints that are not PromQL: `/api/v1/export` (streamed JSON lines, merged
//! from every node as their search streams arrive), `/api/v1/status/tsdb` (every node's
//! cardinality statistics, merged) and `/admin/tenants`.
//!
//! Parameters come from the query string. Times (`start`, `end`) are Unix seconds, fractions
//! allowed; `date` is `YYYY-MM-DD` (UTC).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_http::ApiError;
use strata_http::body::ChannelBody;
use strata_query::{Expr, FunctionRegistry, LabelMatcher, SeriesSource, SourceError};
use strata_storage::Tenant;
use tokio::sync::mpsc;

use crate::select::SelectCluster;

/// Query-string parameters, repeated names kept in order.
pub type Params = Vec<(String, String)>;

fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn invalid(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid parameter \"{name}\": {why}"))
}

/// Unix seconds (fractions allowed) to milliseconds.
fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match get(p, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| invalid(name, format!("cannot parse {v:?} as Unix seconds"))),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The matchers of every `match[]` selector.
pub fn selectors(p: &Params) -> Result<Vec<Vec<LabelMatcher>>, ApiError> {
    let registry = FunctionRegistry::with_builtins();
    let mut groups = Vec::new();
    for (k, v) in p {
        if k != "match[]" {
            continue;
        }
        match strata_query::parse(v, &registry) {
            Ok(Expr::Vector(vs)) => groups.push(vs.matchers),
            Ok(_) => return Err(invalid("match[]", format!("{v:?} is not an instant vector selector"))),
            Err(e) => return Err(invalid("match[]", e)),
        }
    }
    if groups.is_empty() {
        return Err(ApiError::bad_request(
            "missing match[] parameter: give at least one series selector",
        ));
    }
    Ok(groups)
}

/// Export output goes out in chunks of about this size.
const EXPORT_CHUNK: usize = 64 * 1024;

/// `/api/v1/export?match[]=...&start=...&end=...` for `tenant`: one JSON line per series,
/// streamed while the nodes' search streams are merged. An error before the first chunk gets
/// its status code; after it, the stream ends early (as single node and VictoriaMetrics do).
/// A selector matching more than `max_series` series (the tenant's limit) is refused.
pub async fn export(
    cluster: Arc<SelectCluster>,
    tenant: Tenant,
    max_series: usize,
    p: Params,
) -> Result<Response, ApiError> {
    let groups = selectors(&p)?;
    let end = time_param(&p, "end", now_ms())?;
    let start = time_param(&p, "start", 0)?;
    if start > end {
        return Err(invalid("end", "end is before start"));
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, SourceError>>(4);
    tokio::task::spawn_blocking(move || {
        let source = cluster.source_with_max_series(tenant, max_series);
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK);
        let mut seen: HashSet<strata_query::Labels> = HashSet::new();
        let multiple = groups.len() > 1;
        let mut gone = false;
        let result = groups.iter().try_for_each(|matchers| {
            source.select_batches(matchers, start, end, &mut |batch| {
                for s in batch {
                    // Series matching several selectors are exported once.
                    if multiple && !seen.insert(s.labels.clone()) {
                        continue;
                    }
                    let name = s.labels.iter().filter(|l| l.name == "__name__");
                    let rest = s.labels.iter().filter(|l| l.name != "__name__");
                    let labels = name.chain(rest).map(|l| (l.name.as_str(), l.value.as_str()));
                    strata_ingest::jsonl::encode_export_line(&mut chunk, labels, &s.timestamps, &s.values);
                    if chunk.len() >= EXPORT_CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK));
                        if tx.blocking_send(Ok(Bytes::from(full))).is_err() {
                            gone = true;
                            return false;
                        }
                    }
                }
                true
            })
        });
        if gone {
            return;
        }
        let last = match result {
            Ok(()) => Ok(Bytes::from(chunk)),
            Err(e) => Err(e),
        };
        let _ = tx.blocking_send(last);
    });
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(ApiError::unavailable(e.to_string())),
        None => return Err(ApiError::internal("export stopped unexpectedly")),
    };
    let mut response = (StatusCode::OK, Body::new(ChannelBody::new(first, rx))).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/stream+json"),
    );
    Ok(response)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the "days from civil" calculation).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` to the millisecond its day starts (UTC).
fn parse_date(v: &str) -> Option<i64> {
    let mut it = v.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400_000)
}

/// Lists in VictoriaMetrics' status shape and how each merges: counts of series add up (and
/// are divided by the replication factor, since every copy counts on its node); counts of
/// distinct values take the largest node's (a lower bound: nodes share values).
const SUMMED_LISTS: [&str; 4] = [
    "seriesCountByMetricName",
    "seriesCountByLabelName",
    "seriesCountByFocusLabelValue",
    "seriesCountByLabelValuePair",
];
const MAX_LISTS: [&str; 1] = ["labelValueCountByLabelName"];

/// Merges the nodes' status objects; see [`SUMMED_LISTS`].
pub fn merge_tsdb_status(parts: &[serde_json::Value], replication_factor: u64, top_n: usize) -> serde_json::Value {
    let rf = replication_factor.max(1);
    let total = |key: &str| parts.iter().filter_map(|p| p[key].as_u64()).sum::<u64>() / rf;
    let mut out = serde_json::Map::new();
    out.insert("totalSeries".into(), total("totalSeries").into());
    out.insert("totalLabelValuePairs".into(), total("totalLabelValuePairs").into());
    let lists = SUMMED_LISTS
        .iter()
        .map(|k| (*k, true))
        .chain(MAX_LISTS.iter().map(|k| (*k, false)));
    for (key, summed) in lists {
        let mut by_name: HashMap<String, u64> = HashMap::new();
        for p in parts {
            for e in p[key].as_array().into_iter().flatten() {
                let (Some(name), Some(value)) = (e["name"].as_str(), e["value"].as_u64()) else {
                    continue;
                };
                let slot = by_name.entry(name.to_owned()).or_default();
                *slot = if summed { *slot + value } else { (*slot).max(value) };
            }
        }
        let mut entries: Vec<(String, u64)> = by_name
            .into_iter()
            .map(|(n, v)| (n, if summed { v.div_ceil(rf) } else { v }))
            .collect();
        entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        entries.truncate(top_n);
        let list: Vec<serde_json::Value> = entries
            .into_iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        out.insert(key.into(), list.into());
    }
    serde_json::Value::Object(out)
}

/// `/api/v1/status/tsdb?topN=10&date=YYYY-MM-DD&focusLabel=...` for `tenant`.
pub async fn tsdb_status(
    cluster: Arc<SelectCluster>,
    tenant: Tenant,
    p: Params,
    deny_partial: bool,
) -> Result<Response, ApiError> {
    let top_n = match get(&p, "topN") {
        None => 10,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid("topN", "must be an integer from 1 to 1000"))?,
    };
    let date_ms = match get(&p, "date") {
        None => now_ms(),
        Some(v) => parse_date(v).ok_or_else(|| invalid("date", "expected YYYY-MM-DD"))?,
    };
    let focus = get(&p, "focusLabel").map(str::to_owned);
    let rf = cluster.replication_factor() as u64;
    let (parts, status) = tokio::task::spawn_blocking(move || {
        // Ask each node for more than topN: an entry just below one node's cut may still make
        // the merged top list.
        cluster.tsdb_status(tenant, date_ms, focus.as_deref(), (top_n * 2).min(1000))
    })
    .await
    .map_err(|e| ApiError::internal(format!("status task failed: {e}")))?
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    if status.is_partial() && deny_partial {
        return Err(ApiError::unavailable(
            "some storage nodes did not answer and partial responses are denied",
        ));
    }
    let data = merge_tsdb_status(&parts, rf, top_n);
    Ok(axum::Json(serde_json::json!({
        "status": "success",
        "isPartial": status.is_partial(),
        "data": data,
    }))
    .into_response())
}

/// `/admin/tenants`: `{"status":"success","data":["0:0","1:5",...]}`, every tenant that wrote
/// to any storage node.
pub async fn tenants(cluster: Arc<SelectCluster>) -> Result<Response, ApiError> {
    let list = tokio::task::spawn_blocking(move || cluster.tenants())
        .await
        .map_err(|e| ApiError::internal(format!("tenants task failed: {e}")))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let data: Vec<String> = list
        .iter()
        .map(|t| format!("{}:{}", t.account_id, t.project_id))
        .collect();
    Ok(axum::Json(serde_json::json!({"status": "success", "data": data})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_date("2024-03-01"), Some(1_709_251_200_000));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("x"), None);
        let p: Params = vec![("start".into(), "1.5".into()), ("end".into(), "abc".into())];
        assert_eq!(time_param(&p, "start", 0).unwrap(), 1500);
        assert!(time_param(&p, "end", 0).is_err());
        assert_eq!(time_param(&p, "missing", 7).unwrap(), 7);
    }

    #[test]
    fn status_merges_over_nodes_and_replication() {
        let node = |m: u64, labels: u64| {
            serde_json::json!({
                "totalSeries": m,
                "totalLabelValuePairs": m * 2,
                "seriesCountByMetricName": [{"name": "up", "value": m}, {"name": "only_here", "value": 1}],
                "labelValueCountByLabelName": [{"name": "instance", "value": labels}],
            })
        };
        let merged = merge_tsdb_status(&[node(10, 5), node(20, 9)], 2, 10);
        assert_eq!(merged["totalSeries"], 15);
        assert_eq!(merged["totalLabelValuePairs"], 30);
        assert_eq!(
            merged["seriesCountByMetricName"],
            serde_json::json!([{"name": "up", "value": 15}, {"name": "only_here", "value": 1}])
        );
        assert_eq!(merged["labelValueCountByLabelName"][0]["value"], 9);
        assert_eq!(merged["seriesCountByLabelName"], serde_json::json!([]));
        let top1 = merge_tsdb_status(&[node(10, 5)], 1, 1);
        assert_eq!(top1["seriesCountByMetricName"].as_array().unwrap().len(), 1);
    }
}
