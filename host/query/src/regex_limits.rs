//! Caps on the regular expressions a query compiles (label matchers and `label_replace`).
//!
//! A regex is refused before it costs much: its source must be at most
//! [`RegexLimits::max_length`] bytes (checked before compiling), and its compiled program at
//! most [`RegexLimits::max_compiled_bytes`] (the `regex` crate stops compiling as soon as the
//! program grows past that, so `a{1000}{1000}`-style bombs fail in about a millisecond instead
//! of building a program of hundreds of megabytes). Refusals are counted in
//! `strata_query_regex_rejected_total{reason="length"|"compiled_size"}`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::{Regex, RegexBuilder};

use crate::labels::BadRegex;

/// Default cap on a regex's source length, in bytes: long enough for a Grafana multi-value
/// variable with a few hundred host names.
pub const DEFAULT_MAX_REGEX_LENGTH: usize = 8 * 1024;

/// Default cap on a compiled regex, in bytes (the `regex` crate's own default is 10 MiB).
pub const DEFAULT_MAX_REGEX_COMPILED_BYTES: usize = 2 << 20;

/// The highest compiled-size cap a configuration may set: the storage engine compiles the same
/// regexes again with this as its own backstop, so a larger cap would pass the query layer and
/// then fail inside storage.
pub const MAX_REGEX_COMPILED_BYTES: usize = 8 << 20;

/// How large a query regex may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegexLimits {
    /// Most bytes of regex source.
    pub max_length: usize,
    /// Most bytes of compiled program (and of the lazy DFA cache of one regex).
    pub max_compiled_bytes: usize,
}

impl Default for RegexLimits {
    fn default() -> Self {
        Self {
            max_length: DEFAULT_MAX_REGEX_LENGTH,
            max_compiled_bytes: DEFAULT_MAX_REGEX_COMPILED_BYTES,
        }
    }
}

/// At most this much of a refused regex is repeated in the error, so that a 1 MB regex does
/// not come back as a 1 MB error message.
const SHOWN: usize = 64;

fn shown(value: &str) -> String {
    if value.len() <= SHOWN {
        return value.to_string();
    }
    let mut end = SHOWN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

fn rejected(reason: &'static str) {
    metrics::counter!("strata_query_regex_rejected_total", "reason" => reason).increment(1);
}

/// Compiles `^(?s:value)$` within `limits`. A too long or too large regex is refused with a
/// message naming the limit (`limits.max_regex_length` or `limits.max_regex_compiled_size`).
pub fn compile_anchored_uncached(value: &str, limits: RegexLimits) -> Result<Regex, BadRegex> {
    check_length(value, limits)?;
    build(value, limits)
}

fn check_length(value: &str, limits: RegexLimits) -> Result<(), BadRegex> {
    if value.len() > limits.max_length {
        rejected("length");
        return Err(BadRegex {
            value: shown(value),
            reason: format!(
                "it is {} bytes long, over the limit of {} bytes (limits.max_regex_length)",
                value.len(),
                limits.max_length
            ),
        });
    }
    Ok(())
}

fn build(value: &str, limits: RegexLimits) -> Result<Regex, BadRegex> {
    RegexBuilder::new(&format!("^(?s:{value})$"))
        .size_limit(limits.max_compiled_bytes)
        .dfa_size_limit(limits.max_compiled_bytes)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                rejected("compiled_size");
                BadRegex {
                    value: shown(value),
                    reason: format!(
                        "it compiles to more than {} bytes (limits.max_regex_compiled_size); use fewer or smaller repetitions",
                        limits.max_compiled_bytes
                    ),
                }
            }
            other => BadRegex {
                value: shown(value),
                reason: other.to_string(),
            },
        })
}

/// [`compile_anchored_uncached`] reusing earlier compilations: dashboards send the same
/// regexes over and over, and compiling one costs far more than parsing the rest of a query.
/// The length is checked on every call, since the cap may differ between tenants.
pub fn compile_anchored(value: &str, limits: RegexLimits) -> Result<Regex, BadRegex> {
    type Cache = Mutex<HashMap<(usize, String), Regex>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    check_length(value, limits)?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // Keyed by the size cap too: a regex compiled under a larger cap must not pass a smaller one.
    let key = (limits.max_compiled_bytes, value.to_string());
    if let Ok(c) = cache.lock()
        && let Some(r) = c.get(&key)
    {
        return Ok(r.clone());
    }
    let r = build(value, limits)?;
    if let Ok(mut c) = cache.lock() {
        // Bounded: a flood of distinct regexes must not grow memory without limit.
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(key, r.clone());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_regexes_compile_and_are_anchored() {
        let r = compile_anchored("fo+|ba.", RegexLimits::default()).unwrap();
        assert!(r.is_match("foo") && r.is_match("ba\n") && !r.is_match("xfoo"));
    }

    #[test]
    fn long_source_is_refused_before_compiling() {
        let limits = RegexLimits {
            max_length: 10,
            ..RegexLimits::default()
        };
        assert!(compile_anchored("0123456789", limits).is_ok());
        // Not even valid syntax: the length check comes first, so nothing is parsed.
        let err = compile_anchored("(((((((((((", limits).unwrap_err().to_string();
        assert!(err.contains("limits.max_regex_length"), "{err}");
        assert!(err.contains("11 bytes"), "{err}");
        let huge = "a".repeat(100_000);
        let err = compile_anchored(&huge, limits).unwrap_err().to_string();
        assert!(err.len() < 300, "the message does not repeat the regex: {}", err.len());
    }

    #[test]
    fn bombs_are_refused_by_compiled_size() {
        for bomb in [
            "a{1000}{1000}",
            "(a{1000}){1000}",
            "((a{100}){100}){100}",
            "(\\w{100}){100}",
        ] {
            let err = compile_anchored(bomb, RegexLimits::default()).unwrap_err().to_string();
            assert!(err.contains("limits.max_regex_compiled_size"), "{bomb}: {err}");
        }
    }

    #[test]
    fn cache_respects_a_smaller_compiled_cap() {
        let big = RegexLimits::default();
        let small = RegexLimits {
            max_compiled_bytes: 1024,
            ..big
        };
        let value = "(abc|def|ghi){20}";
        assert!(compile_anchored(value, big).is_ok());
        assert!(compile_anchored(value, small).is_err(), "cached under the big cap only");
    }

    #[test]
    fn syntax_errors_keep_their_reason() {
        let err = compile_anchored("(", RegexLimits::default()).unwrap_err().to_string();
        assert!(err.contains("unclosed group"), "{err}");
    }

    #[test]
    fn shown_cuts_on_a_char_boundary() {
        let s = "é".repeat(100);
        assert!(shown(&s).ends_with("..."));
        assert_eq!(shown("abc"), "abc");
    }
}
