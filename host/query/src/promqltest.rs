//! A script format for data-driven PromQL tests, in the spirit of Prometheus' promqltest:
//!
//! ```text
//! # comment
//! load 1m
//!   http_requests{job="api"} 0+10x10 _ stale 5 1x3
//! eval instant at 5m rate(http_requests[5m])
//!   {job="api"} 0.16666666666666666
//! eval range from 0 to 3m step 1m http_requests
//!   http_requests{job="api"} 0 10 20 30
//! eval instant at 0 scalar(vector(1))
//!   1
//! eval_fail instant at 0 foo{
//!   error unexpected end of input
//! clear
//! ```
//!
//! Values: `a+bxn` (n+1 samples from a stepping by b), `a-bxn`, `axn` (n+1 copies), `_`
//! (no sample), `_xn` (n gaps), `stale` (a staleness marker), numbers incl. `Inf`/`NaN`.
//! Expected lines: `labels value` for an instant vector (`{}` for no labels), a bare number
//! for a scalar, a quoted string for a string, `labels v1 v2 _ v4` (one per step) for a range
//! query. Results compare as sets (`eval_ordered` keeps order) with relative tolerance 1e-6.
//! Times are durations (`5m`) or seconds (`300`).

use std::sync::Arc;

use crate::ast::Expr;
use crate::eval::{Engine, QueryOptions, QueryValue};
use crate::functions::FunctionRegistry;
use crate::labels::{Labels, MatchOp};
use crate::lexer::{Tok, lex};
use crate::parser::parse;
use crate::source::{MemSource, stale_nan};

/// Runs a whole script; returns the number of `eval` cases run, or every failure found
/// (each prefixed with its line number).
pub fn run_script(text: &str) -> Result<usize, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut src = MemSource::new();
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let lineno = i + 1;
        i += 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // The indented block that follows a command.
        let mut block = Vec::new();
        while i < lines.len() && lines[i].starts_with([' ', '\t']) {
            let b = lines[i].trim();
            if !b.is_empty() && !b.starts_with('#') {
                block.push((i + 1, b));
            }
            i += 1;
        }
        let res = if t == "clear" {
            src = MemSource::new();
            Ok(())
        } else if let Some(rest) = t.strip_prefix("load ") {
            load(&mut src, rest.trim(), &block)
        } else if t.starts_with("eval") {
            cases += 1;
            eval_case(&src, t, &block)
        } else {
            Err(format!("unknown command {t:?}"))
        };
        if let Err(e) = res {
            failures.push(format!("line {lineno}: {t}\n    {e}"));
        }
    }
    if failures.is_empty() { Ok(cases) } else { Err(failures) }
}

/// Parses `5m`, `1h30m`, or plain seconds (`300`, `1.5`) to milliseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    match lex(s).map_err(|e| e.to_string())?.as_slice() {
        [t, e] if e.tok == Tok::Eof => match t.tok {
            Tok::Duration(d) => Ok(d),
            Tok::Number(n) => Ok((n * 1000.0).round() as i64),
            _ => Err(format!("bad time {s:?}")),
        },
        [sign, t, e] if sign.tok == Tok::Sub && e.tok == Tok::Eof => match t.tok {
            Tok::Duration(d) => Ok(-d),
            Tok::Number(n) => Ok((-n * 1000.0).round() as i64),
            _ => Err(format!("bad time {s:?}")),
        },
        _ => Err(format!("bad time {s:?}")),
    }
}

/// Splits `name{a="b"} rest` into the series part and the rest.
fn split_series(line: &str) -> (&str, &str) {
    if let Some(open) = line.find('{') {
        let before = &line[..open];
        if !before.contains(char::is_whitespace) {
            // Find the closing brace outside quotes.
            let mut in_q: Option<char> = None;
            let mut esc = false;
            for (k, c) in line[open..].char_indices() {
                match (in_q, c) {
                    (Some(_), '\\') if !esc => {
                        esc = true;
                        continue;
                    }
                    (Some(q), c) if c == q && !esc => in_q = None,
                    (None, '"' | '\'' | '`') => in_q = Some(c),
                    (None, '}') => {
                        let end = open + k + 1;
                        return (&line[..end], line[end..].trim());
                    }
                    _ => {}
                }
                esc = false;
            }
        }
    }
    match line.find(char::is_whitespace) {
        Some(p) => (&line[..p], line[p..].trim()),
        None => (line, ""),
    }
}

/// Turns `name{a="b"}` into a label set using the PromQL parser.
fn parse_labels(s: &str) -> Result<Labels, String> {
    if s == "{}" {
        return Ok(Labels::new());
    }
    let reg = FunctionRegistry::with_builtins();
    match parse(s, &reg).map_err(|e| format!("bad series {s:?}: {e}"))? {
        Expr::Vector(vs) => {
            let mut l = Labels::new();
            for m in &vs.matchers {
                if m.op != MatchOp::Equal {
                    return Err(format!("only = matchers allowed in series {s:?}"));
                }
                l.set(&m.name, &m.value);
            }
            Ok(l)
        }
        _ => Err(format!("bad series {s:?}")),
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "stale" => Ok(stale_nan()),
        "Inf" | "+Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Expands one value token to a list of optional values (`None` = no sample).
fn expand_values(tok: &str) -> Result<Vec<Option<f64>>, String> {
    if tok == "_" {
        return Ok(vec![None]);
    }
    if let Some((base, n)) = tok.rsplit_once('x')
        && let Ok(n) = n.parse::<usize>()
    {
        if base == "_" {
            return Ok(vec![None; n]);
        }
        // a+b or a-b: find the operator after the first character (a may be negative).
        let op_pos = base
            .char_indices()
            .skip(1)
            .find(|&(k, c)| (c == '+' || c == '-') && !base[..k].ends_with(['e', 'E']))
            .map(|(k, _)| k);
        let (start, step) = match op_pos {
            Some(k) => {
                let step = parse_value(&base[k + 1..])?;
                let step = if &base[k..k + 1] == "-" { -step } else { step };
                (parse_value(&base[..k])?, step)
            }
            None => (parse_value(base)?, 0.0),
        };
        return Ok((0..=n).map(|k| Some(start + step * k as f64)).collect());
    }
    Ok(vec![Some(parse_value(tok)?)])
}

fn load(src: &mut MemSource, interval: &str, block: &[(usize, &str)]) -> Result<(), String> {
    let step = parse_time(interval)?;
    for (ln, l) in block {
        let (series, values) = split_series(l);
        let labels = parse_labels(series).map_err(|e| format!("line {ln}: {e}"))?;
        let mut samples = Vec::new();
        let mut k = 0i64;
        for tok in values.split_whitespace() {
            for v in expand_values(tok).map_err(|e| format!("line {ln}: {e}"))? {
                if let Some(v) = v {
                    samples.push((k * step, v));
                }
                k += 1;
            }
        }
        src.add(labels, samples);
    }
    Ok(())
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn eval_case(src: &MemSource, cmd: &str, block: &[(usize, &str)]) -> Result<(), String> {
    let (kind, rest) = cmd.split_once(' ').ok_or("missing eval arguments")?;
    let (fail, ordered) = match kind {
        "eval" => (false, false),
        "eval_ordered" => (false, true),
        "eval_fail" => (true, false),
        _ => return Err(format!("unknown command {kind:?}")),
    };
    let engine = Engine::new(Arc::new(src.clone()), QueryOptions::default());
    let result = if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, q) = r.split_once(' ').ok_or("missing query")?;
        engine.instant_query(q, parse_time(t)?).map(|r| (r.value, None))
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let words: Vec<&str> = r.splitn(6, ' ').collect();
        if words.len() < 6 || words[1] != "to" || words[3] != "step" {
            return Err("expected: eval range from <t> to <t> step <d> <query>".into());
        }
        let (start, end, step) = (parse_time(words[0])?, parse_time(words[2])?, parse_time(words[4])?);
        engine
            .range_query(words[5], start, end, step)
            .map(|r| (r.value, Some((start, step))))
    } else {
        return Err("expected `instant at` or `range from`".into());
    };
    if fail {
        return match result {
            Ok((v, _)) => Err(format!("expected an error, got {v:?}")),
            Err(e) => {
                for (_, l) in block {
                    if let Some(want) = l.strip_prefix("error ")
                        && !e.to_string().contains(want.trim())
                    {
                        return Err(format!("error {:?} does not contain {want:?}", e.to_string()));
                    }
                }
                Ok(())
            }
        };
    }
    let (value, range) = result.map_err(|e| format!("unexpected error: {e}"))?;
    match value {
        QueryValue::Scalar { v, .. } => {
            let [(_, l)] = block else {
                return Err(format!("got scalar {v}, expected {} lines", block.len()));
            };
            let want = parse_value(l)?;
            if close(v, want) {
                Ok(())
            } else {
                Err(format!("got scalar {v}, want {want}"))
            }
        }
        QueryValue::String { v, .. } => {
            let want = block.first().map(|b| b.1.trim_matches('"')).unwrap_or("");
            if v == want {
                Ok(())
            } else {
                Err(format!("got string {v:?}, want {want:?}"))
            }
        }
        QueryValue::Vector(samples) => {
            let got: Vec<(Labels, Vec<Option<f64>>)> =
                samples.into_iter().map(|s| (s.labels, vec![Some(s.v)])).collect();
            compare(got, block, ordered)
        }
        QueryValue::Matrix(series) => {
            let Some((start, step)) = range else {
                return Err("matrix results of instant queries are not comparable here".into());
            };
            let got = series
                .into_iter()
                .map(|s| {
                    let last = s.points.last().map(|p| p.0).unwrap_or(start);
                    let n = ((last - start) / step + 1) as usize;
                    let mut vals = vec![None; n];
                    for (t, v) in s.points {
                        vals[((t - start) / step) as usize] = Some(v);
                    }
                    (s.labels, vals)
                })
                .collect();
            compare(got, block, ordered)
        }
    }
}

fn show(vals: &[Option<f64>]) -> String {
    vals.iter()
        .map(|v| v.map(|x| format!("{x}")).unwrap_or_else(|| "_".into()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn compare(got: Vec<(Labels, Vec<Option<f64>>)>, block: &[(usize, &str)], ordered: bool) -> Result<(), String> {
    let mut want = Vec::new();
    for (ln, l) in block {
        let (series, values) = split_series(l);
        let labels = parse_labels(series).map_err(|e| format!("line {ln}: {e}"))?;
        let mut vals = Vec::new();
        for tok in values.split_whitespace() {
            vals.extend(expand_values(tok).map_err(|e| format!("line {ln}: {e}"))?);
        }
        // Trailing gaps are not part of a series' points.
        while vals.last() == Some(&None) {
            vals.pop();
        }
        want.push((labels, vals));
    }
    let describe = |g: &[(Labels, Vec<Option<f64>>)]| {
        g.iter()
            .map(|(l, v)| format!("\n      {l} {}", show(v)))
            .collect::<String>()
    };
    let err = || format!("got:{}\n    want:{}", describe(&got), describe(&want));
    if got.len() != want.len() {
        return Err(err());
    }
    let same = |a: &[Option<f64>], b: &[Option<f64>]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => close(*x, *y),
                (None, None) => true,
                _ => false,
            })
    };
    for (k, (wl, wv)) in want.iter().enumerate() {
        let found = if ordered {
            got.get(k).is_some_and(|(gl, gv)| gl == wl && same(gv, wv))
        } else {
            got.iter().any(|(gl, gv)| gl == wl && same(gv, wv))
        };
        if !found {
            return Err(err());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_notation() {
        assert_eq!(
            expand_values("1+2x3").unwrap(),
            vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
        );
        assert_eq!(expand_values("-1-1x1").unwrap(), vec![Some(-1.0), Some(-2.0)]);
        assert_eq!(expand_values("5x2").unwrap(), vec![Some(5.0); 3]);
        assert_eq!(expand_values("_x2").unwrap(), vec![None, None]);
        assert_eq!(expand_values("1e3").unwrap(), vec![Some(1000.0)]);
    }

    #[test]
    fn failing_case_is_reported() {
        let script = "load 1m\n  m 1 2\neval instant at 1m m\n  m 3\n";
        let err = run_script(script).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].starts_with("line 3"), "{err:?}");
    }
}
