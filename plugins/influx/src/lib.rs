//! InfluxDB line protocol for Strata, as VictoriaMetrics maps it: every field of a line becomes
//! a series named `{measurement}_{field}` whose labels are the line's tags, plus `db` from the
//! query string when the line has no `db` tag. String fields are skipped; booleans are 1/0.
//!
//! Query parameters: `precision` (`ns` default, `u`/`us`, `ms`, `s`, `m`, `h`) and `db`.
//! Config keys: `measurement_field_separator` (default `_`), `skip_single_field`
//! (`true`: a line with one field is named `{measurement}`).
//! Names are made Prometheus-compatible: characters outside `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]`
//! for labels) become `_`, since the host refuses invalid names.

use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError, param};

/// The plugin.
pub struct Influx;

impl IngestPlugin for Influx {
    fn describe() -> IngestInfo {
        IngestInfo::new("influx", env!("CARGO_PKG_VERSION"))
            .http_path("/write")
            .http_path("/influx/write")
            .http_path("/api/v2/write")
            .content_type("text/plain")
            .line_framed()
    }

    fn parse(params: &Params, body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
        let config = strata_plugin_sdk::host::config();
        let opts = Options {
            separator: param(&config, "measurement_field_separator").unwrap_or("_").to_string(),
            skip_single_field: param(&config, "skip_single_field") == Some("true"),
        };
        parse_lines(params, body, default_ts_ms, &opts, out)
    }
}

strata_plugin_sdk::export_ingest!(Influx);

/// Naming options (from the plugin's config).
#[derive(Clone, Debug)]
pub struct Options {
    /// Between measurement and field name.
    pub separator: String,
    /// Name a single-field line by its measurement only.
    pub skip_single_field: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            separator: "_".into(),
            skip_single_field: false,
        }
    }
}

/// Multiplier and divisor turning a timestamp of `precision` into milliseconds.
fn precision_to_ms(precision: Option<&str>) -> Result<(i64, i64), String> {
    Ok(match precision.unwrap_or("ns") {
        "ns" | "n" | "" => (1, 1_000_000),
        "u" | "us" | "µ" => (1, 1_000),
        "ms" => (1, 1),
        "s" => (1_000, 1),
        "m" => (60_000, 1),
        "h" => (3_600_000, 1),
        other => return Err(format!("unknown precision {other:?}; use ns, us, ms, s, m or h")),
    })
}

/// Parses a body of lines into `out`. Exposed for native tests and benchmarks.
pub fn parse_lines(
    params: &Params,
    body: &[u8],
    default_ts_ms: i64,
    opts: &Options,
    out: &mut BatchBuilder,
) -> Result<(), ParseError> {
    let (mul, div) = precision_to_ms(param(params, "precision")).map_err(|m| ParseError::new(0, 0, m))?;
    let db = param(params, "db").filter(|d| !d.is_empty());
    let text =
        std::str::from_utf8(body).map_err(|e| ParseError::new(0, e.valid_up_to() as u64, "body is not valid UTF-8"))?;
    let mut offset = 0usize;
    let mut scratch = Line::default();
    let mut name = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_offset = offset;
        offset += raw.len() + 1;
        let line = raw.trim_end_matches('\r').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |pos: usize, m: String| ParseError::new((i + 1) as u32, (line_offset + pos) as u64, m);
        scratch.clear();
        parse_line(line, &mut scratch).map_err(|(pos, m)| err(pos + (raw.len() - line.len()), m))?;
        let ts = match scratch.timestamp {
            None => default_ts_ms,
            Some(t) => t
                .checked_mul(mul)
                .map(|t| t / div)
                .ok_or_else(|| err(0, "timestamp overflows".into()))?,
        };
        let single = opts.skip_single_field && scratch.fields.len() == 1;
        let has_db_tag = scratch.tags.iter().any(|(k, _)| k == "db");
        for (field, value) in &scratch.fields {
            let Some(value) = value else { continue };
            name.clear();
            if scratch.measurement.is_empty() || single {
                if single && !scratch.measurement.is_empty() {
                    name.push_str(&scratch.measurement);
                } else {
                    name.push_str(field);
                }
            } else {
                name.push_str(&scratch.measurement);
                name.push_str(&opts.separator);
                name.push_str(field);
            }
            sanitize(&mut name, true);
            out.label("__name__", &name);
            for (k, v) in &scratch.tags {
                out.label(k, v);
            }
            if let (Some(db), false) = (db, has_db_tag) {
                out.label("db", db);
            }
            out.sample(ts, *value);
            out.finish_series();
        }
    }
    Ok(())
}

/// One parsed line, reused between lines to keep allocations down.
#[derive(Default)]
struct Line {
    measurement: String,
    tags: Vec<(String, String)>,
    /// `None` values are string fields, which are skipped.
    fields: Vec<(String, Option<f64>)>,
    timestamp: Option<i64>,
}

impl Line {
    fn clear(&mut self) {
        self.measurement.clear();
        self.tags.clear();
        self.fields.clear();
        self.timestamp = None;
    }
}

fn sanitize(s: &mut String, metric: bool) {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
    if s.chars().all(ok) && !s.starts_with(|c: char| c.is_ascii_digit()) {
        return;
    }
    let mut fixed: String = s.chars().map(|c| if ok(c) { c } else { '_' }).collect();
    if fixed.starts_with(|c: char| c.is_ascii_digit()) {
        fixed.insert(0, '_');
    }
    *s = fixed;
}

/// Reads an escaped token up to one of `stops` (unescaped); returns the text and the index
/// of the stop character (or the end).
fn token(line: &str, start: usize, stops: &[u8], out: &mut String) -> usize {
    let b = line.as_bytes();
    let mut i = start;
    let mut run = start;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && matches!(b[i + 1], b',' | b'=' | b' ' | b'\\' | b'"') {
            out.push_str(&line[run..i]);
            i += 1;
            run = i;
            i += 1;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        i += 1;
    }
    out.push_str(&line[run..i]);
    i
}

type LineError = (usize, String);

fn parse_line(line: &str, l: &mut Line) -> Result<(), LineError> {
    let b = line.as_bytes();
    let mut i = token(line, 0, b", ", &mut l.measurement);
    if l.measurement.is_empty() {
        return Err((0, "missing measurement".into()));
    }
    while i < b.len() && b[i] == b',' {
        let (mut k, mut v) = (String::new(), String::new());
        let eq = token(line, i + 1, b"=, ", &mut k);
        if eq >= b.len() || b[eq] != b'=' || k.is_empty() {
            return Err((i + 1, "tag without `=`".into()));
        }
        i = token(line, eq + 1, b", ", &mut v);
        if v.is_empty() {
            return Err((eq + 1, format!("tag {k:?} has an empty value")));
        }
        sanitize(&mut k, false);
        l.tags.push((k, v));
    }
    if i >= b.len() || b[i] != b' ' {
        return Err((i, "missing fields".into()));
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    loop {
        let mut k = String::new();
        let eq = token(line, i, b"= ", &mut k);
        if eq >= b.len() || b[eq] != b'=' || k.is_empty() {
            return Err((i, "field without `=`".into()));
        }
        let (value, next) = field_value(line, eq + 1)?;
        l.fields.push((k, value));
        i = next;
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i < b.len() {
        let ts = line[i..].trim_end();
        l.timestamp = Some(
            ts.parse::<i64>()
                .map_err(|_| (i, format!("invalid timestamp {ts:?}")))?,
        );
    }
    Ok(())
}

fn field_value(line: &str, start: usize) -> Result<(Option<f64>, usize), LineError> {
    let b = line.as_bytes();
    if b.get(start) == Some(&b'"') {
        let mut i = start + 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Ok((None, i + 1)),
                _ => i += 1,
            }
        }
        return Err((start, "unterminated string field".into()));
    }
    let end = b[start..]
        .iter()
        .position(|&c| c == b',' || c == b' ')
        .map_or(b.len(), |p| start + p);
    let raw = &line[start..end];
    let v = match raw {
        "t" | "T" | "true" | "True" | "TRUE" => 1.0,
        "f" | "F" | "false" | "False" | "FALSE" => 0.0,
        _ if raw.ends_with('i') || raw.ends_with('u') => raw[..raw.len() - 1]
            .parse::<i64>()
            .map(|v| v as f64)
            .or_else(|_| raw[..raw.len() - 1].parse::<u64>().map(|v| v as f64))
            .map_err(|_| (start, format!("invalid integer field value {raw:?}")))?,
        _ => raw
            .parse::<f64>()
            .map_err(|_| (start, format!("invalid field value {raw:?}")))?,
    };
    Ok((Some(v), end))
}

#[cfg(test)]
mod tests;
