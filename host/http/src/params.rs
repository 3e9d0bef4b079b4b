//! Request parameters shared by the read APIs: the query string plus a form body, and
//! Prometheus' timestamp and duration formats.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Uri, header};
use strata_query::lexer::{Tok, lex};
use strata_query::{Expr, LabelMatcher};

use crate::error::ApiError;
use crate::read_body;

/// Request parameters from the query string and, for form posts, the body.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) async fn read(uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Params, ApiError> {
        let mut out: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let bytes = read_body(body).await?;
            out.extend(form_urlencoded::parse(&bytes).into_owned());
        }
        Ok(Params(out))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub(crate) fn invalid_param(name: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid parameter \"{name}\": {err}"))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds as RFC 3339 in UTC with milliseconds (`2024-01-02T03:04:05.678Z`).
pub(crate) fn format_rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, sec, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}.{milli:03}Z")
}

/// RFC 3339 (`2024-01-02T03:04:05.678Z`, `+01:00` offsets) to milliseconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':'
        || b[16] != b':'
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
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
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let padded: String = digits.chars().chain(std::iter::repeat('0')).take(3).collect();
        frac_ms = padded.parse().ok()?;
    }
    let offset_min = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh: i64 = tz[1..3].parse().ok()?;
            let om: i64 = tz[4..6].parse().ok()?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

/// A timestamp parameter: Unix seconds (with fraction) or RFC 3339.
pub(crate) fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    parse_rfc3339(v).ok_or_else(|| invalid_param(name, format!("cannot parse \"{v}\" to a valid timestamp")))
}

/// A duration parameter: seconds (with fraction) or a PromQL duration.
pub(crate) fn parse_duration(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    match lex(v).ok().as_deref() {
        Some([t, e]) if e.tok == Tok::Eof => {
            if let Tok::Duration(d) = t.tok {
                return Ok(d);
            }
        }
        _ => {}
    }
    Err(invalid_param(name, format!("cannot parse \"{v}\" to a valid duration")))
}

pub(crate) fn optional_time(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time(name, v),
    }
}

pub(crate) fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    match p.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid_param(name, format!("missing required parameter {name:?}"))),
    }
}

/// Parses every `match[]` parameter as an instant vector selector and returns its matchers.
pub(crate) fn match_selectors<E: std::fmt::Display>(
    p: &Params,
    parse: impl Fn(&str) -> Result<Expr, E>,
) -> Result<Vec<Vec<LabelMatcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|m| match parse(m) {
            Ok(Expr::Vector(vs)) => Ok(vs.matchers),
            Ok(_) => Err(invalid_param(
                "match[]",
                format!("{m:?} is not an instant vector selector"),
            )),
            Err(e) => Err(invalid_param("match[]", e)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 951_782_400_000, 1_700_000_000_123, 4_102_444_799_999, -86_400_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{}", format_rfc3339(ms));
        }
        assert_eq!(format_rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("2024-02-29T13:45:00Z"), Some(1_709_214_300_000));
        assert_eq!(parse_rfc3339("2024-02-29T14:45:00.25+01:00"), Some(1_709_214_300_250));
        assert_eq!(parse_rfc3339("2024-02-29 13:45"), None);
        assert_eq!(parse_time("time", "1700000000.5").unwrap(), 1_700_000_000_500);
        assert!(parse_time("time", "yesterday").is_err());
    }
}
