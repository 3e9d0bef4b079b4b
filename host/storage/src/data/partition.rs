//! Monthly partitions (FORMATS.md §1.7): `small/YYYY_MM/` and `big/YYYY_MM/`, the part lists
//! and `parts.json`, the source of truth for which on-disk parts exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::part::Part;
use crate::error::{Result, StorageError};

/// The manifest of one partition.
pub const PARTS_JSON: &str = "parts.json";

/// Where a part lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// Searchable, not yet on disk.
    InMemory,
    /// `small/YYYY_MM/`.
    Small,
    /// `big/YYYY_MM/`.
    Big,
}

impl PartKind {
    /// The label used in stats and metrics.
    pub fn label(self) -> &'static str {
        match self {
            PartKind::InMemory => "inmemory",
            PartKind::Small => "small",
            PartKind::Big => "big",
        }
    }
}

/// A part plus what the table needs to manage it.
#[derive(Debug)]
pub struct PartEntry {
    /// The part.
    pub part: Arc<Part>,
    /// Its tier.
    pub kind: PartKind,
    /// Directory name (`%016X`); empty for in-memory parts.
    pub name: String,
    /// Set while a merge or flush owns it as input.
    pub in_merge: AtomicBool,
    /// When it was created (in-memory flush deadline).
    pub created: Instant,
    /// Set when a merge found it corrupt: merges leave it alone from then on.
    pub broken: AtomicBool,
    /// Set when it was replaced or expired: its directory goes when the last user lets go.
    pub must_drop: AtomicBool,
}

impl PartEntry {
    /// Wraps a part.
    pub fn new(part: Part, kind: PartKind, name: String) -> Arc<PartEntry> {
        Arc::new(PartEntry {
            part: Arc::new(part),
            kind,
            name,
            in_merge: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            created: Instant::now(),
            must_drop: AtomicBool::new(false),
        })
    }
}

impl Drop for PartEntry {
    fn drop(&mut self) {
        if self.kind != PartKind::InMemory && self.must_drop.load(Ordering::Acquire) {
            let dir = self.part.path();
            match strata_fsutil::remove_dir_all_durable(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %dir.display(), error = %e, "cannot remove dropped part"),
            }
        }
    }
}

/// The part lists of a partition.
#[derive(Debug, Default)]
pub struct PartLists {
    /// In-memory parts.
    pub inmemory: Vec<Arc<PartEntry>>,
    /// Small file parts.
    pub small: Vec<Arc<PartEntry>>,
    /// Big file parts.
    pub big: Vec<Arc<PartEntry>>,
}

impl PartLists {
    /// The list of one tier.
    pub fn tier(&mut self, kind: PartKind) -> &mut Vec<Arc<PartEntry>> {
        match kind {
            PartKind::InMemory => &mut self.inmemory,
            PartKind::Small => &mut self.small,
            PartKind::Big => &mut self.big,
        }
    }

    /// Every part.
    pub fn all(&self) -> impl Iterator<Item = &Arc<PartEntry>> {
        self.inmemory.iter().chain(&self.small).chain(&self.big)
    }
}

/// `parts.json`: `{"Small":[...],"Big":[...]}`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PartNames {
    /// Part directory names under `small/YYYY_MM/`.
    #[serde(default)]
    pub small: Vec<String>,
    /// Part directory names under `big/YYYY_MM/`.
    #[serde(default)]
    pub big: Vec<String>,
}

/// One calendar month of data.
#[derive(Debug)]
pub struct Partition {
    /// `YYYY_MM`.
    pub name: String,
    /// `small/YYYY_MM`.
    pub small_dir: PathBuf,
    /// `big/YYYY_MM`.
    pub big_dir: PathBuf,
    /// First millisecond of the month.
    pub min_ts: i64,
    /// Last millisecond of the month.
    pub max_ts: i64,
    /// The parts; also serialises parts.json rewrites.
    pub parts: Mutex<PartLists>,
    /// Set when retention dropped the partition: its directories go with the last user.
    pub dropped: AtomicBool,
}

impl Partition {
    /// A partition object for `name` under `root` (`<data>/data`); no I/O.
    pub fn new(root: &Path, name: &str) -> Option<Partition> {
        let (min_ts, max_ts) = month_range(name)?;
        Some(Partition {
            name: name.to_string(),
            small_dir: root.join("small").join(name),
            big_dir: root.join("big").join(name),
            min_ts,
            max_ts,
            parts: Mutex::new(PartLists::default()),
            dropped: AtomicBool::new(false),
        })
    }

    /// Creates both directories and an empty parts.json if missing.
    pub fn create_dirs(&self) -> Result<()> {
        for d in [&self.small_dir, &self.big_dir] {
            strata_fsutil::create_dir_all_durable(d).map_err(|e| StorageError::io("cannot create", d, e))?;
        }
        let pj = self.small_dir.join(PARTS_JSON);
        if !pj.exists() {
            write_parts_json(&pj, &PartNames::default())?;
        }
        Ok(())
    }

    /// Rewrites parts.json from `lists` (call with the parts lock held).
    pub fn write_manifest(&self, lists: &PartLists) -> Result<()> {
        let names = PartNames {
            small: lists.small.iter().map(|p| p.name.clone()).collect(),
            big: lists.big.iter().map(|p| p.name.clone()).collect(),
        };
        write_parts_json(&self.small_dir.join(PARTS_JSON), &names)
    }

    /// The directory of a file part of `kind`.
    pub fn dir_of(&self, kind: PartKind) -> &Path {
        if kind == PartKind::Big {
            &self.big_dir
        } else {
            &self.small_dir
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if self.dropped.load(Ordering::Acquire) {
            for d in [&self.small_dir, &self.big_dir] {
                match strata_fsutil::remove_dir_all_durable(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(path = %d.display(), error = %e, "cannot remove dropped partition"),
                }
            }
        }
    }
}

/// Atomically replaces a parts.json.
pub fn write_parts_json(path: &Path, names: &PartNames) -> Result<()> {
    let json = serde_json::to_vec_pretty(names).unwrap_or_default();
    strata_fsutil::atomic_write(path, &json).map_err(|e| StorageError::io("cannot write", path, e))
}

/// Reads a parts.json; `Ok(None)` if it does not exist.
pub fn read_parts_json(path: &Path) -> Result<Option<PartNames>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StorageError::corrupt(path, format!("parts.json: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("cannot read", path, e)),
    }
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 → (year, month 1..=12, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days end a 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month 1..=12, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The partition name (`YYYY_MM`, UTC) of a timestamp in ms.
pub fn partition_name(ts_ms: i64) -> String {
    let (y, m, _) = civil_from_days(ts_ms.div_euclid(DAY_MS));
    format!("{y:04}_{m:02}")
}

/// `[first ms, last ms]` of the month named `YYYY_MM`; `None` if the name is not one.
pub fn month_range(name: &str) -> Option<(i64, i64)> {
    let (y, m) = name.split_once('_')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if !(1..=12).contains(&m) {
        return None;
    }
    let start = days_from_civil(y, m, 1) * DAY_MS;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some((start, days_from_civil(ny, nm, 1) * DAY_MS - 1))
}

/// The merge-selection heuristic (FORMATS.md §1.8): among parts sorted by size, the contiguous
/// window of 2..=15 parts of similar size with the best `total / largest` ratio, if that ratio
/// reaches 7.5 (or, when `force` is set, the whole candidate set). Returns indexes into `sizes`.
pub fn select_parts_to_merge(sizes: &[u64], max_out_bytes: u64, force: bool) -> Vec<usize> {
    const MAX_PARTS: usize = 15;
    const MIN_MULTIPLIER: f64 = 1.7;
    let limit = (max_out_bytes as f64 / MIN_MULTIPLIER) as u64;
    let mut idx: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] <= limit || force).collect();
    idx.sort_by_key(|&i| sizes[i]);
    if force {
        return if idx.len() >= 2 { idx } else { Vec::new() };
    }
    let n = idx.len();
    let k = n.min(MAX_PARTS);
    if k < 2 {
        return Vec::new();
    }
    let min_len = k.div_ceil(2).max(2);
    let mut best: Option<(f64, usize, usize)> = None;
    for len in (min_len..=k).rev() {
        for start in 0..=n - len {
            let w = &idx[start..start + len];
            let smallest = sizes[w[0]].max(1);
            let largest = sizes[w[len - 1]].max(1);
            if smallest.saturating_mul(len as u64) < largest {
                continue;
            }
            let total: u64 = w.iter().map(|&i| sizes[i]).sum();
            if total > max_out_bytes {
                break;
            }
            let score = total as f64 / largest as f64;
            if best.is_none_or(|b| score > b.0) {
                best = Some((score, start, len));
            }
        }
    }
    match best {
        Some((score, start, len)) if score >= (MAX_PARTS as f64 / 2.0).max(MIN_MULTIPLIER) => {
            idx[start..start + len].to_vec()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(partition_name(0), "1970_01");
        assert_eq!(partition_name(1_700_000_000_000), "2023_11");
        let (a, b) = month_range("2024_02").unwrap();
        assert_eq!(partition_name(a), "2024_02");
        assert_eq!(partition_name(b), "2024_02");
        assert_eq!(partition_name(b + 1), "2024_03");
        assert_eq!(partition_name(a - 1), "2024_01");
        assert_eq!((b + 1 - a) / DAY_MS, 29);
        let (a, b) = month_range("2023_12").unwrap();
        assert_eq!(partition_name(b + 1), "2024_01");
        assert_eq!(partition_name(a), "2023_12");
        assert!(month_range("2023_13").is_none());
        assert!(month_range("snapshots").is_none());
        for d in (-1000..100_000).step_by(17) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn selection_prefers_similar_sizes() {
        // 15 equal parts: merge them all.
        let sizes = vec![100u64; 15];
        assert_eq!(select_parts_to_merge(&sizes, u64::MAX, false).len(), 15);
        // 3 parts: score 3 < 7.5, nothing to do.
        assert!(select_parts_to_merge(&[100, 100, 100], u64::MAX, false).is_empty());
        // A huge part is left alone while the small ones merge.
        let mut sizes = vec![10u64; 10];
        sizes.push(1_000_000);
        let sel = select_parts_to_merge(&sizes, u64::MAX, false);
        assert_eq!(sel.len(), 10);
        assert!(!sel.contains(&10));
        // Output limit respected.
        assert!(select_parts_to_merge(&[100; 15], 500, false).is_empty());
        // Force merges everything.
        assert_eq!(select_parts_to_merge(&[1, 1000], 0, true).len(), 2);
        assert!(select_parts_to_merge(&[1], 0, true).is_empty());
    }
}
