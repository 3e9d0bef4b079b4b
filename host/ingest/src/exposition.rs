//! The Prometheus text exposition format (version 0.0.4): the parser behind
//! `/api/v1/import/prometheus`, reused by the scrape agent.
//!
//! ```text
//! # HELP http_requests_total The total number of HTTP requests.
//! # TYPE http_requests_total counter
//! http_requests_total{method="post",code="200"} 1027 1395066363000
//! ```
//!
//! Accepted: `# HELP` / `# TYPE` lines (reported), other comments (skipped), blank lines, label
//! values with the `\\`, `\"` and `\n` escapes, a trailing comma in the label list, values as Go
//! parses them (`NaN`, `+Inf`, `-Inf`, exponents), an optional integer timestamp in ms, and an
//! OpenMetrics exemplar or `# EOF` (ignored). Errors name the line and column.

use std::borrow::Cow;

use crate::batch::MetricBatch;
use crate::error::{IngestError, RejectReason};

/// One meaningful line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a> {
    /// A sample.
    Sample(Sample<'a>),
    /// `# HELP name text` (text still escaped as in the exposition).
    Help {
        /// Metric family name.
        name: &'a str,
        /// Help text.
        text: &'a str,
    },
    /// `# TYPE name kind`.
    Type {
        /// Metric family name.
        name: &'a str,
        /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
        kind: &'a str,
    },
}

/// A sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric name.
    pub name: &'a str,
    /// Labels in the order written; values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value (bit pattern as parsed).
    pub value: f64,
    /// The timestamp in ms, if the line has one.
    pub timestamp: Option<i64>,
}

/// A syntax error at a line and column (both 1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {what}")]
pub struct ParseError {
    /// Line number.
    pub line: usize,
    /// Column (byte-based).
    pub column: usize,
    /// What is wrong.
    pub what: String,
}

/// Iterates over the lines of an exposition.
pub struct Parser<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
}

impl<'a> Parser<'a> {
    /// A parser over `text`.
    pub fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().enumerate(),
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        for (index, line) in self.lines.by_ref() {
            match parse_line(line) {
                Ok(Some(parsed)) => return Some(Ok(parsed)),
                Ok(None) => continue,
                Err((column, what)) => {
                    return Some(Err(ParseError {
                        line: index + 1,
                        column: column + 1,
                        what,
                    }));
                }
            }
        }
        None
    }
}

type LineResult<'a> = Result<Option<Line<'a>>, (usize, String)>;

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && (bytes[pos] == b' ' || bytes[pos] == b'\t') {
        pos += 1;
    }
    pos
}

fn token_end(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos] != b' ' && bytes[pos] != b'\t' {
        pos += 1;
    }
    pos
}

fn parse_line(line: &str) -> LineResult<'_> {
    let bytes = line.as_bytes();
    let start = skip_ws(bytes, 0);
    if start == bytes.len() {
        return Ok(None);
    }
    if bytes[start] == b'#' {
        return Ok(parse_comment(line, start + 1));
    }
    parse_sample(line, start).map(|s| Some(Line::Sample(s)))
}

fn parse_comment(line: &str, pos: usize) -> Option<Line<'_>> {
    let bytes = line.as_bytes();
    let kw_start = skip_ws(bytes, pos);
    let kw_end = token_end(bytes, kw_start);
    let keyword = &line[kw_start..kw_end];
    if keyword != "HELP" && keyword != "TYPE" {
        return None;
    }
    let name_start = skip_ws(bytes, kw_end);
    let name_end = token_end(bytes, name_start);
    if name_start == name_end {
        return None;
    }
    let name = &line[name_start..name_end];
    let rest_start = skip_ws(bytes, name_end);
    let rest = &line[rest_start..];
    if keyword == "HELP" {
        Some(Line::Help { name, text: rest })
    } else {
        Some(Line::Type {
            name,
            kind: rest.trim_end(),
        })
    }
}

fn parse_sample(line: &str, start: usize) -> Result<Sample<'_>, (usize, String)> {
    let bytes = line.as_bytes();
    let mut pos = start;
    if !is_name_start(bytes[pos]) {
        return Err((pos, "expected a metric name".into()));
    }
    while pos < bytes.len() && is_name_char(bytes[pos]) {
        pos += 1;
    }
    let name = &line[start..pos];
    let mut labels = Vec::new();
    let brace = skip_ws(bytes, pos);
    let has_labels = bytes.get(brace) == Some(&b'{');
    if has_labels {
        pos = parse_labels(line, brace + 1, &mut labels)?;
    }
    let value_start = skip_ws(bytes, pos);
    // `name{...}1` is unambiguous, but `name1` is just a longer name.
    if !has_labels && value_start == pos && pos < bytes.len() {
        return Err((pos, "expected whitespace before the value".into()));
    }
    let value_end = token_end(bytes, value_start);
    if value_start == value_end {
        return Err((value_start, "missing value".into()));
    }
    let value = parse_value(&line[value_start..value_end]).ok_or_else(|| {
        (
            value_start,
            format!(
                "invalid value \"{}\"",
                crate::batch::truncate(&line[value_start..value_end], 40)
            ),
        )
    })?;
    let ts_start = skip_ws(bytes, value_end);
    let mut timestamp = None;
    if ts_start < bytes.len() && bytes[ts_start] != b'#' {
        let ts_end = token_end(bytes, ts_start);
        let token = &line[ts_start..ts_end];
        timestamp = Some(token.parse::<i64>().map_err(|_| {
            (
                ts_start,
                format!("invalid timestamp \"{}\"", crate::batch::truncate(token, 40)),
            )
        })?);
        let after = skip_ws(bytes, ts_end);
        if after < bytes.len() && bytes[after] != b'#' {
            return Err((after, "unexpected text after the timestamp".into()));
        }
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses `name="value", ...}` starting after the `{`; returns the position after the `}`.
fn parse_labels<'a>(
    line: &'a str,
    mut pos: usize,
    out: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<usize, (usize, String)> {
    let bytes = line.as_bytes();
    loop {
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            None => return Err((pos, "unterminated label list".into())),
            Some(b'}') => return Ok(pos + 1),
            Some(_) => {}
        }
        let name_start = pos;
        if !(bytes[pos].is_ascii_alphabetic() || bytes[pos] == b'_') {
            return Err((pos, "expected a label name".into()));
        }
        while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_') {
            pos += 1;
        }
        let name = &line[name_start..pos];
        pos = skip_ws(bytes, pos);
        if bytes.get(pos) != Some(&b'=') {
            return Err((pos, format!("expected '=' after label name \"{name}\"")));
        }
        pos = skip_ws(bytes, pos + 1);
        if bytes.get(pos) != Some(&b'"') {
            return Err((pos, format!("expected '\"' to open the value of label \"{name}\"")));
        }
        let (value, next) = parse_quoted(line, pos + 1)?;
        out.push((name, value));
        pos = skip_ws(bytes, next);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b'}') => return Ok(pos + 1),
            _ => return Err((pos, "expected ',' or '}' after a label".into())),
        }
    }
}

/// Parses a quoted label value body starting after the opening quote.
fn parse_quoted(line: &str, start: usize) -> Result<(Cow<'_, str>, usize), (usize, String)> {
    let bytes = line.as_bytes();
    let mut pos = start;
    let mut owned: Option<String> = None;
    let mut run_start = start;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => {
                let value = match owned {
                    Some(mut s) => {
                        s.push_str(&line[run_start..pos]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&line[start..pos]),
                };
                return Ok((value, pos + 1));
            }
            b'\\' => {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&line[run_start..pos]);
                match bytes.get(pos + 1) {
                    Some(b'\\') => s.push('\\'),
                    Some(b'"') => s.push('"'),
                    Some(b'n') => s.push('\n'),
                    _ => return Err((pos, "invalid escape in label value (allowed: \\\\, \\\", \\n)".into())),
                }
                pos += 2;
                run_start = pos;
            }
            _ => pos += 1,
        }
    }
    Err((start, "unterminated label value".into()))
}

/// Parses a sample value as Go's `strconv.ParseFloat` would for the forms exporters write.
pub fn parse_value(token: &str) -> Option<f64> {
    match token {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust accepts "infinity" and friends too; both sides agree on decimal forms.
            token.parse::<f64>().ok()
        }
    }
}

/// Parses an exposition into `batch`, one series per sample line, stamping lines without a
/// timestamp with `default_timestamp`. Returns the number of samples added. On error the
/// batch holds a partial result and must be discarded.
pub fn parse_into_batch(text: &str, default_timestamp: i64, batch: &mut MetricBatch) -> Result<usize, IngestError> {
    let mut samples = 0;
    for line in Parser::new(text) {
        let line =
            line.map_err(|e| IngestError::new(RejectReason::Exposition, format!("cannot parse exposition: {e}")))?;
        if let Line::Sample(s) = line {
            batch.push_label("__name__", s.name)?;
            for (name, value) in &s.labels {
                batch.push_label(name, value)?;
            }
            batch.push_sample(s.timestamp.unwrap_or(default_timestamp), s.value);
            batch.finish_series()?;
            samples += 1;
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples(text: &str) -> Vec<Sample<'_>> {
        Parser::new(text)
            .filter_map(|l| match l.unwrap() {
                Line::Sample(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parses_the_reference_example() {
        let text = r#"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400",} 3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
rpc_duration_seconds{quantile="0.5"} NaN
"#;
        let lines: Vec<_> = Parser::new(text).map(Result::unwrap).collect();
        assert_eq!(
            lines[0],
            Line::Help {
                name: "http_requests_total",
                text: "The total number of HTTP requests."
            }
        );
        assert_eq!(
            lines[1],
            Line::Type {
                name: "http_requests_total",
                kind: "counter"
            }
        );
        let s = samples(text);
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].labels, vec![("method", "post".into()), ("code", "200".into())]);
        assert_eq!(s[0].timestamp, Some(1_395_066_363_000));
        assert_eq!(s[1].labels.len(), 2);
        assert_eq!(s[2].labels[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(s[2].labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(s[2].value, 1.458255915e9);
        assert_eq!(s[3].timestamp, None);
        assert!(s[4].value.is_infinite() && s[4].timestamp == Some(-3_982_045));
        assert!(s[5].value.is_nan());
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            ("ok 1\nbad{a=\"b\" 1", 2, "expected ',' or '}'"),
            ("m{a=b} 1", 1, "to open the value"),
            ("m 1 2 3", 1, "after the timestamp"),
            ("m abc", 1, "invalid value"),
            ("m{a=\"x\\q\"} 1", 1, "invalid escape"),
            ("m{1a=\"x\"} 1", 1, "expected a label name"),
            ("m", 1, "missing value"),
            ("m{a=\"x} 1", 1, "unterminated"),
            ("m 1 12.5", 1, "invalid timestamp"),
        ];
        for (text, line, what) in cases {
            let err = Parser::new(text)
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.what.contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn exemplars_and_eof_are_ignored() {
        let s = samples("m_bucket{le=\"1\"} 5 # {trace_id=\"abc\"} 0.5\n# EOF\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].value, 5.0);
        assert_eq!(s[0].timestamp, None);
    }

    #[test]
    fn into_batch_uses_default_timestamp() {
        let mut b = MetricBatch::new();
        let n = parse_into_batch("a{x=\"1\"} 2\nb 3 77\n", 1000, &mut b).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            b.series(0).labels().collect::<Vec<_>>(),
            vec![("__name__", "a"), ("x", "1")]
        );
        assert_eq!(b.series(0).timestamps(), &[1000]);
        assert_eq!(b.series(1).timestamps(), &[77]);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            for line in Parser::new(&text) {
                let _ = line;
            }
        }

        #[test]
        fn label_values_round_trip(value in "\\PC{0,30}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let text = format!("m{{l=\"{escaped}\"}} 1\n");
            let s = samples(&text);
            prop_assert_eq!(s[0].labels[0].1.as_ref(), value.as_str());
        }
    }
}
