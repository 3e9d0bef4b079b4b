//! InfluxDB line protocol for Strata, as VictoriaMetrics maps it: every field of a line becomes
//! a series named `{measurement}_{field}` whose labels are the line's tags, plus `db` from the
//! query string when the line has no `db` tag. String fields are skipped; booleans are 1/0.
//!
//! Query parameters: `precision` (`ns` default, `u`/`us`, `ms`, `s`, `m`, `h`) and `db`.
//! Config keys: `measurement_field_separator` (default `_`), `skip_single_field`
//! (`true`: a line with one field is named `{measurement}`).
//! Names are made Prometheus-compatible: characters outside `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]`
//! for labels) become `_`, since the host refuses invalid names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use strata_plugin_sdk::scan::{bytes_eq, find_any, parse_f64, parse_i64, short_word};
use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, Params, ParseError, param};

/// The plugin.
pub struct Influx;

/// The naming options, read from the host once per instance: the config of a loaded plugin
/// never changes (a reload makes new instances), and asking on every call cost an import call
/// plus a copy of the whole map into the guest.
static OPTIONS: OnceLock<Options> = OnceLock::new();

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
        let opts = OPTIONS.get_or_init(|| {
            let config = strata_plugin_sdk::host::config();
            Options {
                separator: param(&config, "measurement_field_separator").unwrap_or("_").to_string(),
                skip_single_field: param(&config, "skip_single_field") == Some("true"),
            }
        });
        parse_lines(params, body, default_ts_ms, opts, out)
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
    let bytes = text.as_bytes();
    let mut scratch = Line::default();
    let mut name = String::new();
    // Metric name symbols by (measurement, field, single-field naming), for unescaped parts.
    let mut names: HashMap<NameKey<'_>, u32, BuildHasherDefault<PartsHasher>> = HashMap::default();
    // Symbol ids of the current line's labels, interned once and shared by all its fields.
    let mut label_ids: Vec<(u32, u32)> = Vec::new();
    // Tag keys are checked (and sanitized) once per distinct key, not once per line.
    let mut keys = TagKeys::default();
    // Label ids of each `key=value` text seen (without escapes), for the whole body.
    let mut pairs: HashMap<RawText<'_>, (u32, u32), BuildHasherDefault<PartsHasher>> = HashMap::default();
    // Interned at the first series, so that an empty body returns an empty batch.
    let mut name_label: Option<u32> = None;
    let mut db_label: Option<(u32, u32)> = None;
    let mut next_line = 0usize;
    let mut i = 0usize;
    while next_line <= bytes.len() {
        let line_offset = next_line;
        let end = find_any(bytes, line_offset, [b'\n']);
        next_line = end + 1;
        let raw = &text[line_offset..end];
        i += 1;
        let line = raw.trim_end_matches('\r').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |pos: usize, m: String| ParseError::new(i as u32, (line_offset + pos) as u64, m);
        scratch.clear();
        parse_line(line, &mut scratch).map_err(|(pos, m)| err(pos + (raw.len() - line.len()), m))?;
        let ts = match scratch.timestamp {
            None => default_ts_ms,
            // Nanoseconds (the default) only divide: `checked_mul` is a 128-bit multiply in a
            // component.
            Some(t) if mul == 1 => t / div,
            Some(t) => t
                .checked_mul(mul)
                .map(|t| t / div)
                .ok_or_else(|| err(0, "timestamp overflows".into()))?,
        };
        let single = opts.skip_single_field && scratch.fields.len() == 1;
        label_ids.clear();
        let mut has_db_tag = false;
        for (k, v, raw) in &scratch.tags {
            has_db_tag |= k == "db";
            // Tag pairs repeat across lines (host=a, region=eu): one lookup of the raw pair
            // instead of interning key and value on their own.
            let cached = if raw.is_empty() {
                None
            } else {
                pairs.get(&RawText(raw)).copied()
            };
            let ids = match cached {
                Some(ids) => ids,
                None => {
                    let ids = (keys.resolve(k, out), out.symbol(v));
                    if !raw.is_empty() {
                        pairs.insert(RawText(raw), ids);
                    }
                    ids
                }
            };
            label_ids.push(ids);
        }
        if let (Some(db), false) = (db, has_db_tag) {
            label_ids.push(*db_label.get_or_insert_with(|| (out.symbol("db"), out.symbol(db))));
        }
        for (field, value) in &scratch.fields {
            let Some(value) = value else { continue };
            let name_key = *name_label.get_or_insert_with(|| out.symbol("__name__"));
            // The same measurement and field come back line after line: look the finished
            // name up by its parts instead of building it again. Building copies three
            // short strings, and in a component every variable-length copy is a call out of
            // the guest (`memory.copy`), which cost more than the lookup.
            let key = match (&scratch.measurement, field) {
                (Cow::Borrowed(m), Cow::Borrowed(f)) => Some(NameKey {
                    measurement: m,
                    field: f,
                    single,
                }),
                _ => None,
            };
            let cached = key.and_then(|k| names.get(&k).copied());
            let name_id = match cached {
                Some(id) => id,
                None => {
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
                    sanitize_in_place(&mut name, true);
                    let id = out.symbol(&name);
                    if let Some(k) = key {
                        names.insert(k, id);
                    }
                    id
                }
            };
            out.label_ids(name_key, name_id);
            for &(k, v) in &label_ids {
                out.label_ids(k, v);
            }
            out.sample(ts, *value);
            out.finish_series();
        }
    }
    Ok(())
}

/// The name cache's key: a line's measurement and field as they appear in the body.
#[derive(Clone, Copy)]
struct NameKey<'a> {
    measurement: &'a str,
    field: &'a str,
    single: bool,
}

impl PartialEq for NameKey<'_> {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        // `bytes_eq`, not `==`: string equality is a byte-at-a-time `memcmp` in a component.
        self.single == other.single
            && bytes_eq(self.measurement.as_bytes(), other.measurement.as_bytes())
            && bytes_eq(self.field.as_bytes(), other.field.as_bytes())
    }
}

impl Eq for NameKey<'_> {}

impl std::hash::Hash for NameKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.measurement.as_bytes());
        state.write_u8(0xff);
        state.write(self.field.as_bytes());
        state.write_u8(u8::from(self.single));
    }
}

/// A text from the body as a hash key, compared with [`bytes_eq`].
#[derive(Clone, Copy)]
struct RawText<'a>(&'a str);

impl PartialEq for RawText<'_> {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        bytes_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for RawText<'_> {}

impl std::hash::Hash for RawText<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// A cheap hasher for the name cache (std's SipHash costs more than the parse of a field;
/// there is no seed because a component has no randomness without importing WASI's).
#[derive(Default)]
struct PartsHasher(u64);

impl Hasher for PartsHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(23) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // One loop-free load; the length tells apart tails that load alike.
            let tail = short_word(rest) ^ ((rest.len() as u64) << 59);
            h = (h.rotate_left(23) ^ tail).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(23) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One parsed line, reused between lines to keep allocations down. Tokens borrow the body
/// unless they had escapes (or, for tag keys, characters to replace).
#[derive(Default)]
struct Line<'a> {
    measurement: Cow<'a, str>,
    /// (key, value, the raw `key=value` text when neither had escapes, else "").
    tags: Vec<(Cow<'a, str>, Cow<'a, str>, &'a str)>,
    /// `None` values are string fields, which are skipped.
    fields: Vec<(Cow<'a, str>, Option<f64>)>,
    timestamp: Option<i64>,
}

impl Line<'_> {
    fn clear(&mut self) {
        self.measurement = Cow::Borrowed("");
        self.tags.clear();
        self.fields.clear();
        self.timestamp = None;
    }
}

fn name_char(c: u8, metric: bool) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || (metric && c == b':')
}

fn needs_sanitizing(s: &str, metric: bool) -> bool {
    !s.bytes().all(|c| name_char(c, metric)) || s.starts_with(|c: char| c.is_ascii_digit())
}

fn sanitized(s: &str, metric: bool) -> String {
    let mut fixed: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && name_char(c as u8, metric) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if fixed.starts_with(|c: char| c.is_ascii_digit()) {
        fixed.insert(0, '_');
    }
    fixed
}

fn sanitize_in_place(s: &mut String, metric: bool) {
    if needs_sanitizing(s, metric) {
        *s = sanitized(s, metric);
    }
}

/// Tag keys as they appear in the body, by symbol id, to the symbol of the label name they
/// become. A key is checked for characters to replace the first time it is seen only: keys
/// repeat on every line, and the check is a loop over its bytes.
#[derive(Default)]
struct TagKeys {
    /// Indexed by the raw key's symbol id: the label name's symbol id, or `u32::MAX` if not
    /// seen as a key yet.
    name_of: Vec<u32>,
}

impl TagKeys {
    #[inline(always)]
    fn resolve(&mut self, raw: &str, out: &mut BatchBuilder) -> u32 {
        let id = out.symbol(raw);
        let slot = id as usize;
        if let Some(&name) = self.name_of.get(slot)
            && name != u32::MAX
        {
            return name;
        }
        let name = if needs_sanitizing(raw, false) {
            out.symbol(&sanitized(raw, false))
        } else {
            id
        };
        if self.name_of.len() <= slot {
            self.name_of.resize(slot + 1, u32::MAX);
        }
        self.name_of[slot] = name;
        name
    }
}

/// Reads an escaped token up to one of `stops` (unescaped); returns the text (borrowed when it
/// had no escapes) and the index of the stop character (or the end). `stops` must include the
/// backslash, which this handles: the scan looks for all of them 8 bytes at a time.
fn token<'a, const N: usize>(line: &'a str, start: usize, stops: [u8; N]) -> (Cow<'a, str>, usize) {
    let b = line.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut run = start;
    loop {
        i = find_any(b, i, stops);
        if i >= b.len() || b[i] != b'\\' {
            break;
        }
        if i + 1 < b.len() && matches!(b[i + 1], b',' | b'=' | b' ' | b'\\' | b'"') {
            owned.get_or_insert_with(String::new).push_str(&line[run..i]);
            run = i + 1;
            i += 2;
        } else {
            // A backslash before anything else is itself.
            i += 1;
        }
    }
    let text = match owned {
        None => Cow::Borrowed(&line[start..i]),
        Some(mut s) => {
            s.push_str(&line[run..i]);
            Cow::Owned(s)
        }
    };
    (text, i)
}

type LineError = (usize, String);

fn parse_line<'a>(line: &'a str, l: &mut Line<'a>) -> Result<(), LineError> {
    let b = line.as_bytes();
    let (measurement, mut i) = token(line, 0, *b", \\");
    if measurement.is_empty() {
        return Err((0, "missing measurement".into()));
    }
    l.measurement = measurement;
    while i < b.len() && b[i] == b',' {
        let (k, eq) = token(line, i + 1, *b"=, \\");
        if eq >= b.len() || b[eq] != b'=' || k.is_empty() {
            return Err((i + 1, "tag without `=`".into()));
        }
        let (v, next) = token(line, eq + 1, *b", \\");
        if v.is_empty() {
            return Err((eq + 1, format!("tag {k:?} has an empty value")));
        }
        let raw = match (&k, &v) {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => &line[i + 1..next],
            _ => "",
        };
        i = next;
        l.tags.push((k, v, raw));
    }
    if i >= b.len() || b[i] != b' ' {
        return Err((i, "missing fields".into()));
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    loop {
        let (k, eq) = token(line, i, *b"= \\");
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
        l.timestamp = Some(parse_i64(ts).ok_or_else(|| (i, format!("invalid timestamp {ts:?}")))?);
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
    let end = find_any(b, start, *b", ");
    let raw = &line[start..end];
    let v = match raw {
        "t" | "T" | "true" | "True" | "TRUE" => 1.0,
        "f" | "F" | "false" | "False" | "FALSE" => 0.0,
        _ if raw.ends_with('i') || raw.ends_with('u') => {
            let digits = &raw[..raw.len() - 1];
            parse_i64(digits)
                .map(|v| v as f64)
                .or_else(|| digits.parse::<u64>().ok().map(|v| v as f64))
                .ok_or_else(|| (start, format!("invalid integer field value {raw:?}")))?
        }
        _ => parse_f64(raw).ok_or_else(|| (start, format!("invalid field value {raw:?}")))?,
    };
    Ok((Some(v), end))
}

#[cfg(test)]
mod tests;
