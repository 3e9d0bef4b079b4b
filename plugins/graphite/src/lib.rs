//! Graphite plaintext protocol for Strata: `path value [timestamp]` lines, as carbon receives
//! them on TCP/UDP `:2003`, with Graphite 1.1 tags `path;tag1=v1;tag2=v2`.
//!
//! As VictoriaMetrics maps it: the dotted path is the metric name as is (`foo.bar.baz`), tags
//! become labels. The timestamp is in seconds (fractions allowed); a missing, `-1` or
//! otherwise negative one means "now" (the host's time). Tag names are made valid label names
//! (`[a-zA-Z_][a-zA-Z0-9_]*`, other characters become `_`) since the host refuses invalid ones.
//! A tag called `name` is dropped: Graphite reserves it for the path.
//!
//! HTTP: `POST /api/v1/import/graphite` takes the same lines (handy for tests and replays).

use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError};

/// The plugin.
pub struct Graphite;

impl IngestPlugin for Graphite {
    fn describe() -> IngestInfo {
        IngestInfo::new("graphite", env!("CARGO_PKG_VERSION"))
            .http_path("/api/v1/import/graphite")
            .content_type("text/plain")
            .line_framed()
    }

    fn parse(_params: &Params, body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
        parse_lines(body, default_ts_ms, out)
    }
}

strata_plugin_sdk::export_ingest!(Graphite);

/// Parses a body of lines into `out`. Errors name the 1-based line and its byte offset.
pub fn parse_lines(body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
    let text =
        std::str::from_utf8(body).map_err(|e| ParseError::new(0, e.valid_up_to() as u64, "body is not valid UTF-8"))?;
    let mut offset = 0usize;
    let mut tag_name = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_offset = offset;
        offset += raw.len() + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        parse_line(line, default_ts_ms, out, &mut tag_name).map_err(|m| {
            out.abandon_series();
            ParseError::new(i as u32 + 1, line_offset as u64, format!("{m}: {line:?}"))
        })?;
    }
    Ok(())
}

fn parse_line(line: &str, default_ts_ms: i64, out: &mut BatchBuilder, tag_name: &mut String) -> Result<(), String> {
    let mut fields = line.split_ascii_whitespace();
    let path = fields.next().ok_or("empty line")?;
    let value = fields.next().ok_or("missing value; want `path value [timestamp]`")?;
    let ts = fields.next();
    if fields.next().is_some() {
        return Err("too many fields; want `path value [timestamp]`".into());
    }
    let value = parse_value(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    let ts = match ts {
        None => default_ts_ms,
        Some(t) => {
            let secs: f64 = t.parse().map_err(|_| format!("invalid timestamp {t:?}"))?;
            if !secs.is_finite() {
                return Err(format!("invalid timestamp {t:?}"));
            }
            if secs < 0.0 {
                default_ts_ms
            } else {
                (secs * 1000.0).round() as i64
            }
        }
    };
    let mut parts = path.split(';');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err("empty metric path".into());
    }
    out.label("__name__", name);
    for tag in parts {
        let (k, v) = tag
            .split_once('=')
            .ok_or_else(|| format!("tag {tag:?} is not name=value"))?;
        if k.is_empty() {
            return Err(format!("tag {tag:?} has an empty name"));
        }
        sanitize_label_name(k, tag_name);
        if tag_name == "name" || tag_name == "__name__" {
            continue;
        }
        out.label(tag_name, v);
    }
    out.sample(ts, value);
    out.finish_series();
    Ok(())
}

/// Graphite values are decimal floats; `nan`/`inf` are accepted as carbon does.
fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Writes `name` as a valid label name into `out`.
pub fn sanitize_label_name(name: &str, out: &mut String) {
    out.clear();
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c } else { '_' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<strata_plugin_sdk::Batch, ParseError> {
        let mut out = BatchBuilder::new();
        parse_lines(body.as_bytes(), 42_000, &mut out)?;
        Ok(out.finish())
    }

    #[test]
    fn plain_lines_with_and_without_timestamps() {
        let b = parse("foo.bar.baz 1.5 1700000000\nqux 2\n\nneg 3 -1\r\nfrac 4 1700000000.25\n").unwrap();
        assert_eq!(b.series_count(), 4);
        assert_eq!(b.labels(0), vec![("__name__", "foo.bar.baz")]);
        assert_eq!(b.samples(0), vec![(1_700_000_000_000, 1.5)]);
        assert_eq!(b.samples(1), vec![(42_000, 2.0)]);
        assert_eq!(b.samples(2), vec![(42_000, 3.0)]);
        assert_eq!(b.samples(3), vec![(1_700_000_000_250, 4.0)]);
    }

    #[test]
    fn tags_become_labels() {
        let b = parse("disk.used;datacenter=dc1;rack=a1;server.name=web01 9.5 1700000000\n").unwrap();
        let mut labels = b.labels(0);
        labels.sort();
        assert_eq!(
            labels,
            vec![
                ("__name__", "disk.used"),
                ("datacenter", "dc1"),
                ("rack", "a1"),
                ("server_name", "web01")
            ]
        );
    }

    #[test]
    fn reserved_tag_is_dropped() {
        let b = parse("a.b;name=x;__name__=y;env=p 1 1\n").unwrap();
        let mut labels = b.labels(0);
        labels.sort();
        assert_eq!(labels, vec![("__name__", "a.b"), ("env", "p")]);
    }

    #[test]
    fn errors_name_line_and_offset() {
        let e = parse("ok 1 1\nbad notanumber 1\n").unwrap_err();
        assert_eq!((e.line, e.offset), (2, 7));
        assert!(e.message.contains("invalid value"), "{}", e.message);
        for bad in [
            "only.path",
            "a 1 2 3",
            "a 1 x",
            "a;tag 1",
            "a;=v 1",
            ";t=v 1",
            "a 1 inf",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn not_utf8_is_an_error() {
        let mut out = BatchBuilder::new();
        assert!(parse_lines(b"a\xff 1", 0, &mut out).is_err());
    }
}
