//! [`IngestLimits`] and the validation every batch passes before it reaches a sink.
//!
//! Policy: **all-or-nothing per request.** Every endpoint decodes the whole request into one
//! batch, validates all of it, and only then pushes. One bad series refuses the request with
//! 400 and a message naming the series; nothing of it is stored. (VictoriaMetrics instead drops
//! bad rows silently and stores the rest; we prefer that the sender sees the problem. A sender
//! that keeps a bad series in its queue sees every request containing it refused, which is
//! visible in `strata_rows_rejected_total{reason}` and in the sender's own error counters.)
//!
//! What is accepted: any f64 value including NaN and ±Inf, kept bit for bit (the Prometheus
//! stale marker `0x7ff0000000000002` stays exactly that); duplicate timestamps within a series
//! (storage deduplicates); a metric name that is any non-empty UTF-8 string.

use serde::{Deserialize, Serialize};

use crate::batch::{MetricBatch, describe_labels, truncate};
use crate::error::{IngestError, RejectReason};

/// Limits applied to every ingested request. Part of appliance.toml (`[ingest]`), every key
/// optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestLimits {
    /// Largest decompressed body, in bytes. 32 MiB, as VictoriaMetrics'
    /// `-maxInsertRequestSize`; Prometheus sends a few MiB at most. A compressed body that
    /// declares more is refused before anything is inflated.
    pub max_decompressed_bytes: usize,
    /// Most labels (including `__name__`) in one series. 40, VictoriaMetrics' default, so data
    /// that a VictoriaMetrics cluster accepts is accepted here too.
    pub max_labels_per_series: usize,
    /// Longest label name, in bytes. 256, as VictoriaMetrics.
    pub max_label_name_bytes: usize,
    /// Longest label value, in bytes. 4 KiB, as VictoriaMetrics.
    pub max_label_value_bytes: usize,
    /// How far in the future a timestamp may be, in ms. Two days: clocks drift, but a sample a
    /// week ahead is a bug (often seconds sent where milliseconds are expected).
    pub max_future_ms: i64,
    /// How old a timestamp may be, in ms; `None` accepts any age. The appliance sets this to
    /// the storage retention, so data that would be deleted at once is refused instead.
    pub max_age_ms: Option<i64>,
    /// Most ingestion requests decoded at once; 0 means twice the CPU count. Each holds up to
    /// `max_decompressed_bytes` plus its batch in memory, so this bounds ingestion memory.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a free slot before it is answered 503, in ms. 10 s: shorter
    /// than Prometheus' default 30 s remote timeout, so the sender sees "retry later" instead of
    /// a timeout.
    pub max_queue_wait_ms: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 32 << 20,
            max_labels_per_series: 40,
            max_label_name_bytes: 256,
            max_label_value_bytes: 4096,
            max_future_ms: 2 * 24 * 3600 * 1000,
            max_age_ms: None,
            max_concurrent_requests: 0,
            max_queue_wait_ms: 10_000,
        }
    }
}

impl IngestLimits {
    /// `max_concurrent_requests` with 0 resolved to twice the CPU count.
    pub fn concurrency(&self) -> usize {
        if self.max_concurrent_requests > 0 {
            return self.max_concurrent_requests;
        }
        std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
    }
}

/// True when `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    is_valid_label_name_bytes(name.as_bytes())
}

/// [`is_valid_label_name`] on bytes.
#[inline]
pub fn is_valid_label_name_bytes(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return false,
    }
    bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// True when `name` is a valid classic Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' || *b == b':' => {}
        _ => return false,
    }
    bytes[1..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
}

/// The current time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl IngestLimits {
    /// Normalises `batch` (labels sorted by name, empty-valued labels dropped, series without
    /// samples dropped) and checks every series against the limits. On error the batch must not
    /// be pushed; the error names the first offending series.
    pub fn validate(&self, batch: &mut MetricBatch, now_ms: i64) -> Result<(), IngestError> {
        let max_ts = now_ms.saturating_add(self.max_future_ms);
        let min_ts = self.max_age_ms.map_or(i64::MIN, |age| now_ms.saturating_sub(age));
        for i in 0..batch.series_count() {
            // Senders almost always send clean, sorted labels; only other series take the
            // slow path that normalises and then explains what is wrong.
            let clean = batch.labels_clean(
                i,
                self.max_labels_per_series,
                self.max_label_name_bytes,
                self.max_label_value_bytes,
            );
            if !clean {
                batch.normalize_labels(i);
            }
            self.check_series(batch, i, min_ts, max_ts, clean)?;
        }
        batch.drop_empty_series();
        Ok(())
    }

    fn check_series(
        &self,
        batch: &MetricBatch,
        i: usize,
        min_ts: i64,
        max_ts: i64,
        labels_clean: bool,
    ) -> Result<(), IngestError> {
        let labels = batch.label_range(i);
        let samples = batch.sample_range(i);
        if samples.is_empty() {
            // Nothing to store (for example a remote-write 2.0 series carrying only metadata).
            return Ok(());
        }
        let where_ = || {
            format!(
                "series #{i} {}",
                describe_labels(labels.clone().map(|j| batch.label_at(j)))
            )
        };
        let fail = |reason, what: String| Err(IngestError::new(reason, format!("{}: {what}", where_())));
        if !labels_clean {
            self.check_labels(batch, i)?;
        }
        let timestamps = &batch.timestamps()[samples.clone()];
        for (k, &ts) in timestamps.iter().enumerate() {
            if k > 0 && ts < timestamps[k - 1] {
                return fail(
                    RejectReason::UnsortedSamples,
                    format!(
                        "sample #{k} has timestamp {ts}, before the previous sample's {}; samples must be sorted by time",
                        timestamps[k - 1]
                    ),
                );
            }
            if ts > max_ts {
                return fail(
                    RejectReason::FutureTimestamp,
                    format!(
                        "sample #{k} has timestamp {ts} ms, more than max_future_ms={} ahead of now ({}); is it in seconds or nanoseconds instead of milliseconds?",
                        self.max_future_ms,
                        max_ts - self.max_future_ms
                    ),
                );
            }
            if ts < min_ts {
                return fail(
                    RejectReason::TooOld,
                    format!(
                        "sample #{k} has timestamp {ts} ms, older than the retention allows (oldest accepted: {min_ts})"
                    ),
                );
            }
        }
        Ok(())
    }

    /// The detailed label checks, for series that failed the fast `labels_clean` test.
    fn check_labels(&self, batch: &MetricBatch, i: usize) -> Result<(), IngestError> {
        let labels = batch.label_range(i);
        let where_ = || {
            format!(
                "series #{i} {}",
                describe_labels(labels.clone().map(|j| batch.label_at(j)))
            )
        };
        let fail = |reason, what: String| Err(IngestError::new(reason, format!("{}: {what}", where_())));
        if labels.is_empty() {
            return fail(RejectReason::NoLabels, "the series has no labels".into());
        }
        if labels.len() > self.max_labels_per_series {
            return fail(
                RejectReason::TooManyLabels,
                format!(
                    "{} labels, more than max_labels_per_series={}",
                    labels.len(),
                    self.max_labels_per_series
                ),
            );
        }
        let mut prev: Option<&str> = None;
        for j in labels.clone() {
            let (name, value) = batch.label_at(j);
            if name.len() > self.max_label_name_bytes {
                return fail(
                    RejectReason::LabelTooLong,
                    format!(
                        "label name \"{}\" is {} bytes, more than max_label_name_bytes={}",
                        truncate(name, 64),
                        name.len(),
                        self.max_label_name_bytes
                    ),
                );
            }
            if !is_valid_label_name(name) {
                return fail(
                    RejectReason::InvalidLabelName,
                    format!(
                        "label name \"{}\" is not valid (must match [a-zA-Z_][a-zA-Z0-9_]*)",
                        truncate(name, 64)
                    ),
                );
            }
            if value.len() > self.max_label_value_bytes {
                return fail(
                    RejectReason::LabelTooLong,
                    format!(
                        "value of label \"{name}\" is {} bytes, more than max_label_value_bytes={}",
                        value.len(),
                        self.max_label_value_bytes
                    ),
                );
            }
            if prev == Some(name) {
                return fail(
                    RejectReason::DuplicateLabel,
                    format!("label \"{name}\" appears more than once"),
                );
            }
            prev = Some(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn one(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> MetricBatch {
        let mut b = MetricBatch::new();
        b.add_series(labels.iter().copied(), samples.iter().copied()).unwrap();
        b
    }

    fn check(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Result<MetricBatch, IngestError> {
        let mut b = one(labels, samples);
        IngestLimits::default().validate(&mut b, NOW).map(|()| b)
    }

    #[test]
    fn label_name_rules() {
        assert!(is_valid_label_name("__name__"));
        assert!(is_valid_label_name("a1_B"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name(""));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(!is_valid_metric_name("a b"));
    }

    #[test]
    fn good_series_passes_and_is_normalised() {
        let b = check(&[("job", "x"), ("__name__", "up"), ("empty", "")], &[(NOW, 1.0)]).unwrap();
        assert_eq!(
            b.series(0).labels().collect::<Vec<_>>(),
            vec![("__name__", "up"), ("job", "x")]
        );
    }

    #[test]
    fn each_violation_has_its_reason() {
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>, RejectReason);
        let cases: Vec<Case<'_>> = vec![
            (vec![("1bad", "x")], vec![(NOW, 1.0)], RejectReason::InvalidLabelName),
            (
                vec![("a", "x"), ("a", "y")],
                vec![(NOW, 1.0)],
                RejectReason::DuplicateLabel,
            ),
            (
                vec![("a", "x")],
                vec![(NOW, 1.0), (NOW - 1, 1.0)],
                RejectReason::UnsortedSamples,
            ),
            (
                vec![("a", "x")],
                vec![(NOW + 3 * 86_400_000, 1.0)],
                RejectReason::FutureTimestamp,
            ),
            (vec![("a", "")], vec![(NOW, 1.0)], RejectReason::NoLabels),
        ];
        for (labels, samples, reason) in cases {
            let err = check(&labels, &samples).unwrap_err();
            assert_eq!(err.reason, reason, "{labels:?}: {err}");
            assert!(err.message.starts_with("series #0 {"), "{err}");
        }
        let many: Vec<(String, String)> = (0..41).map(|i| (format!("l{i}"), "v".to_owned())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            check(&many, &[(NOW, 1.0)]).unwrap_err().reason,
            RejectReason::TooManyLabels
        );
        let long = "v".repeat(4097);
        assert_eq!(
            check(&[("a", &long)], &[(NOW, 1.0)]).unwrap_err().reason,
            RejectReason::LabelTooLong
        );
    }

    #[test]
    fn special_values_and_equal_timestamps_are_kept() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let b = check(
            &[("a", "x")],
            &[(NOW, stale), (NOW, f64::INFINITY), (NOW + 1, f64::NAN)],
        )
        .unwrap();
        assert_eq!(b.series(0).values()[0].to_bits(), 0x7ff0_0000_0000_0002);
        assert!(b.series(0).values()[1].is_infinite());
    }

    #[test]
    fn retention_refuses_old_samples_when_set() {
        let limits = IngestLimits {
            max_age_ms: Some(1000),
            ..IngestLimits::default()
        };
        let mut b = one(&[("a", "x")], &[(NOW - 2000, 1.0)]);
        assert_eq!(limits.validate(&mut b, NOW).unwrap_err().reason, RejectReason::TooOld);
    }

    #[test]
    fn limits_deserialize_with_defaults_and_refuse_unknown_keys() {
        let l: IngestLimits = serde_json::from_str(r#"{"max_labels_per_series": 60}"#).unwrap();
        assert_eq!(l.max_labels_per_series, 60);
        assert_eq!(l.max_label_value_bytes, 4096);
        let err = serde_json::from_str::<IngestLimits>(r#"{"max_labels": 60}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn series_without_samples_are_dropped() {
        let mut b = one(&[("a", "x")], &[]);
        b.add_series([("b", "y")], [(NOW, 1.0)]).unwrap();
        IngestLimits::default().validate(&mut b, NOW).unwrap();
        assert_eq!(b.series_count(), 1);
        assert_eq!(b.series(0).label("b"), Some("y"));
    }
}
