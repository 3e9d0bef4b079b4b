//! Label sets and label matchers.

use std::fmt;

use regex::Regex;

use crate::regex_limits::{RegexLimits, compile_anchored};

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value (never empty in a stored series: an empty value means "no such label").
    pub value: String,
}

/// A label set, sorted by name, names unique; `__name__` is included when the series has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order; later duplicates win, empty values are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        // One allocation per string and one sort: this runs once per series read.
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        // Stable, so that of equal names the later one ends last and wins below.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.value.is_empty());
        Labels(out)
    }

    /// The labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, or "" when absent (Prometheus treats both alike).
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => &self.0[i].value,
            Err(_) => "",
        }
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => {
                if value.is_empty() {
                    self.0.remove(i);
                } else {
                    self.0[i].value = value.to_string();
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    self.0.insert(
                        i,
                        Label {
                            name: name.to_string(),
                            value: value.to_string(),
                        },
                    );
                }
            }
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        Labels(self.0.iter().filter(|l| l.name != METRIC_NAME).cloned().collect())
    }

    /// Keeps only the labels whose name is in `names`.
    pub fn keep_only(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.iter().any(|n| n == &l.name))
                .cloned()
                .collect(),
        )
    }

    /// Drops the labels whose name is in `names`, and the metric name.
    pub fn drop_names(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME && !names.iter().any(|n| n == &l.name))
                .cloned()
                .collect(),
        )
    }

    /// Drops exactly the labels whose name is in `names` (the metric name only if listed).
    pub fn without_names(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.iter().any(|n| n == &l.name))
                .cloned()
                .collect(),
        )
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        let v = self.get(METRIC_NAME);
        (!v.is_empty()).then_some(v)
    }
}

impl fmt::Display for Labels {
    /// Prometheus' text form: `name{a="b", c="d"}` is not used; this prints `{__name__="x", a="b"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, quote(&l.value))?;
        }
        f.write_str("}")
    }
}

/// Quotes a string the way PromQL prints it: double quotes, Go-style escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The four PromQL matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    RegexMatch,
    /// `!~`
    RegexNoMatch,
}

impl MatchOp {
    /// The operator as written in PromQL.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

/// A label matcher such as `job=~"api|web"`. Regexes are fully anchored, as in Prometheus.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// The value or the regex source as written.
    pub value: String,
    /// The compiled, anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// A regex in a matcher did not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {value:?}: {reason}")]
pub struct BadRegex {
    /// The regex source.
    pub value: String,
    /// Why it failed.
    pub reason: String,
}

impl LabelMatcher {
    /// Builds a matcher; compiles the regex for `=~`/`!~` within the default [`RegexLimits`].
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, BadRegex> {
        Self::with_limits(op, name, value, RegexLimits::default())
    }

    /// Builds a matcher whose regex must fit `limits` (a query's or a tenant's caps).
    pub fn with_limits(op: MatchOp, name: &str, value: &str, limits: RegexLimits) -> Result<Self, BadRegex> {
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(compile_anchored(value, limits)?),
            _ => None,
        };
        Ok(LabelMatcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// True when a label value (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// True when the matcher matches the empty string (so it also selects series without the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// True when the whole label set satisfies the matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name))
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_order_and_empty_removes() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1"), ("__name__", "m")]);
        assert_eq!(l.to_string(), r#"{__name__="m", a="1", b="2"}"#);
        l.set("a", "");
        assert_eq!(l.get("a"), "");
        assert_eq!(l.len(), 2);
        assert_eq!(l.without_name().to_string(), r#"{b="2"}"#);
    }

    #[test]
    fn regex_is_anchored() {
        let m = LabelMatcher::new(MatchOp::RegexMatch, "a", "fo+").unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches_empty());
        let n = LabelMatcher::new(MatchOp::RegexNoMatch, "a", "fo+").unwrap();
        assert!(n.matches(""));
        assert!(LabelMatcher::new(MatchOp::RegexMatch, "a", "(").is_err());
    }
}
