//! Tag filters compiled for index search (FORMATS.md §4.3) with Prometheus semantics: regexes
//! are fully anchored, a missing label has the empty value, `{a=""}` matches series without
//! `a`, and `.` matches a newline (Prometheus compiles `^(?s:re)$`).

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind};

use super::{MatchOp, TagFilter};
use crate::StorageError;

/// Alternations of literals up to this many values are looked up value by value.
const MAX_OR_VALUES: usize = 100;

/// Which present (non-empty) values a filter's pattern accepts.
#[derive(Clone, Debug)]
pub(crate) enum ValueMatch {
    /// Exactly these values (sorted; never the empty string).
    Values(Vec<String>),
    /// Values starting with `prefix` that also match `re` (`None`: every such value).
    Prefix { prefix: String, re: Option<Regex> },
}

/// A filter ready for evaluation.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    /// Label name; "" is `__name__` (as in the index).
    pub key: String,
    /// `!=` and `!~`.
    pub negative: bool,
    /// The pattern (before negation) over present values.
    pub vm: ValueMatch,
    /// Whether the pattern (before negation) accepts the empty value, i.e. a missing label.
    pub matches_empty: bool,
}

impl Compiled {
    /// Whether the pattern (before negation) accepts `v`.
    pub fn pattern_matches(&self, v: &str) -> bool {
        if v.is_empty() {
            return self.matches_empty;
        }
        match &self.vm {
            ValueMatch::Values(vs) => vs.binary_search_by(|x| x.as_str().cmp(v)).is_ok(),
            ValueMatch::Prefix { prefix, re } => {
                v.starts_with(prefix.as_str()) && re.as_ref().is_none_or(|r| r.is_match(v))
            }
        }
    }

    /// Whether a series whose value for `key` is `v` ("" when absent) passes the filter.
    pub fn series_matches(&self, v: &str) -> bool {
        self.pattern_matches(v) != self.negative
    }

    /// True if the filter passes every series (`=~".*"`), so it can be dropped.
    pub fn matches_everything(&self) -> bool {
        !self.negative
            && self.matches_empty
            && matches!(&self.vm, ValueMatch::Prefix { prefix, re: None } if prefix.is_empty())
    }

    /// A rough cost rank: exact values first, full scans last.
    pub fn cost(&self) -> u32 {
        match &self.vm {
            ValueMatch::Values(v) => v.len() as u32,
            ValueMatch::Prefix { prefix, re } => {
                1000 + if prefix.is_empty() { 1000 } else { 0 } + if re.is_some() { 500 } else { 0 }
            }
        }
    }
}

/// Largest compiled regex a filter may have.
const MAX_COMPILED_REGEX_BYTES: usize = 8 << 20;

/// Compiles one filter; a bad regex (or one over [`MAX_COMPILED_REGEX_BYTES`]) is `InvalidInput`.
pub(crate) fn compile(tf: &TagFilter) -> Result<Compiled, StorageError> {
    let key = if tf.name == "__name__" {
        String::new()
    } else {
        tf.name.clone()
    };
    let (negative, regex) = match tf.op {
        MatchOp::Equal => (false, false),
        MatchOp::NotEqual => (true, false),
        MatchOp::RegexMatch => (false, true),
        MatchOp::RegexNoMatch => (true, true),
    };
    if !regex {
        let vm = ValueMatch::Values(if tf.value.is_empty() {
            Vec::new()
        } else {
            vec![tf.value.clone()]
        });
        return Ok(Compiled {
            key,
            negative,
            vm,
            matches_empty: tf.value.is_empty(),
        });
    }
    let anchored = format!("^(?s:{})$", tf.value);
    let bad =
        |e: String| StorageError::InvalidInput(format!("invalid regex {:?} for label {:?}: {e}", tf.value, tf.name));
    // A backstop against regex bombs: the query layer already refused anything over the
    // configured `limits.max_regex_compiled_size` (at most this much), but a filter can also
    // arrive over cluster RPC. Equal to strata_query::regex_limits::MAX_REGEX_COMPILED_BYTES.
    let re = RegexBuilder::new(&anchored)
        .size_limit(MAX_COMPILED_REGEX_BYTES)
        .dfa_size_limit(MAX_COMPILED_REGEX_BYTES)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(&tf.value)
        .map_err(|e| bad(e.to_string()))?;
    let matches_empty = re.is_match("");
    let vm = if let Some(mut vs) = literal_alternatives(&hir) {
        vs.retain(|v| !v.is_empty());
        vs.sort();
        vs.dedup();
        ValueMatch::Values(vs)
    } else {
        let (prefix, rest) = split_literal_prefix(&hir);
        let any_rest = rest.len() == 1 && dot_star_min(rest[0]).is_some();
        ValueMatch::Prefix {
            prefix,
            re: if any_rest { None } else { Some(re) },
        }
    };
    Ok(Compiled {
        key,
        negative,
        vm,
        matches_empty,
    })
}

/// The values a regex matches if it is a finite alternation of literals (`a|b`, `x(a|b)`, `c`).
fn literal_alternatives(h: &Hir) -> Option<Vec<String>> {
    match h.kind() {
        HirKind::Empty => Some(vec![String::new()]),
        HirKind::Literal(l) => Some(vec![String::from_utf8(l.0.to_vec()).ok()?]),
        HirKind::Capture(c) => literal_alternatives(&c.sub),
        HirKind::Class(Class::Unicode(c)) => {
            let n: u32 = c.ranges().iter().map(|r| r.end() as u32 - r.start() as u32 + 1).sum();
            (n <= 16).then(|| {
                c.ranges()
                    .iter()
                    .flat_map(|r| (r.start()..=r.end()).map(String::from))
                    .collect()
            })
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(literal_alternatives(a)?);
                if out.len() > MAX_OR_VALUES {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Concat(parts) => {
            let mut out = vec![String::new()];
            for p in parts {
                let alts = literal_alternatives(p)?;
                if out.len() * alts.len() > MAX_OR_VALUES {
                    return None;
                }
                out = out
                    .iter()
                    .flat_map(|o| alts.iter().map(move |a| format!("{o}{a}")))
                    .collect();
            }
            Some(out)
        }
        _ => None,
    }
}

/// Splits leading literals off a regex: the literal prefix and what follows it.
fn split_literal_prefix(h: &Hir) -> (String, Vec<&Hir>) {
    match h.kind() {
        HirKind::Concat(parts) => {
            let mut prefix = String::new();
            let mut i = 0;
            while i < parts.len() {
                match parts[i].kind() {
                    HirKind::Literal(l) => match std::str::from_utf8(&l.0) {
                        Ok(s) => prefix.push_str(s),
                        Err(_) => break,
                    },
                    _ => break,
                }
                i += 1;
            }
            (prefix, parts[i..].iter().collect())
        }
        HirKind::Capture(c) => split_literal_prefix(&c.sub),
        _ => (String::new(), vec![h]),
    }
}

/// `Some(min)` if `h` is `.*` (0) or `.+` (1) with `.` matching any character.
fn dot_star_min(h: &Hir) -> Option<u32> {
    let HirKind::Repetition(r) = h.kind() else { return None };
    let any = match r.sub.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            c.ranges().len() == 1 && c.ranges()[0].start() == '\0' && c.ranges()[0].end() == char::MAX
        }
        _ => false,
    };
    (any && r.max.is_none() && r.min <= 1).then_some(r.min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(op: MatchOp, v: &str) -> Compiled {
        compile(&TagFilter {
            name: "a".into(),
            op,
            value: v.into(),
        })
        .unwrap()
    }

    #[test]
    fn regex_shapes() {
        match c(MatchOp::RegexMatch, "foo|bar|ba(z|q)").vm {
            ValueMatch::Values(v) => assert_eq!(v, ["baq", "bar", "baz", "foo"]),
            other => panic!("{other:?}"),
        }
        match c(MatchOp::RegexMatch, "api_.*").vm {
            ValueMatch::Prefix { prefix, re } => assert!(prefix == "api_" && re.is_none()),
            other => panic!("{other:?}"),
        }
        match c(MatchOp::RegexMatch, "api_[0-9]+x").vm {
            ValueMatch::Prefix { prefix, re } => assert!(prefix == "api_" && re.is_some()),
            other => panic!("{other:?}"),
        }
        assert!(c(MatchOp::RegexMatch, ".*").matches_everything());
        assert!(!c(MatchOp::RegexMatch, ".+").matches_everything());
        assert!(c(MatchOp::RegexMatch, "bar|").matches_empty);
        assert!(
            compile(&TagFilter {
                name: "a".into(),
                op: MatchOp::RegexMatch,
                value: "(".into()
            })
            .is_err()
        );
    }

    #[test]
    fn regex_bombs_are_invalid_input() {
        let Err(err) = compile(&TagFilter {
            name: "a".into(),
            op: MatchOp::RegexMatch,
            value: "(a{1000}){1000}".into(),
        }) else {
            panic!("a bomb is refused");
        };
        assert!(
            matches!(&err, StorageError::InvalidInput(m) if m.contains("size limit")),
            "{err}"
        );
    }
}
