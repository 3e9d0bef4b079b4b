//! Building the columnar, dictionary-encoded batch the host expects (see `wit/types.wit`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A finished batch: the same fields as the WIT `batch` record, in plain Rust.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Every symbol's UTF-8 bytes, concatenated.
    pub symbols: Vec<u8>,
    /// End offset of each symbol in `symbols`.
    pub symbol_ends: Vec<u32>,
    /// (name, value) symbol pairs, flattened.
    pub label_refs: Vec<u32>,
    /// Per series: the end of its label pairs (counted in pairs).
    pub series_label_ends: Vec<u32>,
    /// Per series: the end of its samples.
    pub series_sample_ends: Vec<u32>,
    /// Sample timestamps, milliseconds since the epoch.
    pub timestamps: Vec<i64>,
    /// Sample values.
    pub values: Vec<f64>,
}

impl Batch {
    /// How many series the batch holds.
    pub fn series_count(&self) -> usize {
        self.series_sample_ends.len()
    }

    /// Symbol `i` as text (empty when out of range or not UTF-8; the host validates).
    pub fn symbol(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 {
            0
        } else {
            self.symbol_ends.get(i - 1).copied().unwrap_or(0) as usize
        };
        let end = self.symbol_ends.get(i).copied().unwrap_or(0) as usize;
        self.symbols
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The labels of series `s`, in the order they were added.
    pub fn labels(&self, s: usize) -> Vec<(&str, &str)> {
        let start = if s == 0 {
            0
        } else {
            self.series_label_ends[s - 1] as usize
        };
        let end = self.series_label_ends[s] as usize;
        (start..end)
            .map(|p| {
                (
                    self.symbol(self.label_refs[2 * p]),
                    self.symbol(self.label_refs[2 * p + 1]),
                )
            })
            .collect()
    }

    /// The samples of series `s` as (timestamp, value) pairs.
    pub fn samples(&self, s: usize) -> Vec<(i64, f64)> {
        let start = if s == 0 {
            0
        } else {
            self.series_sample_ends[s - 1] as usize
        };
        let end = self.series_sample_ends[s] as usize;
        (start..end).map(|i| (self.timestamps[i], self.values[i])).collect()
    }
}

/// FNV-1a: the dictionary needs a fast hash and no random seed (a seed would make the
/// component import WASI's random interface).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Builds a [`Batch`] series by series, interning every label name and value once.
///
/// ```
/// let mut b = strata_plugin_sdk::BatchBuilder::new();
/// b.label("__name__", "cpu_usage");
/// b.label("host", "a");
/// b.sample(1_700_000_000_000, 0.5);
/// b.finish_series();
/// let batch = b.finish();
/// assert_eq!(batch.labels(0), vec![("__name__", "cpu_usage"), ("host", "a")]);
/// ```
#[derive(Default)]
pub struct BatchBuilder {
    batch: Batch,
    dict: HashMap<Box<str>, u32, BuildHasherDefault<Fnv>>,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns `s` and returns its symbol id.
    pub fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.dict.get(s) {
            return id;
        }
        let id = self.batch.symbol_ends.len() as u32;
        self.batch.symbols.extend_from_slice(s.as_bytes());
        self.batch.symbol_ends.push(self.batch.symbols.len() as u32);
        self.dict.insert(s.into(), id);
        id
    }

    /// Adds a label to the current series.
    pub fn label(&mut self, name: &str, value: &str) {
        let n = self.symbol(name);
        let v = self.symbol(value);
        self.batch.label_refs.extend_from_slice(&[n, v]);
    }

    /// Adds a sample to the current series.
    pub fn sample(&mut self, timestamp_ms: i64, value: f64) {
        self.batch.timestamps.push(timestamp_ms);
        self.batch.values.push(value);
    }

    /// Ends the current series: the labels and samples added since the last call are its own.
    pub fn finish_series(&mut self) {
        self.batch
            .series_label_ends
            .push((self.batch.label_refs.len() / 2) as u32);
        self.batch.series_sample_ends.push(self.batch.timestamps.len() as u32);
    }

    /// Drops the labels and samples added since the last [`finish_series`](Self::finish_series).
    pub fn abandon_series(&mut self) {
        let labels = self.batch.series_label_ends.last().copied().unwrap_or(0) as usize;
        let samples = self.batch.series_sample_ends.last().copied().unwrap_or(0) as usize;
        self.batch.label_refs.truncate(labels * 2);
        self.batch.timestamps.truncate(samples);
        self.batch.values.truncate(samples);
    }

    /// Series finished so far.
    pub fn series_count(&self) -> usize {
        self.batch.series_sample_ends.len()
    }

    /// Adds one whole series.
    pub fn series(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        for (n, v) in labels {
            self.label(n, v);
        }
        for &(t, v) in samples {
            self.sample(t, v);
        }
        self.finish_series();
    }

    /// The batch; an unfinished series is dropped.
    pub fn finish(mut self) -> Batch {
        self.abandon_series();
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_symbols_and_keeps_series_apart() {
        let mut b = BatchBuilder::new();
        b.series(&[("__name__", "a"), ("job", "x")], &[(1, 1.0), (2, 2.0)]);
        b.series(&[("__name__", "a"), ("job", "y")], &[(3, 3.0)]);
        b.label("__name__", "dropped");
        let batch = b.finish();
        assert_eq!(batch.series_count(), 2);
        assert_eq!(batch.symbol_ends.len(), 6, "__name__, a, job, x, y, dropped: once each");
        assert_eq!(batch.labels(1), vec![("__name__", "a"), ("job", "y")]);
        assert_eq!(batch.samples(0), vec![(1, 1.0), (2, 2.0)]);
        assert_eq!(batch.samples(1), vec![(3, 3.0)]);
    }
}
