//! OpenTSDB for Strata: telnet `put` lines (TCP `:4242`) and HTTP `POST /api/put` JSON.
//!
//! - Telnet: `put <metric> <timestamp> <value> <tagk=tagv> [...]`. Other commands are refused.
//! - HTTP: one data point object or an array of them:
//!   `{"metric": "sys.cpu", "timestamp": 1700000000, "value": 1.5, "tags": {"host": "a"}}`;
//!   `value` may be a number or a numeric string, `timestamp` a number or numeric string.
//!
//! Timestamps of up to 10 digits are seconds, longer ones milliseconds (OpenTSDB's rule);
//! 0 or missing means "now". The metric name is kept as is (dots included), tags become labels
//! with names made valid (`[a-zA-Z_][a-zA-Z0-9_]*`). A body starting with `{` or `[` is JSON,
//! anything else telnet lines, so `/api/put` also takes `put` lines.

use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError};

/// The plugin.
pub struct OpenTsdb;

impl IngestPlugin for OpenTsdb {
    fn describe() -> IngestInfo {
        IngestInfo::new("opentsdb", env!("CARGO_PKG_VERSION"))
            .http_path("/api/put")
            .content_type("application/json")
            .content_type("text/plain")
            .line_framed()
    }

    fn parse(_params: &Params, body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
        parse_body(body, default_ts_ms, out)
    }
}

strata_plugin_sdk::export_ingest!(OpenTsdb);

/// Parses a JSON body or telnet lines into `out`, by the first non-blank byte.
pub fn parse_body(body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => parse_json(body, default_ts_ms, out),
        _ => parse_telnet(body, default_ts_ms, out),
    }
}

/// OpenTSDB timestamps: up to 10 digits are seconds, more are milliseconds; 0 is "now".
fn timestamp_ms(t: i64, default_ts_ms: i64) -> Result<i64, String> {
    match t {
        0 => Ok(default_ts_ms),
        t if t < 0 => Err(format!("negative timestamp {t}")),
        t if t < 10_000_000_000 => Ok(t * 1000),
        t => Ok(t),
    }
}

fn label_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn push_point<'a>(
    out: &mut BatchBuilder,
    metric: &str,
    ts: i64,
    value: f64,
    tags: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    if metric.is_empty() {
        return Err("empty metric name".into());
    }
    out.label("__name__", metric);
    for (k, v) in tags {
        if k.is_empty() {
            out.abandon_series();
            return Err("empty tag name".into());
        }
        let k = label_name(k);
        if k == "__name__" {
            continue;
        }
        out.label(&k, v);
    }
    out.sample(ts, value);
    out.finish_series();
    Ok(())
}

/// Parses telnet `put` lines.
pub fn parse_telnet(body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
    let text =
        std::str::from_utf8(body).map_err(|e| ParseError::new(0, e.valid_up_to() as u64, "body is not valid UTF-8"))?;
    let mut offset = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let line_offset = offset;
        offset += raw.len() + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        telnet_line(line, default_ts_ms, out)
            .map_err(|m| ParseError::new(i as u32 + 1, line_offset as u64, format!("{m}: {line:?}")))?;
    }
    Ok(())
}

fn telnet_line(line: &str, default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), String> {
    let mut f = line.split_ascii_whitespace();
    match f.next() {
        Some("put") => {}
        Some(other) => return Err(format!("unsupported command {other:?}; only `put` is")),
        None => return Ok(()),
    }
    let want = "want `put <metric> <timestamp> <value> <tagk=tagv> ...`";
    let metric = f.next().ok_or_else(|| format!("missing metric; {want}"))?;
    let ts = f.next().ok_or_else(|| format!("missing timestamp; {want}"))?;
    let value = f.next().ok_or_else(|| format!("missing value; {want}"))?;
    let ts: i64 = ts.parse().map_err(|_| format!("invalid timestamp {ts:?}"))?;
    let value: f64 = value.parse().map_err(|_| format!("invalid value {value:?}"))?;
    let tags: Vec<(&str, &str)> = f
        .map(|t| t.split_once('=').ok_or_else(|| format!("tag {t:?} is not tagk=tagv")))
        .collect::<Result<_, _>>()?;
    push_point(out, metric, timestamp_ms(ts, default_ts_ms)?, value, tags.into_iter())
}

/// Parses an `/api/put` JSON body.
pub fn parse_json(body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::new(e.line() as u32, 0, format!("invalid JSON: {e}")))?;
    let points = match &doc {
        serde_json::Value::Array(a) => a.as_slice(),
        serde_json::Value::Object(_) => std::slice::from_ref(&doc),
        _ => return Err(ParseError::new(0, 0, "want a data point object or an array of them")),
    };
    for (i, p) in points.iter().enumerate() {
        json_point(p, default_ts_ms, out).map_err(|m| ParseError::new(0, 0, format!("data point {i}: {m}")))?;
    }
    Ok(())
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_point(p: &serde_json::Value, default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), String> {
    let obj = p.as_object().ok_or("not an object")?;
    let metric = obj
        .get("metric")
        .and_then(|m| m.as_str())
        .ok_or("missing \"metric\" string")?;
    let value = obj
        .get("value")
        .and_then(number)
        .ok_or("missing or non-numeric \"value\"")?;
    let ts = match obj.get("timestamp") {
        None | Some(serde_json::Value::Null) => 0,
        Some(t) => {
            let t = number(t).ok_or("non-numeric \"timestamp\"")?;
            if t.fract() != 0.0 || !t.is_finite() {
                return Err(format!("timestamp {t} is not an integer"));
            }
            t as i64
        }
    };
    let mut tags: Vec<(&str, String)> = Vec::new();
    if let Some(t) = obj.get("tags") {
        let t = t.as_object().ok_or("\"tags\" is not an object")?;
        for (k, v) in t {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(format!("tag {k:?} is not a string")),
            };
            tags.push((k.as_str(), v));
        }
    }
    push_point(
        out,
        metric,
        timestamp_ms(ts, default_ts_ms)?,
        value,
        tags.iter().map(|(k, v)| (*k, v.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<strata_plugin_sdk::Batch, ParseError> {
        let mut out = BatchBuilder::new();
        parse_body(body.as_bytes(), 7_000, &mut out)?;
        Ok(out.finish())
    }

    fn sorted<'a>(mut v: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        v.sort();
        v
    }

    #[test]
    fn telnet_put_lines() {
        let b = parse("put sys.cpu.user 1700000000 42.5 host=web01 cpu=0\nput x 1700000000123 1 a=b\n").unwrap();
        assert_eq!(b.series_count(), 2);
        assert_eq!(
            sorted(b.labels(0)),
            vec![("__name__", "sys.cpu.user"), ("cpu", "0"), ("host", "web01")]
        );
        assert_eq!(b.samples(0), vec![(1_700_000_000_000, 42.5)]);
        assert_eq!(b.samples(1), vec![(1_700_000_000_123, 1.0)]);
    }

    #[test]
    fn telnet_errors() {
        let e = parse("put a 1 1 t=v\nversion\n").unwrap_err();
        assert_eq!((e.line, e.offset), (2, 14));
        for bad in [
            "put",
            "put a",
            "put a 1",
            "put a x 1",
            "put a 1 x",
            "put a 1 1 tag",
            "put a -5 1",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn json_object_and_array() {
        let b =
            parse(r#"{"metric":"m.x","timestamp":1700000000,"value":1.5,"tags":{"host":"a","dc":"eu-1"}}"#).unwrap();
        assert_eq!(
            sorted(b.labels(0)),
            vec![("__name__", "m.x"), ("dc", "eu-1"), ("host", "a")]
        );
        assert_eq!(b.samples(0), vec![(1_700_000_000_000, 1.5)]);
        let b = parse(
            r#" [{"metric":"a","timestamp":"1700000000500","value":"2","tags":{"k.1":3}},
                 {"metric":"b","value":3}]"#,
        )
        .unwrap();
        assert_eq!(b.series_count(), 2);
        assert_eq!(sorted(b.labels(0)), vec![("__name__", "a"), ("k_1", "3")]);
        assert_eq!(b.samples(0), vec![(1_700_000_000_500, 2.0)]);
        assert_eq!(b.samples(1), vec![(7_000, 3.0)]);
    }

    #[test]
    fn json_errors() {
        for bad in [
            "{",
            r#"{"value":1}"#,
            r#"{"metric":"a"}"#,
            r#"{"metric":"a","value":"x"}"#,
            r#"{"metric":"a","value":1,"timestamp":1.5}"#,
            r#"{"metric":"a","value":1,"tags":[1]}"#,
            r#"[1]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
