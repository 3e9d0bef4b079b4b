//! CSV import as VictoriaMetrics does it: `POST /api/v1/import/csv?format=<columns>`.
//!
//! `format` is a comma-separated list of `<column>:<type>:<context>` (columns 1-based):
//! - `N:metric:<name>`: column N is the value of metric `<name>` (an empty cell skips it);
//! - `N:label:<name>`: column N is the value of label `<name>` for every metric of the row;
//! - `N:time:<kind>`: column N is the row's timestamp, `<kind>` one of `unix_s`, `unix_ms`,
//!   `unix_ns`, `rfc3339`. Rows without a time column get the host's time.
//!
//! Example: `format=2:metric:ask,3:metric:bid,1:label:ticker,4:label:market` on
//! `GOOG,1.23,4.56,NYSE` gives `ask{ticker="GOOG",market="NYSE"} 1.23` and
//! `bid{ticker="GOOG",market="NYSE"} 4.56`. `extra_label=name=value` (repeatable) adds labels.
//! Cells may be quoted with `"` (a doubled `""` is a quote inside).

use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError};

/// The plugin.
pub struct Csv;

impl IngestPlugin for Csv {
    fn describe() -> IngestInfo {
        IngestInfo::new("csv", env!("CARGO_PKG_VERSION"))
            .http_path("/api/v1/import/csv")
            .content_type("text/csv")
    }

    fn parse(params: &Params, body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
        let format = strata_plugin_sdk::param(params, "format")
            .ok_or_else(|| ParseError::new(0, 0, "missing `format` query parameter, e.g. format=1:metric:temp"))?;
        let spec = Format::parse(format).map_err(|m| ParseError::new(0, 0, format!("format: {m}")))?;
        let extra: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k == "extra_label")
            .map(|(_, v)| {
                v.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ParseError::new(0, 0, format!("extra_label {v:?} is not name=value")))
            })
            .collect::<Result<_, _>>()?;
        parse_rows(&spec, &extra, body, default_ts_ms, out)
    }
}

strata_plugin_sdk::export_ingest!(Csv);

/// How to read a timestamp cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeKind {
    /// Seconds since the epoch (fractions allowed).
    UnixS,
    /// Milliseconds.
    UnixMs,
    /// Nanoseconds.
    UnixNs,
    /// `2006-01-02T15:04:05Z07:00`, fractions allowed.
    Rfc3339,
}

/// A parsed `format` parameter: 0-based columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Format {
    /// (column, metric name).
    pub metrics: Vec<(usize, String)>,
    /// (column, label name).
    pub labels: Vec<(usize, String)>,
    /// The time column.
    pub time: Option<(usize, TimeKind)>,
}

impl Format {
    /// Parses `1:metric:ask,2:label:ticker,3:time:unix_s`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut f = Format::default();
        for item in s.split(',') {
            let mut parts = item.splitn(3, ':');
            let (Some(col), Some(kind), Some(ctx)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("{item:?} is not <column>:<type>:<context>"));
            };
            let col: usize = col
                .parse()
                .ok()
                .filter(|c| *c >= 1)
                .ok_or_else(|| format!("column {col:?} is not a number from 1"))?;
            let col = col - 1;
            if ctx.is_empty() {
                return Err(format!("{item:?} has an empty context"));
            }
            match kind {
                "metric" => f.metrics.push((col, ctx.to_string())),
                "label" => f.labels.push((col, ctx.to_string())),
                "time" => {
                    if f.time.is_some() {
                        return Err("more than one time column".into());
                    }
                    let k = match ctx {
                        "unix_s" => TimeKind::UnixS,
                        "unix_ms" => TimeKind::UnixMs,
                        "unix_ns" => TimeKind::UnixNs,
                        "rfc3339" => TimeKind::Rfc3339,
                        other => return Err(format!("time kind {other:?}: use unix_s, unix_ms, unix_ns or rfc3339")),
                    };
                    f.time = Some((col, k));
                }
                other => return Err(format!("type {other:?}: use metric, label or time")),
            }
        }
        if f.metrics.is_empty() {
            return Err("no metric column".into());
        }
        Ok(f)
    }
}

/// Splits one CSV line into cells (RFC 4180 quoting, on one line).
pub fn split_cells(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut cell = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cell.push(c),
                    None => return Err("unterminated quoted cell".into()),
                }
            }
            match chars.next() {
                None => {
                    cells.push(cell);
                    return Ok(cells);
                }
                Some(',') => cells.push(cell),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted cell")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        cells.push(cell);
                        return Ok(cells);
                    }
                    Some(',') => break,
                    Some(c) => cell.push(c),
                }
            }
            cells.push(cell);
        }
    }
}

/// Days from 1970-01-01 to `y-m-d` (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2024-02-29T13:45:00.5Z`, `...+02:00`) into milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1000 + frac_ms)
}

fn parse_time(cell: &str, kind: TimeKind) -> Option<i64> {
    let cell = cell.trim();
    match kind {
        TimeKind::UnixS => cell
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| (v * 1000.0).round() as i64),
        TimeKind::UnixMs => cell
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| v.round() as i64),
        TimeKind::UnixNs => cell.parse::<i64>().ok().map(|v| v / 1_000_000),
        TimeKind::Rfc3339 => rfc3339_ms(cell),
    }
}

/// Parses CSV rows by `format` into `out`. Errors name the 1-based line and its offset.
pub fn parse_rows(
    format: &Format,
    extra: &[(String, String)],
    body: &[u8],
    default_ts_ms: i64,
    out: &mut BatchBuilder,
) -> Result<(), ParseError> {
    let text =
        std::str::from_utf8(body).map_err(|e| ParseError::new(0, e.valid_up_to() as u64, "body is not valid UTF-8"))?;
    let mut offset = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let line_offset = offset;
        offset += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let err = |m: String| ParseError::new(i as u32 + 1, line_offset as u64, format!("{m}: {line:?}"));
        let cells = split_cells(line).map_err(err)?;
        let cell = |c: usize| {
            cells
                .get(c)
                .map(String::as_str)
                .ok_or_else(|| format!("row has {} cells, format needs column {}", cells.len(), c + 1))
        };
        let ts = match format.time {
            None => default_ts_ms,
            Some((c, kind)) => {
                let t = cell(c).map_err(err)?;
                parse_time(t, kind).ok_or_else(|| err(format!("invalid time {t:?}")))?
            }
        };
        for (c, name) in &format.metrics {
            let v = cell(*c).map_err(err)?.trim();
            if v.is_empty() {
                continue;
            }
            let value: f64 = v
                .parse()
                .map_err(|_| err(format!("invalid value {v:?} for metric {name}")))?;
            out.label("__name__", name);
            for (lc, lname) in &format.labels {
                let lv = cell(*lc).map_err(|m| {
                    out.abandon_series();
                    err(m)
                })?;
                out.label(lname, lv);
            }
            for (k, v) in extra {
                out.label(k, v);
            }
            out.sample(ts, value);
            out.finish_series();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: &str, body: &str) -> Result<strata_plugin_sdk::Batch, ParseError> {
        let f = Format::parse(format).map_err(|m| ParseError::new(0, 0, m))?;
        let mut out = BatchBuilder::new();
        parse_rows(&f, &[("env".into(), "test".into())], body.as_bytes(), 5_000, &mut out)?;
        Ok(out.finish())
    }

    fn sorted<'a>(mut v: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        v.sort();
        v
    }

    #[test]
    fn victoriametrics_example() {
        let b = parse(
            "2:metric:ask,3:metric:bid,1:label:ticker,4:label:market",
            "GOOG,1.23,4.56,NYSE\nMSFT,3.21,1.67,NASDAQ\n",
        )
        .unwrap();
        assert_eq!(b.series_count(), 4);
        assert_eq!(
            sorted(b.labels(0)),
            vec![
                ("__name__", "ask"),
                ("env", "test"),
                ("market", "NYSE"),
                ("ticker", "GOOG")
            ]
        );
        assert_eq!(b.samples(0), vec![(5_000, 1.23)]);
        assert_eq!(b.labels(3)[0], ("__name__", "bid"));
        assert_eq!(b.samples(3), vec![(5_000, 1.67)]);
    }

    #[test]
    fn time_kinds_quotes_and_empty_cells() {
        let b = parse(
            "1:time:unix_s,2:metric:m,3:label:l",
            "1700000000,1,\"a,\"\"b\"\"\"\n1700000001,,x\n",
        )
        .unwrap();
        assert_eq!(b.series_count(), 1);
        assert_eq!(b.samples(0), vec![(1_700_000_000_000, 1.0)]);
        assert!(b.labels(0).contains(&("l", "a,\"b\"")));
        let b = parse(
            "1:time:rfc3339,2:metric:m",
            "2024-02-29T13:45:00.5Z,1\n2024-02-29T15:45:00+02:00,2\r\n",
        )
        .unwrap();
        assert_eq!(b.samples(0), vec![(1_709_214_300_500, 1.0)]);
        assert_eq!(b.samples(1), vec![(1_709_214_300_000, 2.0)]);
        let b = parse("1:time:unix_ms,2:metric:m", "1700000000123,1\n").unwrap();
        assert_eq!(b.samples(0), vec![(1_700_000_000_123, 1.0)]);
        let b = parse("1:time:unix_ns,2:metric:m", "1700000000123456789,1\n").unwrap();
        assert_eq!(b.samples(0), vec![(1_700_000_000_123, 1.0)]);
    }

    #[test]
    fn bad_formats_are_refused() {
        for bad in [
            "",
            "1:metric",
            "0:metric:a",
            "x:metric:a",
            "1:label:a",
            "1:metric:a,2:time:weird",
            "1:metric:a,2:time:unix_s,3:time:unix_s",
            "1:foo:a",
            "1:metric:",
        ] {
            assert!(Format::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_rows_name_the_line() {
        let e = parse("1:metric:m,2:label:l", "1,a\n2\n").unwrap_err();
        assert_eq!((e.line, e.offset), (2, 4));
        assert!(parse("1:metric:m", "abc\n").is_err());
        assert!(parse("1:time:rfc3339,2:metric:m", "2024-13-01T00:00:00Z,1\n").is_err());
        assert!(parse("1:metric:m", "\"open,1\n").is_err());
    }
}
