//! The index side (DESIGN.md §3, FORMATS.md §1.1–§1.3, §4): MetricName → TSID, the global and
//! per-day inverted indexes, series search by label matchers, label APIs, deletion, rotation.
//!
//! Layout: `<data>/indexdb/<TABLE>/` holds one mergeset table per retention period; the newest
//! is written, the previous one is searched too, older ones are dropped at rotation. Keys are
//! tenant-prefixed (FORMATS.md §4.1) in every role.
//!
//! Invariant: this module knows nothing of samples. The data side sees only [`crate::Tsid`]s and the
//! [`crate::DeletedMetricIds`] set.

mod cache;
mod filters;
mod indexdb;
mod keys;
mod labels;
pub mod metric_name;
mod search;
pub mod uint64set;

use std::time::Duration;

pub use indexdb::IndexDb;
#[doc(hidden)]
pub use indexdb::set_scan_tsids_above;
#[doc(hidden)]
pub use search::set_match_by_name_below;
pub use uint64set::Uint64Set;

use crate::Tenant;

/// One label of an incoming series. `"__name__"` is the metric name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value; an empty value means the label is absent.
    pub value: &'a str,
}

/// A series name for API output: labels sorted by name, `__name__` included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricName {
    /// The tenant.
    pub tenant: Tenant,
    /// (name, value) pairs sorted by name.
    pub labels: Vec<(String, String)>,
}

/// A label matcher operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored RE2)
    RegexMatch,
    /// `!~` (fully anchored RE2)
    RegexNoMatch,
}

/// A label matcher with Prometheus semantics: regexes are fully anchored, a missing label has
/// the empty value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagFilter {
    /// Label name; `__name__` for the metric name.
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The value or regex.
    pub value: String,
}

impl TagFilter {
    /// A filter from its parts.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op,
            value: value.into(),
        }
    }
}

/// Index settings.
#[derive(Clone, Debug)]
pub struct IndexOptions {
    /// Table rotation period (the data retention): the index keeps the current and the
    /// previous period.
    pub retention: Duration,
    /// Default limit on series matched by one search.
    pub max_series_per_search: usize,
    /// Bytes for the series caches (name → TSID, id → TSID).
    pub cache_bytes: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(31 * 86400),
            max_series_per_search: 300_000,
            cache_bytes: default_cache_bytes(),
        }
    }
}

/// About a quarter of RAM (60% allowed memory × 37% for the name cache, FORMATS.md §4.7),
/// 256 MiB when /proc/meminfo is unreadable.
fn default_cache_bytes() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<usize>()
            .ok()
            .map(|kb| kb * 1024)
    });
    total.map_or(256 << 20, |t| t / 100 * 22)
}

/// One entry of a TSDB status top list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopEntry {
    /// A metric name, label name, label value or `name=value` pair.
    pub name: String,
    /// Series count or distinct value count.
    pub value: u64,
}

/// Cardinality statistics for one day, with VictoriaMetrics' `/api/v1/status/tsdb` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TsdbStatus {
    /// Series active on the day.
    pub total_series: u64,
    /// Sum over series of their label count (`__name__` included).
    pub total_label_value_pairs: u64,
    /// Top metric names by series.
    pub series_count_by_metric_name: Vec<TopEntry>,
    /// Top label names by series.
    pub series_count_by_label_name: Vec<TopEntry>,
    /// Top values of the focus label by series.
    pub series_count_by_focus_label_value: Vec<TopEntry>,
    /// Top `name=value` pairs by series.
    pub series_count_by_label_value_pair: Vec<TopEntry>,
    /// Top label names by distinct values.
    pub label_value_count_by_label_name: Vec<TopEntry>,
}
