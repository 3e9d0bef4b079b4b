//! The set of deleted series, as the data side sees it.
//!
//! The index side owns deletion (it records deleted metric ids and hides them from searches);
//! the data side only asks "is this id deleted?" while merging, to drop its blocks. This trait is
//! the whole contract between them.

/// Answers whether a series was deleted. Implementations must be cheap: merges call this once
/// per block.
pub trait DeletedMetricIds: Send + Sync + 'static {
    /// True if the series with this metric id was deleted.
    fn contains(&self, metric_id: u64) -> bool;
}

/// No series is deleted (tests, tools).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeletedMetricIds;

impl DeletedMetricIds for NoDeletedMetricIds {
    fn contains(&self, _metric_id: u64) -> bool {
        false
    }
}
