//! Adapters from the local storage engine to the traits the API layers are written against:
//! [`StorageSink`] for ingestion (`SampleSink`) and [`StorageSource`] for PromQL
//! (`SeriesSource`). The select and insert roles provide network versions of the same traits,
//! so the decoders and the query engine never know which one they talk to.

use std::sync::Arc;

use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError};
use strata_query::{LabelMatcher, Labels, MatchOp as QueryOp, Series, SeriesSource, SourceError};
use strata_storage::index::{Label, MatchOp, TagFilter};
use strata_storage::{Storage, StorageError, Tenant, TimeRange};

/// Ingestion into local storage.
#[derive(Clone)]
pub struct StorageSink {
    storage: Arc<Storage>,
}

impl StorageSink {
    /// Writes go to `storage`.
    pub fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }
}

impl SampleSink for StorageSink {
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        let mut labels: Vec<Label<'_>> = Vec::new();
        let mut written = 0u64;
        for series in batch.iter() {
            labels.clear();
            labels.extend(series.labels().map(|(name, value)| Label { name, value }));
            self.storage
                .add_series(tenant, &labels, series.timestamps(), series.values())
                .map_err(sink_error)?;
            written += series.timestamps().len() as u64;
        }
        Ok(PushOutcome {
            samples_written: written,
        })
    }
}

fn sink_error(err: StorageError) -> SinkError {
    match err {
        StorageError::InvalidInput(message) => SinkError::Rejected(message),
        StorageError::Unavailable(message) => SinkError::Unavailable(message),
        other => {
            // Details (paths, OS errors) go to the log; the client learns to retry.
            tracing::error!("storage write failed: {other}");
            metrics::counter!("strata_storage_errors_total").increment(1);
            SinkError::Unavailable("storage write failed; the server log has the details".into())
        }
    }
}

/// PromQL reads from local storage for one tenant.
#[derive(Clone)]
pub struct StorageSource {
    storage: Arc<Storage>,
    tenant: Tenant,
    max_series: usize,
}

impl StorageSource {
    /// Reads `tenant`'s series; a selector matching more than `max_series` series fails.
    pub fn new(storage: Arc<Storage>, tenant: Tenant, max_series: usize) -> Self {
        Self {
            storage,
            tenant,
            max_series,
        }
    }
}

/// PromQL matchers as storage tag filters (the same four operators and semantics).
pub(crate) fn to_filters(matchers: &[LabelMatcher]) -> Vec<TagFilter> {
    matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                QueryOp::Equal => MatchOp::Equal,
                QueryOp::NotEqual => MatchOp::NotEqual,
                QueryOp::RegexMatch => MatchOp::RegexMatch,
                QueryOp::RegexNoMatch => MatchOp::RegexNoMatch,
            };
            TagFilter::new(m.name.clone(), op, m.value.clone())
        })
        .collect()
}

fn source_error(err: StorageError) -> SourceError {
    match err {
        err @ (StorageError::InvalidInput(_) | StorageError::TooManySeries { .. } | StorageError::Unavailable(_)) => {
            SourceError(err.to_string())
        }
        other => {
            tracing::error!("storage read failed: {other}");
            metrics::counter!("strata_storage_errors_total").increment(1);
            SourceError("storage read failed; the server log has the details".into())
        }
    }
}

impl SeriesSource for StorageSource {
    fn select(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError> {
        let filters = to_filters(matchers);
        let tr = TimeRange {
            min: start_ms,
            max: end_ms,
        };
        let mut out = Vec::new();
        self.storage
            .search(
                self.tenant,
                &filters,
                tr,
                self.max_series,
                &mut |name, timestamps, values| {
                    out.push(Series {
                        labels: Labels::from_pairs(name.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                        timestamps: timestamps.to_vec(),
                        values: values.to_vec(),
                    });
                    Ok(())
                },
            )
            .map_err(source_error)?;
        Ok(out)
    }

    fn label_names(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<String>, SourceError> {
        let tr = TimeRange {
            min: start_ms,
            max: end_ms,
        };
        self.storage
            .label_names(self.tenant, &to_filters(matchers), tr, self.max_series)
            .map_err(source_error)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError> {
        let tr = TimeRange {
            min: start_ms,
            max: end_ms,
        };
        self.storage
            .label_values(self.tenant, name, &to_filters(matchers), tr, self.max_series)
            .map_err(source_error)
    }
}
