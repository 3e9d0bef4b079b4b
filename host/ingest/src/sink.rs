//! [`SampleSink`]: where decoded batches go. Local storage implements it in the single and
//! storage roles, the insert role's sharding router in the cluster (DESIGN.md §2).

use std::sync::Mutex;

use strata_storage::Tenant;

use crate::batch::MetricBatch;

/// What a sink accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Float samples written.
    pub samples_written: u64,
}

/// Why a sink refused a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink cannot take data now (overload, disk full, read-only, no storage node): the
    /// client should retry later. Answered with 503.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The sink refuses this data for good (for example a cardinality limit). Answered with 400.
    #[error("storage rejected the data: {0}")]
    Rejected(String),
}

/// Accepts validated batches. Contract:
/// - `push` is all-or-nothing for the batch as far as the caller can tell: on `Err` the caller
///   reports failure to the client, who resends the whole request, so a sink that stored part
///   of a batch must tolerate seeing those samples again (storage deduplicates equal samples).
/// - On `Ok` the samples are accepted; durability follows the storage engine's flush rules.
/// - `push` may block (disk, network); callers run it off the async executor.
/// - The batch satisfies the invariants documented on [`MetricBatch`].
pub trait SampleSink: Send + Sync {
    /// Stores `batch` for `tenant`.
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError>;
}

/// One series as kept by [`MemorySink`]: its labels and samples, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSeries {
    /// The tenant it was pushed for.
    pub tenant: Tenant,
    /// Labels in batch order.
    pub labels: Vec<(String, String)>,
    /// (timestamp, value) pairs.
    pub samples: Vec<(i64, f64)>,
}

/// A sink that keeps everything in memory, for tests. It can be told to fail.
#[derive(Debug, Default)]
pub struct MemorySink {
    series: Mutex<Vec<StoredSeries>>,
    pushes: Mutex<usize>,
    failure: Mutex<Option<SinkError>>,
}

impl MemorySink {
    /// An empty sink that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following push fail with `err` (or succeed again with `None`).
    pub fn set_failure(&self, err: Option<SinkError>) {
        *lock(&self.failure) = err;
    }

    /// Everything accepted so far, in push order.
    pub fn series(&self) -> Vec<StoredSeries> {
        lock(&self.series).clone()
    }

    /// Number of successful pushes.
    pub fn push_count(&self) -> usize {
        *lock(&self.pushes)
    }

    /// Total samples accepted.
    pub fn sample_count(&self) -> usize {
        lock(&self.series).iter().map(|s| s.samples.len()).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the data from the next one.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SampleSink for MemorySink {
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        if let Some(err) = lock(&self.failure).clone() {
            return Err(err);
        }
        let mut stored = lock(&self.series);
        for s in batch.iter() {
            stored.push(StoredSeries {
                tenant,
                labels: s.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
                samples: s.timestamps().iter().copied().zip(s.values().iter().copied()).collect(),
            });
        }
        *lock(&self.pushes) += 1;
        Ok(PushOutcome {
            samples_written: batch.sample_count() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sink_stores_and_fails_on_demand() {
        let sink = MemorySink::new();
        let mut b = MetricBatch::new();
        b.add_series([("__name__", "m")], [(1, 2.0)]).unwrap();
        let out = sink.push(Tenant::default(), &b).unwrap();
        assert_eq!(out.samples_written, 1);
        assert_eq!(sink.series()[0].labels, vec![("__name__".to_owned(), "m".to_owned())]);
        sink.set_failure(Some(SinkError::Unavailable("disk full".into())));
        assert!(matches!(
            sink.push(Tenant::default(), &b),
            Err(SinkError::Unavailable(_))
        ));
        assert_eq!(sink.sample_count(), 1);
        assert_eq!(sink.push_count(), 1);
    }
}
