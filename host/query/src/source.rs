//! Where the evaluator reads series from: the `SeriesSource` trait and an in-memory source.

use std::collections::BTreeSet;

use crate::labels::{LabelMatcher, Labels};

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (a plain NaN is a value, not a marker).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker as an f64.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Series per batch of the default `select_batches`.
pub const SELECT_BATCH: usize = 1024;

/// Series per shard of [`MemSource::select_shards`].
pub const MEM_SHARD: usize = 16;

/// One series as read from storage: labels (sorted, `__name__` included) and samples in
/// ascending timestamp order (milliseconds), `timestamps.len() == values.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// Sample timestamps in milliseconds, ascending.
    pub timestamps: Vec<i64>,
    /// Sample values; may include stale markers.
    pub values: Vec<f64>,
}

/// One independently readable part of a selection (see [`SeriesSource::select_shards`]): called
/// once, it hands each of its series to the callback, which returns `false` to stop early.
pub type SelectShard<'a> = Box<dyn FnOnce(&mut dyn FnMut(Series) -> bool) -> Result<(), SourceError> + Send + 'a>;

/// A failure of the underlying storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where series come from: local storage, or the select role's fan-out.
///
/// Every method gets all matchers of one selector (AND-ed) and an inclusive time range;
/// `select` returns each matching series with its samples in `[start_ms, end_ms]`.
pub trait SeriesSource: Send + Sync {
    /// Series matching all `matchers`, with samples in `[start_ms, end_ms]`.
    fn select(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError>;

    /// Streams the series `select` would return to `f` in batches, so a query never has to
    /// hold every series at once; `f` returns `false` to stop early. The default calls `select`
    /// once; storage implementations should override it and read batch by batch.
    fn select_batches(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(Vec<Series>) -> bool,
    ) -> Result<(), SourceError> {
        let all = self.select(matchers, start_ms, end_ms)?;
        let mut it = all.into_iter();
        loop {
            let batch: Vec<Series> = it.by_ref().take(SELECT_BATCH).collect();
            if batch.is_empty() || !f(batch) {
                return Ok(());
            }
        }
    }

    /// Splits the selection `select` would return into shards that can be read at the same
    /// time on different threads; series of a shard come in the source's order, and shards
    /// concatenated in their order give the source's whole order. The engine reads every
    /// shard on its worker threads and computes per-series results as the series arrive, so
    /// nothing holds the raw samples of every series at once. The default is one shard over
    /// `select_batches`; storage implementations should return several.
    fn select_shards<'a>(
        &'a self,
        matchers: &'a [LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SelectShard<'a>>, SourceError> {
        let shard: SelectShard<'a> = Box::new(move |f| {
            self.select_batches(matchers, start_ms, end_ms, &mut |batch| {
                for s in batch {
                    if !f(s) {
                        return false;
                    }
                }
                true
            })
        });
        Ok(vec![shard])
    }

    /// The labels of the series `select` would return, without their samples (the series
    /// API). The default reads the samples too; sources with an index should override it.
    fn series_labels(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, SourceError> {
        Ok(self
            .select(matchers, start_ms, end_ms)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    /// Label names of series matching `matchers` (all series when empty), sorted.
    fn label_names(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<String>, SourceError>;

    /// Values of label `name` in series matching `matchers` (all series when empty), sorted.
    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError>;
}

/// A `SeriesSource` over series held in memory; used by tests and as the reference behaviour.
#[derive(Debug, Clone, Default)]
pub struct MemSource {
    series: Vec<Series>,
}

impl MemSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to the series with `labels`, creating it if needed; keeps timestamps sorted
    /// (a sample at an existing timestamp replaces the old one).
    pub fn add(&mut self, labels: Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        let idx = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    labels,
                    timestamps: vec![],
                    values: vec![],
                });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[idx];
        let mut pts: Vec<(i64, f64)> = s.timestamps.iter().copied().zip(s.values.iter().copied()).collect();
        pts.extend(samples);
        // Stable sort plus keeping the last of equal timestamps: later writes win.
        pts.sort_by_key(|p| p.0);
        let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(pts.len());
        for p in pts {
            match dedup.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => dedup.push(p),
            }
        }
        s.timestamps = dedup.iter().map(|p| p.0).collect();
        s.values = dedup.iter().map(|p| p.1).collect();
    }

    /// Adds a whole series with samples already sorted by time.
    pub fn push_series(&mut self, series: Series) {
        self.series.push(series);
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series are held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| {
            matchers.iter().all(|m| m.matches_labels(&s.labels))
                && s.timestamps.iter().any(|&t| t >= start_ms && t <= end_ms)
        })
    }
}

/// A copy of `s` with only the samples in `[start_ms, end_ms]`.
fn clip(s: &Series, start_ms: i64, end_ms: i64) -> Series {
    let lo = s.timestamps.partition_point(|&t| t < start_ms);
    let hi = s.timestamps.partition_point(|&t| t <= end_ms);
    Series {
        labels: s.labels.clone(),
        timestamps: s.timestamps[lo..hi].to_vec(),
        values: s.values[lo..hi].to_vec(),
    }
}

impl SeriesSource for MemSource {
    fn select(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError> {
        Ok(self
            .matching(matchers, start_ms, end_ms)
            .map(|s| clip(s, start_ms, end_ms))
            .collect())
    }

    fn select_batches(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(Vec<Series>) -> bool,
    ) -> Result<(), SourceError> {
        let mut batch = Vec::with_capacity(SELECT_BATCH);
        for s in self.matching(matchers, start_ms, end_ms) {
            batch.push(clip(s, start_ms, end_ms));
            if batch.len() == SELECT_BATCH && !f(std::mem::take(&mut batch)) {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            f(batch);
        }
        Ok(())
    }

    /// Shards of [`MEM_SHARD`] series, so that tests exercise the engine's parallel reads.
    fn select_shards<'a>(
        &'a self,
        matchers: &'a [LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SelectShard<'a>>, SourceError> {
        let all: Vec<&'a Series> = self.matching(matchers, start_ms, end_ms).collect();
        Ok(all
            .chunks(MEM_SHARD)
            .map(|chunk| {
                let chunk: Vec<&'a Series> = chunk.to_vec();
                let shard: SelectShard<'a> = Box::new(move |f| {
                    for s in chunk {
                        if !f(clip(s, start_ms, end_ms)) {
                            break;
                        }
                    }
                    Ok(())
                });
                shard
            })
            .collect())
    }

    fn label_names(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<String>, SourceError> {
        let set: BTreeSet<String> = self
            .matching(matchers, start_ms, end_ms)
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        Ok(set.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError> {
        let set: BTreeSet<String> = self
            .matching(matchers, start_ms, end_ms)
            .map(|s| s.labels.get(name).to_string())
            .filter(|v| !v.is_empty())
            .collect();
        Ok(set.into_iter().collect())
    }
}
