//! VictoriaMetrics' JSON-lines format, for `/api/v1/import` (decode) and `/api/v1/export`
//! (encode). One series per line:
//!
//! ```text
//! {"metric":{"__name__":"bid","ticker":"MSFT"},"values":[1.67,1.68],"timestamps":[1583865146520,1583865147520]}
//! ```
//!
//! Values are JSON numbers. Non-finite values, which JSON numbers cannot express, are written as
//! the strings `"NaN"`, `"+Inf"`, `"-Inf"`; the importer accepts those strings (and any string
//! Go's ParseFloat would take) plus `null` as NaN. The distinction between a stale marker and
//! another NaN is not kept by this format.
//!
//! Import sorts each line's samples by timestamp (exports are sorted already; hand-written
//! files often are not), so unsorted input is not an error here.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Deserialize;

use crate::batch::MetricBatch;
use crate::error::{IngestError, RejectReason};
use crate::exposition::parse_value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    metric: BTreeMap<String, String>,
    values: Vec<serde_json::Value>,
    timestamps: Vec<i64>,
}

fn json_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => parse_value(s),
        serde_json::Value::Null => Some(f64::NAN),
        _ => None,
    }
}

/// Decodes JSON lines into `batch`, one series per line. Returns the number of samples added.
/// Errors name the line. On error the batch holds a partial result and must be discarded.
pub fn decode_import(body: &[u8], batch: &mut MetricBatch) -> Result<usize, IngestError> {
    let mut samples = 0;
    let mut pairs: Vec<(i64, f64)> = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let bad = |what: String| IngestError::new(RejectReason::Json, format!("line {line_no}: {what}"));
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: JsonLine = serde_json::from_slice(line).map_err(|e| bad(format!("cannot parse JSON: {e}")))?;
        if parsed.values.len() != parsed.timestamps.len() {
            return Err(bad(format!(
                "{} values but {} timestamps; both arrays must have the same length",
                parsed.values.len(),
                parsed.timestamps.len()
            )));
        }
        pairs.clear();
        for (k, (v, &ts)) in parsed.values.iter().zip(&parsed.timestamps).enumerate() {
            let value = json_value(v).ok_or_else(|| bad(format!("values[{k}] is not a number: {v}")))?;
            pairs.push((ts, value));
        }
        pairs.sort_by_key(|&(ts, _)| ts);
        for (name, value) in &parsed.metric {
            batch.push_label(name, value)?;
        }
        for &(ts, v) in &pairs {
            batch.push_sample(ts, v);
        }
        batch.finish_series()?;
        samples += pairs.len();
    }
    Ok(samples)
}

/// Appends one export line (with its trailing newline) for a series. `labels` should start with
/// `__name__` when the series has one, as VictoriaMetrics writes it.
pub fn encode_export_line<'a>(
    out: &mut Vec<u8>,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    timestamps: &[i64],
    values: &[f64],
) {
    out.extend_from_slice(b"{\"metric\":{");
    for (k, (name, value)) in labels.into_iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_json_string(out, name);
        out.push(b':');
        write_json_string(out, value);
    }
    out.extend_from_slice(b"},\"values\":[");
    for (k, &v) in values.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_value(out, v);
    }
    out.extend_from_slice(b"],\"timestamps\":[");
    for (k, &ts) in timestamps.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{ts}");
    }
    out.extend_from_slice(b"]}\n");
}

/// [`encode_export_line`] for a series of a [`MetricBatch`] (`__name__` first, as VictoriaMetrics
/// writes it).
pub fn encode_export_series(out: &mut Vec<u8>, series: crate::batch::SeriesRef<'_>) {
    let name = series.label("__name__").map(|v| ("__name__", v));
    let rest = series.labels().filter(|(n, _)| *n != "__name__");
    encode_export_line(out, name.into_iter().chain(rest), series.timestamps(), series.values());
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct for every code point; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"\"+Inf\"" } else { b"\"-Inf\"" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Integral values print without ".0", as VictoriaMetrics does.
        let _ = write!(out, "{}", v as i64);
    } else {
        // Debug formatting is the shortest representation that round-trips, with an exponent
        // for very large or small magnitudes, which is valid JSON.
        let _ = write!(out, "{v:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_documented_example() {
        let body = br#"{"metric":{"__name__":"bid","ticker":"MSFT"},"values":[1.67],"timestamps":[1583865146520]}
{"metric":{"__name__":"ask"},"values":[2,1,"NaN",null],"timestamps":[30,10,20,40]}
"#;
        let mut b = MetricBatch::new();
        assert_eq!(decode_import(body, &mut b).unwrap(), 5);
        assert_eq!(
            b.series(0).labels().collect::<Vec<_>>(),
            vec![("__name__", "bid"), ("ticker", "MSFT")]
        );
        assert_eq!(b.series(0).values(), &[1.67]);
        assert_eq!(b.series(1).timestamps(), &[10, 20, 30, 40]);
        assert_eq!(b.series(1).values()[0], 1.0);
        assert!(b.series(1).values()[1].is_nan() && b.series(1).values()[3].is_nan());
        assert_eq!(b.series(1).values()[2], 2.0);
    }

    #[test]
    fn errors_name_the_line() {
        for (body, what) in [
            (&b"{\"metric\":{},\"values\":[1],\"timestamps\":[]}"[..], "same length"),
            (b"\n{not json", "line 2: cannot parse JSON"),
            (
                b"{\"metric\":{},\"values\":[true],\"timestamps\":[1]}",
                "values[0] is not a number",
            ),
            (
                b"{\"metric\":{\"a\":1},\"values\":[],\"timestamps\":[]}",
                "cannot parse",
            ),
        ] {
            let err = decode_import(body, &mut MetricBatch::new()).unwrap_err();
            assert!(err.message.contains(what), "{err}");
            assert_eq!(err.reason, RejectReason::Json);
        }
    }

    #[test]
    fn export_line_shape() {
        let mut out = Vec::new();
        encode_export_line(
            &mut out,
            [("__name__", "m"), ("q", "a\"b")],
            &[1, 2, 3, 4],
            &[1.0, 0.25, f64::NAN, f64::NEG_INFINITY],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"metric\":{\"__name__\":\"m\",\"q\":\"a\\\"b\"},\"values\":[1,0.25,\"NaN\",\"-Inf\"],\"timestamps\":[1,2,3,4]}\n"
        );
    }

    #[test]
    fn export_series_puts_name_first() {
        let mut b = MetricBatch::new();
        b.add_series([("a", "1"), ("__name__", "m")], [(5, 2.5)]).unwrap();
        let mut out = Vec::new();
        encode_export_series(&mut out, b.series(0));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"metric\":{\"__name__\":\"m\",\"a\":\"1\"},\"values\":[2.5],\"timestamps\":[5]}\n"
        );
    }

    proptest! {
        /// Export then import gives back the same series (NaNs compared as NaN).
        #[test]
        fn export_import_round_trip(
            labels in prop::collection::btree_map("[a-z_]{1,6}", "\\PC{1,10}", 1..4),
            samples in prop::collection::btree_map(any::<i64>(), any::<f64>(), 0..8),
        ) {
            let (ts, vs): (Vec<i64>, Vec<f64>) = samples.into_iter().unzip();
            let mut out = Vec::new();
            encode_export_line(&mut out, labels.iter().map(|(a, b)| (a.as_str(), b.as_str())), &ts, &vs);
            let mut b = MetricBatch::new();
            decode_import(&out, &mut b).unwrap();
            let s = b.series(0);
            let got: Vec<(String, String)> = s.labels().map(|(a, b)| (a.to_owned(), b.to_owned())).collect();
            let want: Vec<(String, String)> = labels.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(s.timestamps(), ts.as_slice());
            for (g, w) in s.values().iter().zip(&vs) {
                prop_assert!((g.is_nan() && w.is_nan()) || g == w, "{} vs {}", g, w);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_import(&bytes, &mut MetricBatch::new());
        }
    }
}
