//! The compact record format (version 2) and what reads any segment, v1 or v2.
//!
//! A v2 segment starts with an 8-byte header, `b"SWAL" | u32 LE version (2)`, then records
//! framed as `u32 LE payload length | u64 LE xxh64(payload) | payload`. A v1 segment has no
//! header (its first bytes are a record length, always below the header's value read as one).
//!
//! One record is one write (a remote-write request, or one series of `add_series`):
//! ```text
//! u8 kind (1) | u32 LE account | u32 LE project
//! u32 LE definition count | {varint ref, varint label count, {varint len, name, varint len, value}*}*
//! varint series count | {varint ref, varint n, n × zigzag varint Δtimestamp, n × f64 LE}*
//! ```
//! A *definition* gives a series (of the record's tenant) a small `ref` (1, 2, ...) in the
//! segment, the first time the segment sees it; every later sample of that series in the
//! segment carries only the ref. Timestamps are deltas from the previous timestamp in the
//! record (the first from 0), so samples of one scrape cost one byte of time each.
//!
//! A definition is written in the same record as the series' first samples, and the writer
//! encodes records in log order under one lock, so a record never precedes the definitions it
//! uses: whatever prefix of the log survives a crash is self-consistent. Refs restart with each
//! rotation (a segment created by [`super::Wal::rotate`] only uses refs it defines), and the
//! reader carries definitions from one segment to the next, which covers a segment started
//! after a write could not be cut off (its records may use refs of the segment before).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use super::v1;
use crate::Tenant;
use crate::error::{Result, StorageError};
use crate::index::Label;

/// First bytes of a v2 segment.
pub const MAGIC: [u8; 4] = *b"SWAL";
/// The format version this build writes.
pub const VERSION: u32 = 2;
/// Size of a segment header (magic and version).
pub const SEGMENT_HEADER: usize = 8;
/// Record frame header: length and checksum (v1 and v2).
pub(crate) const RECORD_HEADER: usize = 12;
/// Largest v2 payload accepted when reading.
const MAX_RECORD: usize = 1 << 30;
/// The one record kind so far: a write.
const KIND_WRITE: u8 = 1;

/// The header every new segment starts with.
pub fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Where a reader sends each series' samples: tenant, labels, timestamps, values.
pub type SegmentVisitor<'a> = dyn FnMut(Tenant, &[Label<'_>], &[i64], &[f64]) -> Result<()> + 'a;

/// Hashes the u64 keys of the series maps with one multiply (they are ids, not attacker-chosen
/// strings, and this runs once per series per write under the log's lock).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let h = (v ^ self.0.rotate_left(5)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The samples of one write, series by series, each under its key: a number that identifies
/// the series, tenant included, for as long as the process runs (the storage uses the TSID's
/// `metric_id`, unique across tenants).
#[derive(Debug, Default)]
pub struct Batch {
    keys: Vec<u64>,
    ends: Vec<usize>,
    timestamps: Vec<i64>,
    values: Vec<f64>,
}

impl Batch {
    /// Adds one series' samples (the shorter of the two slices decides how many).
    pub fn push(&mut self, key: u64, timestamps: &[i64], values: &[f64]) {
        let n = timestamps.len().min(values.len());
        self.keys.push(key);
        self.timestamps.extend_from_slice(&timestamps[..n]);
        self.values.extend_from_slice(&values[..n]);
        self.ends.push(self.timestamps.len());
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No series.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of series `i`.
    pub fn key(&self, i: usize) -> u64 {
        self.keys[i]
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.timestamps.len()
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }
}

/// Labels of series the active segment has not defined yet, by key: what
/// [`super::Wal::append_batch`] asks for when it answers [`super::Append::Undefined`].
#[derive(Debug, Default)]
pub struct Definitions {
    spans: IdMap<(usize, usize)>,
    bytes: Vec<u8>,
}

impl Definitions {
    /// Records the labels of series `key` (a second call for the same key is ignored).
    pub fn add(&mut self, key: u64, labels: &[Label<'_>]) {
        if self.spans.contains_key(&key) {
            return;
        }
        let start = self.bytes.len();
        put_varint(&mut self.bytes, labels.len() as u64);
        for l in labels {
            put_varint(&mut self.bytes, l.name.len() as u64);
            self.bytes.extend_from_slice(l.name.as_bytes());
            put_varint(&mut self.bytes, l.value.len() as u64);
            self.bytes.extend_from_slice(l.value.as_bytes());
        }
        self.spans.insert(key, (start, self.bytes.len()));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn get(&self, key: u64) -> Option<&[u8]> {
        self.spans.get(&key).map(|&(a, b)| &self.bytes[a..b])
    }
}

/// The refs of the active segment: key → ref, and the next ref to hand out.
#[derive(Debug)]
pub(crate) struct SeriesRefs {
    map: IdMap<u64>,
    next: u64,
    /// Per-series refs of the record being encoded (reused).
    scratch: Vec<u64>,
}

impl Default for SeriesRefs {
    fn default() -> Self {
        SeriesRefs {
            map: IdMap::default(),
            next: 1,
            scratch: Vec::new(),
        }
    }
}

impl SeriesRefs {
    /// A new segment: nothing is defined in it.
    pub(crate) fn reset(&mut self) {
        self.map.clear();
        self.next = 1;
    }

    /// Series defined in the active segment.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Appends one framed write record for `batch` to `dst`, defining (from `defs`) the series the
/// segment does not know yet. If a series is neither known nor in `defs`, nothing is written
/// and the indexes of all such series are returned.
pub(crate) fn encode_write(
    dst: &mut Vec<u8>,
    refs: &mut SeriesRefs,
    tenant: Tenant,
    batch: &Batch,
    defs: &Definitions,
) -> std::result::Result<(), Vec<usize>> {
    let mut scratch = std::mem::take(&mut refs.scratch);
    scratch.clear();
    let mut missing = Vec::new();
    let mut undefined = 0usize;
    for (i, key) in batch.keys.iter().enumerate() {
        match refs.map.get(key) {
            Some(&r) => scratch.push(r),
            None => {
                undefined += 1;
                if defs.get(*key).is_none() {
                    missing.push(i);
                }
                scratch.push(0);
            }
        }
    }
    if !missing.is_empty() {
        refs.scratch = scratch;
        return Err(missing);
    }
    let start = dst.len();
    dst.reserve(RECORD_HEADER + 16 + batch.len() * 4 + batch.samples() * 11);
    dst.extend_from_slice(&[0; RECORD_HEADER]);
    dst.push(KIND_WRITE);
    dst.extend_from_slice(&tenant.account_id.to_le_bytes());
    dst.extend_from_slice(&tenant.project_id.to_le_bytes());
    let count_at = dst.len();
    dst.extend_from_slice(&[0; 4]);
    let mut defined = 0u32;
    if undefined > 0 {
        for (i, key) in batch.keys.iter().enumerate() {
            if scratch[i] != 0 {
                continue;
            }
            // A series twice in one write is defined once.
            let r = match refs.map.get(key) {
                Some(&r) => r,
                None => {
                    let r = refs.next;
                    refs.next += 1;
                    refs.map.insert(*key, r);
                    put_varint(dst, r);
                    dst.extend_from_slice(defs.get(*key).unwrap_or(&[0]));
                    defined += 1;
                    r
                }
            };
            scratch[i] = r;
        }
    }
    dst[count_at..count_at + 4].copy_from_slice(&defined.to_le_bytes());
    put_varint(dst, batch.len() as u64);
    let mut prev = 0i64;
    for (i, &r) in scratch.iter().enumerate() {
        let range = batch.range(i);
        put_varint(dst, r);
        put_varint(dst, range.len() as u64);
        for &t in &batch.timestamps[range.clone()] {
            put_varint(dst, zigzag(t.wrapping_sub(prev)));
            prev = t;
        }
        for v in &batch.values[range] {
            dst.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    refs.scratch = scratch;
    seal_record(dst, start);
    Ok(())
}

/// Fills in the header of the record that starts at `start` (its placeholder of
/// [`RECORD_HEADER`] zero bytes) from the payload after it: length and checksum. Both
/// format versions frame records this way.
pub(crate) fn seal_record(dst: &mut [u8], start: usize) {
    let payload_len = dst.len() - start - RECORD_HEADER;
    let sum = xxhash_rust::xxh64::xxh64(&dst[start + RECORD_HEADER..], 0);
    dst[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    dst[start + 4..start + RECORD_HEADER].copy_from_slice(&sum.to_le_bytes());
}

/// Definitions seen while reading segments in order: ref → (tenant, labels). Carried from one
/// segment to the next (see the module docs).
#[derive(Debug, Default)]
pub struct ReplayState {
    series: IdMap<(Tenant, Vec<(String, String)>)>,
    /// Samples whose series had no definition (a damaged log); skipped.
    pub undefined_samples: u64,
}

/// Reads one segment's bytes (any version) and visits each series' samples in log order.
/// Returns whether a torn or corrupt record ended it early (a crash mid-write: what follows
/// was never acknowledged). A segment of an unknown version is an error rather than silently
/// skipped; errors of `visit` are passed on.
pub fn visit_segment(
    path: &Path,
    bytes: &[u8],
    state: &mut ReplayState,
    visit: &mut SegmentVisitor<'_>,
) -> Result<bool> {
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        // Created, header not (fully) written: no records.
        return Ok(!bytes.is_empty());
    }
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return v1::visit(bytes, visit);
    }
    if bytes.len() < SEGMENT_HEADER {
        return Ok(true);
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("WAL segment version {version}; this build reads 1 and {VERSION}"),
        });
    }
    let mut rest = &bytes[SEGMENT_HEADER..];
    let mut ts = Vec::new();
    let mut vals = Vec::new();
    while !rest.is_empty() {
        let Some((payload, tail)) = frame(rest, MAX_RECORD) else {
            return Ok(true);
        };
        if !decode_write(payload, state, &mut ts, &mut vals, visit)? {
            return Ok(true);
        }
        rest = tail;
    }
    Ok(false)
}

/// One framed record (either version): its checked payload and what follows; `None` for a
/// torn or corrupt record, or a payload over `max_record`.
pub(crate) fn frame(src: &[u8], max_record: usize) -> Option<(&[u8], &[u8])> {
    if src.len() < RECORD_HEADER {
        return None;
    }
    let len = u32::from_le_bytes(src[..4].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(src[4..12].try_into().ok()?);
    if len > max_record || src.len() - RECORD_HEADER < len {
        return None;
    }
    let payload = &src[RECORD_HEADER..RECORD_HEADER + len];
    if xxhash_rust::xxh64::xxh64(payload, 0) != sum {
        return None;
    }
    Some((payload, &src[RECORD_HEADER + len..]))
}

/// Decodes one write record, visiting its series; `Ok(false)` if it is malformed (the
/// checksum matched, so only a bug or a foreign file gets here).
fn decode_write(
    p: &[u8],
    state: &mut ReplayState,
    ts: &mut Vec<i64>,
    vals: &mut Vec<f64>,
    visit: &mut SegmentVisitor<'_>,
) -> Result<bool> {
    let mut r = Reader::new(p);
    let header = (|| {
        if r.u8()? != KIND_WRITE {
            return None;
        }
        let tenant = Tenant {
            account_id: r.u32_le()?,
            project_id: r.u32_le()?,
        };
        let ndefs = r.u32_le()?;
        for _ in 0..ndefs {
            let sref = r.varint()?;
            let nl = r.varint()?;
            let mut labels = Vec::with_capacity(nl.min(64) as usize);
            for _ in 0..nl {
                labels.push((r.str()?.to_string(), r.str()?.to_string()));
            }
            state.series.insert(sref, (tenant, labels));
        }
        Some((tenant, r.varint()?))
    })();
    let Some((_, nseries)) = header else {
        return Ok(false);
    };
    let mut prev = 0i64;
    for _ in 0..nseries {
        let Some((sref, n)) = r.varint().zip(r.varint()) else {
            return Ok(false);
        };
        let Ok(n) = usize::try_from(n) else {
            return Ok(false);
        };
        if n > r.remaining() {
            return Ok(false);
        }
        ts.clear();
        vals.clear();
        for _ in 0..n {
            let Some(d) = r.varint() else {
                return Ok(false);
            };
            prev = prev.wrapping_add(unzigzag(d));
            ts.push(prev);
        }
        for _ in 0..n {
            let Some(bits) = r.u64_le() else {
                return Ok(false);
            };
            vals.push(f64::from_bits(bits));
        }
        // A series belongs to the tenant it was defined for.
        match state.series.get(&sref) {
            Some((t, labels)) => {
                let labels: Vec<Label<'_>> = labels.iter().map(|(n, v)| Label { name: n, value: v }).collect();
                visit(*t, &labels, ts, vals)?;
            }
            None => state.undefined_samples += n as u64,
        }
    }
    Ok(r.remaining() == 0)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// A cursor over a record payload; every read is bounds-checked (`None` past the end).
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(p: &'a [u8]) -> Self {
        Reader(p)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}
