//! [`MetricBatch`]: the columnar batch every decoder produces and every sink consumes.
//!
//! One batch holds many series. All label text of the batch lives in one `String`; each label is
//! a span into it, each series a range of labels plus a range of samples, and the samples are two
//! parallel arrays. A decoder reuses one batch across requests ([`MetricBatch::clear`] keeps the
//! capacity), so steady-state ingestion allocates nothing per sample or per series.
//!
//! Invariants once a batch has passed [`crate::IngestLimits::validate`] (which every endpoint
//! runs before pushing):
//! - the labels of each series are sorted by name (byte order), names are unique and valid,
//!   and labels with an empty value are gone (Prometheus treats them as absent);
//! - the timestamps of each series are non-decreasing;
//! - every series has at least one label and at least one sample.
//!
//! The same label set may appear in more than one series of a batch (remote-write allows it);
//! sinks must not assume series are distinct.

use std::ops::Range;

/// One label of a batch: a name and a value, stored back to back in the batch's text buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LabelSpan {
    start: u32,
    name_len: u32,
    value_len: u32,
}

/// One series of a batch: a range of labels and a range of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeriesSpan {
    labels: (u32, u32),
    samples: (u32, u32),
}

/// A columnar batch of series and their float samples. See the module docs for the invariants.
#[derive(Clone, Debug, Default)]
pub struct MetricBatch {
    text: String,
    labels: Vec<LabelSpan>,
    series: Vec<SeriesSpan>,
    timestamps: Vec<i64>,
    values: Vec<f64>,
    /// Where the labels of the series being built start (`labels.len()` when none is open).
    open_labels: usize,
    open_samples: usize,
    open_text: usize,
}

/// Errors from building a batch: only size overflow, since offsets are `u32`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("batch exceeds 4 GiB of label text or 4 billion entries")]
pub struct BatchOverflow;

fn to_u32(n: usize) -> Result<u32, BatchOverflow> {
    u32::try_from(n).map_err(|_| BatchOverflow)
}

impl MetricBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the batch and keeps its allocations for reuse.
    pub fn clear(&mut self) {
        self.text.clear();
        self.labels.clear();
        self.series.clear();
        self.timestamps.clear();
        self.values.clear();
        self.open_labels = 0;
        self.open_samples = 0;
        self.open_text = 0;
    }

    /// Number of series (finished ones).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of samples over all finished series.
    pub fn sample_count(&self) -> usize {
        self.series.last().map_or(0, |s| s.samples.1 as usize)
    }

    /// True when the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Bytes of label text held (a rough memory measure).
    pub fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Bytes allocated by the batch's buffers (for deciding whether to keep it for reuse).
    pub fn capacity_bytes(&self) -> usize {
        self.text.capacity()
            + self.labels.capacity() * std::mem::size_of::<LabelSpan>()
            + self.series.capacity() * std::mem::size_of::<SeriesSpan>()
            + self.timestamps.capacity() * 8
            + self.values.capacity() * 8
    }

    /// Adds a label to the series being built. Series are built by `push_label`/`push_sample`
    /// calls followed by [`MetricBatch::finish_series`].
    pub fn push_label(&mut self, name: &str, value: &str) -> Result<(), BatchOverflow> {
        let start = to_u32(self.text.len())?;
        let name_len = to_u32(name.len())?;
        let value_len = to_u32(value.len())?;
        to_u32(self.text.len() + name.len() + value.len())?;
        self.text.push_str(name);
        self.text.push_str(value);
        self.labels.push(LabelSpan {
            start,
            name_len,
            value_len,
        });
        Ok(())
    }

    /// Starts collecting label text as raw bytes: a decoder then pushes labels with
    /// [`MetricBatch::push_label_raw`] and validates UTF-8 once for the whole request in
    /// [`MetricBatch::finish_raw`], instead of once per string.
    pub(crate) fn begin_raw(&mut self) -> RawText {
        RawText {
            bytes: std::mem::take(&mut self.text).into_bytes(),
            first_label: self.labels.len(),
        }
    }

    /// [`MetricBatch::push_label`] for unvalidated bytes collected in `raw`.
    #[inline]
    pub(crate) fn push_label_raw(&mut self, raw: &mut RawText, name: &[u8], value: &[u8]) -> Result<(), BatchOverflow> {
        let start = to_u32(raw.bytes.len())?;
        let name_len = to_u32(name.len())?;
        let value_len = to_u32(value.len())?;
        to_u32(raw.bytes.len() + name.len() + value.len())?;
        raw.bytes.extend_from_slice(name);
        raw.bytes.extend_from_slice(value);
        self.labels.push(LabelSpan {
            start,
            name_len,
            value_len,
        });
        Ok(())
    }

    /// Ends raw collection: the text must be valid UTF-8 and every label boundary a character
    /// boundary (so each name and value is valid on its own). On failure the batch is cleared
    /// and the error gives the (series, label-within-series) position of the offending label.
    pub(crate) fn finish_raw(&mut self, raw: RawText) -> Result<(), (usize, usize)> {
        let first = raw.first_label;
        let bad_label = match String::from_utf8(raw.bytes) {
            Ok(text) => {
                let bad = self.labels[first..].iter().position(|l| {
                    let mid = (l.start + l.name_len) as usize;
                    let end = mid + l.value_len as usize;
                    !(text.is_char_boundary(l.start as usize)
                        && text.is_char_boundary(mid)
                        && text.is_char_boundary(end))
                });
                self.text = text;
                self.open_text = self.text.len();
                match bad {
                    None => return Ok(()),
                    Some(k) => first + k,
                }
            }
            Err(err) => {
                let offset = err.utf8_error().valid_up_to() as u32;
                let k = self.labels[first..]
                    .iter()
                    .position(|l| offset < l.start + l.name_len + l.value_len)
                    .unwrap_or(0);
                first + k
            }
        };
        let series = self
            .series
            .iter()
            .position(|s| (bad_label as u32) < s.labels.1)
            .unwrap_or(self.series.len());
        let within = bad_label
            - self
                .series
                .get(series)
                .map_or(self.open_labels, |s| s.labels.0 as usize);
        self.clear();
        Err((series, within))
    }

    /// Adds a sample to the series being built.
    pub fn push_sample(&mut self, timestamp: i64, value: f64) {
        self.timestamps.push(timestamp);
        self.values.push(value);
    }

    /// Closes the series being built (it may be empty; validation refuses that later).
    pub fn finish_series(&mut self) -> Result<(), BatchOverflow> {
        let span = SeriesSpan {
            labels: (to_u32(self.open_labels)?, to_u32(self.labels.len())?),
            samples: (to_u32(self.open_samples)?, to_u32(self.timestamps.len())?),
        };
        self.series.push(span);
        self.open_labels = self.labels.len();
        self.open_samples = self.timestamps.len();
        self.open_text = self.text.len();
        Ok(())
    }

    /// Drops a series being built (labels and samples pushed since the last finish).
    pub fn abandon_series(&mut self) {
        self.labels.truncate(self.open_labels);
        self.timestamps.truncate(self.open_samples);
        self.values.truncate(self.open_samples);
        self.text.truncate(self.open_text);
    }

    /// Convenience: adds a whole series.
    pub fn add_series<'a>(
        &mut self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) -> Result<(), BatchOverflow> {
        for (name, value) in labels {
            self.push_label(name, value)?;
        }
        for (ts, v) in samples {
            self.push_sample(ts, v);
        }
        self.finish_series()
    }

    /// The `i`th series. Panics if `i >= series_count()`, like slice indexing.
    pub fn series(&self, i: usize) -> SeriesRef<'_> {
        SeriesRef {
            batch: self,
            span: self.series[i],
        }
    }

    /// All series in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SeriesRef<'_>> + '_ {
        self.series.iter().map(move |&span| SeriesRef { batch: self, span })
    }

    /// All timestamps of the batch, series after series (for bulk consumers).
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps[..self.sample_count()]
    }

    /// All values of the batch, parallel to [`MetricBatch::timestamps`].
    pub fn values(&self) -> &[f64] {
        &self.values[..self.sample_count()]
    }

    // Normalisation helpers used by validation. They reorder or drop label spans of one series
    // without touching the text buffer.

    pub(crate) fn label_range(&self, i: usize) -> Range<usize> {
        let s = self.series[i];
        s.labels.0 as usize..s.labels.1 as usize
    }

    pub(crate) fn sample_range(&self, i: usize) -> Range<usize> {
        let s = self.series[i];
        s.samples.0 as usize..s.samples.1 as usize
    }

    pub(crate) fn label_at(&self, j: usize) -> (&str, &str) {
        let l = self.labels[j];
        let start = l.start as usize;
        let mid = start + l.name_len as usize;
        (&self.text[start..mid], &self.text[mid..mid + l.value_len as usize])
    }

    /// True when the labels of series `i` need no normalisation and pass the limits: 1 to
    /// `max_labels` labels, names strictly increasing (sorted, no duplicates) and valid, values
    /// non-empty, lengths within bounds. This is the fast path of validation.
    pub(crate) fn labels_clean(&self, i: usize, max_labels: usize, max_name: usize, max_value: usize) -> bool {
        let s = self.series[i];
        let labels = &self.labels[s.labels.0 as usize..s.labels.1 as usize];
        if labels.is_empty() || labels.len() > max_labels {
            return false;
        }
        let text = self.text.as_bytes();
        let mut prev: &[u8] = &[];
        for (k, l) in labels.iter().enumerate() {
            let start = l.start as usize;
            let Some(name) = text.get(start..start + l.name_len as usize) else {
                return false;
            };
            if l.value_len == 0
                || l.value_len as usize > max_value
                || name.len() > max_name
                || !crate::limits::is_valid_label_name_bytes(name)
                || (k > 0 && !strictly_after(name, prev))
            {
                return false;
            }
            prev = name;
        }
        true
    }

    /// Sorts the labels of series `i` by name and drops labels with an empty value.
    pub(crate) fn normalize_labels(&mut self, i: usize) {
        let range = self.label_range(i);
        let text = &self.text;
        let name = |l: &LabelSpan| &text[l.start as usize..(l.start + l.name_len) as usize];
        let slice = &mut self.labels[range.clone()];
        if !slice.windows(2).all(|w| name(&w[0]) <= name(&w[1])) {
            slice.sort_by(|a, b| name(a).cmp(name(b)));
        }
        if slice.iter().any(|l| l.value_len == 0) {
            // Move the non-empty labels to the front of the range, keeping their order; the
            // tail becomes unreferenced spans that cost a few bytes until the batch is cleared.
            let mut kept = range.start;
            for j in range.clone() {
                if self.labels[j].value_len != 0 {
                    self.labels.swap(kept, j);
                    kept += 1;
                }
            }
            // `kept` fits in u32 because the original end did.
            self.series[i].labels.1 = kept as u32;
        }
    }

    /// Drops series that have no samples (their spans only; the data stays until `clear`).
    pub(crate) fn drop_empty_series(&mut self) {
        self.series.retain(|s| s.samples.0 != s.samples.1);
    }

    /// Appends `extra` labels to every series, replacing labels of the same name. Used for
    /// `extra_label=` query parameters; rebuilds the batch, which is fine for that rare path.
    pub fn apply_extra_labels(&mut self, extra: &[(String, String)]) -> Result<(), BatchOverflow> {
        if extra.is_empty() {
            return Ok(());
        }
        let old = std::mem::take(self);
        for s in old.iter() {
            for (name, value) in s.labels() {
                if !extra.iter().any(|(n, _)| n == name) {
                    self.push_label(name, value)?;
                }
            }
            for (name, value) in extra {
                self.push_label(name, value)?;
            }
            for (&ts, &v) in s.timestamps().iter().zip(s.values()) {
                self.push_sample(ts, v);
            }
            self.finish_series()?;
        }
        Ok(())
    }
}

/// `a > b` in byte order. Label names are short and usually differ in the first byte, where a
/// `memcmp` call costs more than the comparison.
#[inline]
fn strictly_after(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x > y;
        }
    }
    a.len() > b.len()
}

/// Label bytes being collected by a decoder; see [`MetricBatch::begin_raw`].
pub(crate) struct RawText {
    bytes: Vec<u8>,
    first_label: usize,
}

/// A borrowed view of one series of a [`MetricBatch`].
#[derive(Clone, Copy)]
pub struct SeriesRef<'a> {
    batch: &'a MetricBatch,
    span: SeriesSpan,
}

impl<'a> SeriesRef<'a> {
    /// The labels as (name, value) pairs, in batch order (sorted by name after validation).
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        (self.span.labels.0 as usize..self.span.labels.1 as usize).map(move |j| batch.label_at(j))
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name (`__name__`), or "" when absent.
    pub fn metric_name(&self) -> &'a str {
        self.label("__name__").unwrap_or("")
    }

    /// Timestamps in milliseconds, non-decreasing after validation.
    pub fn timestamps(&self) -> &'a [i64] {
        &self.batch.timestamps[self.span.samples.0 as usize..self.span.samples.1 as usize]
    }

    /// Values, parallel to [`SeriesRef::timestamps`]; NaN bit patterns are exactly as received.
    pub fn values(&self) -> &'a [f64] {
        &self.batch.values[self.span.samples.0 as usize..self.span.samples.1 as usize]
    }
}

impl std::fmt::Debug for SeriesRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("timestamps", &self.timestamps())
            .field("values", &self.values())
            .finish()
    }
}

/// Renders a label set as `{a="b", c="d"}` for error messages, cut short when long so that a
/// message never echoes a megabyte label back.
pub(crate) fn describe_labels<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    const MAX: usize = 200;
    let mut out = String::from("{");
    for (k, (name, value)) in labels.enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        out.push_str(&truncate(name, 64));
        out.push_str("=\"");
        out.push_str(&truncate(value, 64));
        out.push('"');
        if out.len() > MAX {
            out.push_str(", …");
            break;
        }
    }
    out.push('}');
    out
}

/// `s` cut to at most `max` bytes on a char boundary, with "…" when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back_series() {
        let mut b = MetricBatch::new();
        b.add_series([("__name__", "up"), ("job", "a")], [(1, 1.0), (2, 0.0)])
            .unwrap();
        b.add_series([("__name__", "x")], [(5, f64::from_bits(0x7ff0_0000_0000_0002))])
            .unwrap();
        assert_eq!(b.series_count(), 2);
        assert_eq!(b.sample_count(), 3);
        let s = b.series(0);
        assert_eq!(s.labels().collect::<Vec<_>>(), vec![("__name__", "up"), ("job", "a")]);
        assert_eq!(s.timestamps(), &[1, 2]);
        assert_eq!(b.series(1).metric_name(), "x");
        assert_eq!(b.series(1).values()[0].to_bits(), 0x7ff0_0000_0000_0002);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.sample_count(), 0);
    }

    #[test]
    fn normalize_sorts_and_drops_empty_values() {
        let mut b = MetricBatch::new();
        b.add_series([("z", "1"), ("a", ""), ("__name__", "m"), ("b", "2")], [(1, 1.0)])
            .unwrap();
        b.normalize_labels(0);
        assert_eq!(
            b.series(0).labels().collect::<Vec<_>>(),
            vec![("__name__", "m"), ("b", "2"), ("z", "1")]
        );
    }

    #[test]
    fn raw_text_is_validated_once_and_per_label() {
        let mut b = MetricBatch::new();
        b.add_series([("a", "1")], [(1, 1.0)]).unwrap();
        let mut raw = b.begin_raw();
        b.push_label_raw(&mut raw, b"n", "é".as_bytes()).unwrap();
        b.push_sample(2, 2.0);
        b.finish_series().unwrap();
        b.finish_raw(raw).unwrap();
        assert_eq!(b.series(1).labels().collect::<Vec<_>>(), vec![("n", "é")]);

        // Split "é" across name and value: the whole text is valid UTF-8, each half is not.
        let mut b = MetricBatch::new();
        let mut raw = b.begin_raw();
        b.push_label_raw(&mut raw, b"ok", b"fine").unwrap();
        b.finish_series().unwrap();
        b.push_label_raw(&mut raw, b"x", b"y").unwrap();
        b.push_label_raw(&mut raw, &"é".as_bytes()[..1], &"é".as_bytes()[1..])
            .unwrap();
        assert_eq!(b.finish_raw(raw), Err((1, 1)));
        assert!(b.is_empty());

        let mut b = MetricBatch::new();
        let mut raw = b.begin_raw();
        b.push_label_raw(&mut raw, b"a", b"\xff").unwrap();
        assert_eq!(b.finish_raw(raw), Err((0, 0)));
    }

    #[test]
    fn strictly_after_is_byte_order() {
        for (a, b) in [
            ("b", "a"),
            ("ab", "a"),
            ("job", "instance"),
            ("a", "a"),
            ("a", "ab"),
            ("", ""),
            ("Z", "_"),
        ] {
            assert_eq!(strictly_after(a.as_bytes(), b.as_bytes()), a > b, "{a} vs {b}");
        }
    }

    #[test]
    fn abandon_drops_partial_series() {
        let mut b = MetricBatch::new();
        b.add_series([("a", "1")], [(1, 1.0)]).unwrap();
        b.push_label("b", "2").unwrap();
        b.push_sample(3, 3.0);
        b.abandon_series();
        b.add_series([("c", "3")], [(4, 4.0)]).unwrap();
        assert_eq!(b.series_count(), 2);
        assert_eq!(b.series(1).labels().collect::<Vec<_>>(), vec![("c", "3")]);
        assert_eq!(b.series(1).timestamps(), &[4]);
        assert_eq!(b.text_bytes(), 4);
    }

    #[test]
    fn extra_labels_replace_and_append() {
        let mut b = MetricBatch::new();
        b.add_series([("__name__", "m"), ("env", "dev")], [(1, 1.0)]).unwrap();
        b.apply_extra_labels(&[("env".into(), "prod".into()), ("dc".into(), "x".into())])
            .unwrap();
        assert_eq!(
            b.series(0).labels().collect::<Vec<_>>(),
            vec![("__name__", "m"), ("env", "prod"), ("dc", "x")]
        );
        assert_eq!(b.series(0).values(), &[1.0]);
    }

    #[test]
    fn describe_labels_is_bounded() {
        let big = "v".repeat(100_000);
        let d = describe_labels([("a", big.as_str()), ("b", "c")].into_iter());
        assert!(d.len() < 300, "{}", d.len());
    }
}
