//! Building the columnar, dictionary-encoded batch the host expects (see `wit/types.wit`).

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

/// A multiplicative hash over 8-byte words. The dictionary needs a fast hash and no random
/// seed (a seed would make the component import WASI's random interface); a byte-at-a-time
/// hash (FNV) cost a visible share of a parse, since every label of every series is looked up.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n <= 8 {
        // Most label names and values: one loop-free load (see `scan::short_word`).
        h = (h.rotate_left(23) ^ crate::scan::short_word(bytes)).wrapping_mul(K);
        return h ^ (h >> 29);
    }
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    if !chunks.remainder().is_empty() {
        // The last 8 bytes, overlapping the ones already mixed in: no byte loop, and no copy
        // into a buffer (a run-time-length copy is a call out of the guest in a component).
        let c = &bytes[n - 8..];
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    h ^ (h >> 29)
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
    /// Open-addressing table over the symbols already in `batch`: each slot holds
    /// `(hash as u32, id + 1)`, 0 meaning empty. Symbols are compared in `batch.symbols`
    /// itself, so interning allocates nothing per string.
    slots: Vec<(u32, u32)>,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn symbol_bytes(&self, id: u32) -> &[u8] {
        let id = id as usize;
        let start = if id == 0 {
            0
        } else {
            self.batch.symbol_ends[id - 1] as usize
        };
        &self.batch.symbols[start..self.batch.symbol_ends[id] as usize]
    }

    /// Interns `s` and returns its symbol id (usable with [`label_ids`](Self::label_ids)).
    // No inline hint: inlined at its call sites it made the Influx parser 10-15% slower in a
    // component (a bigger function, more spills in Cranelift's code).
    pub fn symbol(&mut self, s: &str) -> u32 {
        // Keep the table at most half full.
        if (self.batch.symbol_ends.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let h = hash(s.as_bytes());
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (slot_hash, id1) = self.slots[i];
            if id1 == 0 {
                break;
            }
            // Not `==` on slices: that is a byte-at-a-time `memcmp` inside a component.
            if slot_hash == h as u32 && crate::scan::bytes_eq(self.symbol_bytes(id1 - 1), s.as_bytes()) {
                return id1 - 1;
            }
            i = (i + 1) & mask;
        }
        let id = self.batch.symbol_ends.len() as u32;
        self.batch.symbols.extend_from_slice(s.as_bytes());
        self.batch.symbol_ends.push(self.batch.symbols.len() as u32);
        self.slots[i] = (h as u32, id + 1);
        id
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); size]);
        let mask = size - 1;
        for (h, id1) in old.into_iter().filter(|&(_, id1)| id1 != 0) {
            // Only the low 32 bits of the hash are kept; they also pick the slot.
            let mut i = h as usize & mask;
            while self.slots[i].1 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (h, id1);
        }
    }

    /// Adds a label to the current series.
    pub fn label(&mut self, name: &str, value: &str) {
        let n = self.symbol(name);
        let v = self.symbol(value);
        self.batch.label_refs.extend_from_slice(&[n, v]);
    }

    /// Adds a label by symbol ids from [`symbol`](Self::symbol): a parser that repeats the
    /// same labels for several series (one per field, say) interns them once.
    ///
    /// # Panics
    /// If an id was not returned by this builder.
    #[inline(always)]
    pub fn label_ids(&mut self, name: u32, value: u32) {
        let n = self.batch.symbol_ends.len() as u32;
        assert!(name < n && value < n, "symbol id out of range");
        self.batch.label_refs.extend_from_slice(&[name, value]);
    }

    /// Adds a sample to the current series.
    #[inline(always)]
    pub fn sample(&mut self, timestamp_ms: i64, value: f64) {
        self.batch.timestamps.push(timestamp_ms);
        self.batch.values.push(value);
    }

    /// Ends the current series: the labels and samples added since the last call are its own.
    #[inline(always)]
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

    #[test]
    fn interning_survives_growth_and_tells_similar_strings_apart() {
        let mut b = BatchBuilder::new();
        let names: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
        let ids: Vec<u32> = names.iter().map(|n| b.symbol(n)).collect();
        assert_eq!(ids, (0..5000).collect::<Vec<u32>>());
        // Every one found again, after many grows; prefixes and the empty string are distinct.
        for (n, &id) in names.iter().zip(&ids) {
            assert_eq!(b.symbol(n), id);
        }
        let empty = b.symbol("");
        assert_eq!(empty, 5000);
        assert_eq!(b.symbol("s1234567"), 5001);
        assert_eq!(b.symbol("s12345678"), 5002, "9 bytes: crosses a word");
        assert_eq!(b.symbol(""), empty);
        b.label_ids(ids[7], empty);
        b.sample(1, 1.0);
        b.finish_series();
        assert_eq!(b.finish().labels(0), vec![("s7", "")]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn label_ids_refuses_unknown_ids() {
        BatchBuilder::new().label_ids(0, 0);
    }
}
