//! Adapters from the local storage engine to the traits the API layers are written against:
//! [`StorageSink`] for ingestion (`SampleSink`) and [`StorageSource`] for PromQL
//! (`SeriesSource`). The select and insert roles provide network versions of the same traits,
//! so the decoders and the query engine never know which one they talk to.

use std::sync::Arc;

use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError};
use strata_query::{LabelMatcher, Labels, MatchOp as QueryOp, SelectShard, Series, SeriesSource, SourceError};
use strata_storage::index::{Label, MatchOp, MetricName, TagFilter};
use strata_storage::{Storage, StorageError, Tenant, TimeRange, Tsid};

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
        // With the WAL on, the write is acknowledged only once it is on disk (group commit);
        // `add_batch` logs the whole request first so its fsync overlaps the table work.
        let written = self
            .storage
            .add_batch(tenant, &|visit| {
                let mut labels: Vec<Label<'_>> = Vec::new();
                for series in batch.iter() {
                    labels.clear();
                    labels.extend(series.labels().map(|(name, value)| Label { name, value }));
                    visit(&labels, series.timestamps(), series.values())?;
                }
                Ok(())
            })
            .map_err(sink_error)?;
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
    names: Arc<NameCache>,
}

impl StorageSource {
    /// Reads `tenant`'s series; a selector matching more than `max_series` series fails.
    pub fn new(storage: Arc<Storage>, tenant: Tenant, max_series: usize) -> Self {
        Self {
            storage,
            tenant,
            max_series,
            names: Arc::new(NameCache::new(NAME_CACHE_BYTES)),
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

/// Memory the series-name cache of one [`StorageSource`] may use (estimated).
const NAME_CACHE_BYTES: usize = 48 << 20;

/// Series names by series id, so that a query does not look every name up in the index
/// again (an index block read and decode per series, the largest cost of a selection before
/// the cache). Bounded by an estimate of its memory; when full it starts over, which keeps it
/// simple and lets names of series no longer queried go.
struct NameCache {
    max_bytes: usize,
    inner: std::sync::Mutex<NameCacheInner>,
}

#[derive(Default)]
struct NameCacheInner {
    names: std::collections::HashMap<u64, Labels>,
    bytes: usize,
}

impl NameCache {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: std::sync::Mutex::new(NameCacheInner::default()),
        }
    }

    /// The labels of `tsid`, from the cache or the index; `None` when the series is deleted.
    fn get(&self, storage: &Storage, tsid: &Tsid) -> Result<Option<Labels>, StorageError> {
        if let Ok(inner) = self.inner.lock()
            && let Some(l) = inner.names.get(&tsid.metric_id)
        {
            return Ok(Some(l.clone()));
        }
        let Some(name) = storage.metric_name(tsid)? else {
            return Ok(None);
        };
        let labels = labels_of(&name);
        // Strings, their headers and the map entry.
        let size = 64 + labels.iter().map(|l| 48 + l.name.len() + l.value.len()).sum::<usize>();
        if let Ok(mut inner) = self.inner.lock() {
            if inner.bytes + size > self.max_bytes {
                inner.names = Default::default();
                inner.bytes = 0;
            }
            if inner.names.insert(tsid.metric_id, labels.clone()).is_none() {
                inner.bytes += size;
            }
        }
        Ok(Some(labels))
    }
}

/// Series per shard of a selection: small enough that two threads share the work evenly, big
/// enough that a shard's fixed cost (looking up the parts) stays small.
const SHARD_SERIES: usize = 256;

/// How a shard's visitor tells storage to stop early (the engine asked for no more series).
const STOPPED: &str = "the query stopped reading";

/// A stored series name as PromQL labels.
fn labels_of(name: &MetricName) -> Labels {
    Labels::from_pairs(name.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
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
                        labels: labels_of(name),
                        timestamps: timestamps.to_vec(),
                        values: values.to_vec(),
                    });
                    Ok(())
                },
            )
            .map_err(source_error)?;
        Ok(out)
    }

    /// The matching TSIDs are found once, then read in shards of [`SHARD_SERIES`] on the
    /// engine's worker threads, each series handed over as soon as it is decoded.
    fn select_shards<'a>(
        &'a self,
        matchers: &'a [LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SelectShard<'a>>, SourceError> {
        let tr = TimeRange {
            min: start_ms,
            max: end_ms,
        };
        let tsids = self
            .storage
            .search_series_tsids(self.tenant, &to_filters(matchers), tr, self.max_series)
            .map_err(source_error)?;
        let tsids: Arc<[Tsid]> = tsids.into();
        let shards = tsids.len().div_ceil(SHARD_SERIES);
        Ok((0..shards)
            .map(|i| {
                let tsids = Arc::clone(&tsids);
                let shard: SelectShard<'a> = Box::new(move |f| {
                    let chunk = &tsids[i * SHARD_SERIES..((i + 1) * SHARD_SERIES).min(tsids.len())];
                    let result = self
                        .storage
                        .search_tsids_unnamed(chunk, tr, &mut |tsid, timestamps, values| {
                            // A series whose name is gone was deleted between the two reads: skip it.
                            let Some(labels) = self.names.get(&self.storage, tsid)? else {
                                return Ok(());
                            };
                            let series = Series {
                                labels,
                                timestamps: timestamps.to_vec(),
                                values: values.to_vec(),
                            };
                            if f(series) {
                                Ok(())
                            } else {
                                Err(StorageError::Unavailable(STOPPED.into()))
                            }
                        });
                    match result {
                        Err(StorageError::Unavailable(m)) if m == STOPPED => Ok(()),
                        other => other.map_err(source_error),
                    }
                });
                shard
            })
            .collect())
    }

    /// From the index alone: no samples are read.
    fn series_labels(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, SourceError> {
        let tr = TimeRange {
            min: start_ms,
            max: end_ms,
        };
        let names = self
            .storage
            .series(self.tenant, &to_filters(matchers), tr, self.max_series)
            .map_err(source_error)?;
        Ok(names.iter().map(labels_of).collect())
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
