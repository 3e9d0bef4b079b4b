//! Per-series sample hygiene (sorting, exact-duplicate removal, deduplication per FORMATS.md
//! §1.10) and the k-way merge of parts that applies it together with retention trimming and
//! deleted-series removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RawRow;
use super::part::{Part, PartCursor, PartWriter};
use crate::deleted::DeletedMetricIds;
use crate::encoding::decimal::is_stale_nan;
use crate::error::{Result, StorageError};
use crate::tsid::Tsid;

/// What a merge did to the samples it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Samples read.
    pub rows_in: u64,
    /// Samples written.
    pub rows_out: u64,
    /// Exact duplicates (same timestamp, same value bits) removed.
    pub duplicates_removed: u64,
    /// Samples removed by deduplication.
    pub dedup_removed: u64,
    /// Samples older than the retention deadline removed.
    pub retention_removed: u64,
    /// Samples of deleted series removed.
    pub deleted_removed: u64,
}

/// Sorts one series' samples by timestamp (then value), removes exact duplicates, then applies
/// deduplication when `dedup_interval > 0`. Returns (duplicates removed, dedup removed).
pub fn normalize_series(ts: &mut Vec<i64>, values: &mut Vec<f64>, dedup_interval: i64) -> (u64, u64) {
    let before = ts.len();
    let strictly_sorted = ts.windows(2).all(|w| w[0] < w[1]);
    if !strictly_sorted {
        let mut pairs: Vec<(i64, f64)> = ts.iter().copied().zip(values.iter().copied()).collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        pairs.dedup_by(|b, a| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
        ts.clear();
        values.clear();
        for (t, v) in pairs {
            ts.push(t);
            values.push(v);
        }
    }
    let dups = (before - ts.len()) as u64;
    let deduped = if dedup_interval > 0 {
        deduplicate(ts, values, dedup_interval)
    } else {
        0
    };
    (dups, deduped)
}

/// Keeps one sample per window `(k*d - d, k*d]`: the one with the largest timestamp; among equal
/// timestamps the largest value, a number beating a stale marker. `ts` must be sorted. Returns
/// how many samples were removed.
pub fn deduplicate(ts: &mut Vec<i64>, values: &mut Vec<f64>, interval: i64) -> u64 {
    if interval <= 0 || ts.len() < 2 {
        return 0;
    }
    let window = |t: i64| -> i64 {
        // ceil(t / d) with floor semantics for negative t.
        t.div_euclid(interval) + i64::from(t.rem_euclid(interval) != 0)
    };
    let n = ts.len();
    let mut w = 0;
    let mut i = 0;
    while i < n {
        let k = window(ts[i]);
        let mut j = i;
        while j + 1 < n && window(ts[j + 1]) == k {
            j += 1;
        }
        // Samples i..=j share a window; pick among those with the last timestamp.
        let last_ts = ts[j];
        let mut best = values[j];
        let mut m = j;
        while m > i && ts[m - 1] == last_ts {
            m -= 1;
            best = better(best, values[m]);
        }
        ts[w] = last_ts;
        values[w] = best;
        w += 1;
        i = j + 1;
    }
    ts.truncate(w);
    values.truncate(w);
    (n - w) as u64
}

fn better(a: f64, b: f64) -> f64 {
    match (is_stale_nan(a), is_stale_nan(b)) {
        (true, false) => b,
        (false, true) | (true, true) => a,
        (false, false) => {
            if b > a {
                b
            } else {
                a
            }
        }
    }
}

/// What a merge applies besides merging.
pub struct MergeRules<'a> {
    /// Dedup interval in ms (0 = off).
    pub dedup_interval: i64,
    /// Samples with smaller timestamps are dropped (retention); `i64::MIN` keeps everything.
    pub min_timestamp: i64,
    /// Series whose blocks are dropped.
    pub deleted: &'a dyn DeletedMetricIds,
    /// Set to abort the merge (shutdown).
    pub stop: Option<&'a AtomicBool>,
}

/// Merges `parts` into `w`, one series at a time in TSID order.
pub fn merge_parts(parts: &[Arc<Part>], w: &mut PartWriter, rules: &MergeRules<'_>) -> Result<MergeStats> {
    let mut cursors = Vec::with_capacity(parts.len());
    for p in parts {
        cursors.push(PartCursor::new(p.clone())?);
    }
    let mut st = MergeStats::default();
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    while let Some(tsid) = cursors.iter().filter_map(|c| c.peek().map(|h| h.tsid)).min() {
        if let Some(stop) = rules.stop
            && stop.load(Ordering::Relaxed)
        {
            return Err(StorageError::Unavailable("merge aborted: shutting down".into()));
        }
        ts.clear();
        vals.clear();
        let deleted = rules.deleted.contains(tsid.metric_id);
        for c in &mut cursors {
            while let Some(h) = c.peek().copied() {
                if h.tsid != tsid {
                    break;
                }
                st.rows_in += u64::from(h.rows_count);
                if deleted {
                    st.deleted_removed += u64::from(h.rows_count);
                } else if h.max_timestamp < rules.min_timestamp {
                    st.retention_removed += u64::from(h.rows_count);
                } else {
                    c.part().read_block(&h, &mut ts, &mut vals)?;
                }
                c.advance()?;
            }
        }
        write_series(w, &tsid, &mut ts, &mut vals, rules, &mut st)?;
    }
    Ok(st)
}

fn write_series(
    w: &mut PartWriter,
    tsid: &Tsid,
    ts: &mut Vec<i64>,
    vals: &mut Vec<f64>,
    rules: &MergeRules<'_>,
    st: &mut MergeStats,
) -> Result<()> {
    if ts.is_empty() {
        return Ok(());
    }
    let (dups, dedup) = normalize_series(ts, vals, rules.dedup_interval);
    st.duplicates_removed += dups;
    st.dedup_removed += dedup;
    let skip = ts.partition_point(|&t| t < rules.min_timestamp);
    st.retention_removed += skip as u64;
    st.rows_out += (ts.len() - skip) as u64;
    if skip < ts.len() {
        w.write_series(tsid, &ts[skip..], &vals[skip..])?;
    }
    Ok(())
}

/// Builds a part from raw rows (any order). Applies the same rules as a merge.
pub fn write_rows(rows: &mut [RawRow], w: &mut PartWriter, rules: &MergeRules<'_>) -> Result<MergeStats> {
    // Comparing two u128 pairs is much cheaper than the field-by-field Tsid order, and gives
    // the same result (each half packs fields in their Ord order).
    rows.sort_unstable_by_key(|r| (tsid_key(&r.tsid), r.timestamp));
    let mut st = MergeStats::default();
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < rows.len() {
        let tsid = rows[i].tsid;
        ts.clear();
        vals.clear();
        while i < rows.len() && rows[i].tsid == tsid {
            ts.push(rows[i].timestamp);
            vals.push(rows[i].value);
            i += 1;
        }
        st.rows_in += ts.len() as u64;
        if rules.deleted.contains(tsid.metric_id) {
            st.deleted_removed += ts.len() as u64;
            continue;
        }
        write_series(w, &tsid, &mut ts, &mut vals, rules, &mut st)?;
    }
    Ok(st)
}

fn tsid_key(t: &Tsid) -> (u128, u128) {
    let hi = (u128::from(t.tenant.account_id) << 96)
        | (u128::from(t.tenant.project_id) << 64)
        | u128::from(t.metric_group_id);
    let lo = (u128::from(t.job_id) << 96) | (u128::from(t.instance_id) << 64) | u128::from(t.metric_id);
    (hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::decimal::stale_nan;

    #[test]
    fn dedup_windows_are_left_open_right_closed() {
        // d = 10: windows (0,10], (10,20], (20,30].
        let mut ts = vec![1, 5, 10, 11, 20, 21, 25, 25];
        let mut vs = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let removed = deduplicate(&mut ts, &mut vs, 10);
        assert_eq!(ts, vec![10, 20, 25]);
        assert_eq!(vs, vec![3.0, 5.0, 8.0]);
        assert_eq!(removed, 5);
    }

    #[test]
    fn dedup_prefers_numbers_over_stale_and_larger_values() {
        let mut ts = vec![10, 10, 10];
        let mut vs = vec![stale_nan(), 2.0, 1.0];
        deduplicate(&mut ts, &mut vs, 10);
        assert_eq!(vs, vec![2.0]);
        let mut ts = vec![10, 10];
        let mut vs = vec![stale_nan(), stale_nan()];
        deduplicate(&mut ts, &mut vs, 10);
        assert!(is_stale_nan(vs[0]));
    }

    #[test]
    fn tsid_key_orders_like_tsid() {
        use crate::tsid::Tenant;
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 3
        };
        let ids: Vec<Tsid> = (0..500)
            .map(|_| Tsid {
                tenant: Tenant {
                    account_id: rnd() as u32,
                    project_id: rnd() as u32,
                },
                metric_group_id: [0, 1 << 63, u64::MAX][rnd() as usize],
                job_id: [0, 1 << 31, u32::MAX][rnd() as usize],
                instance_id: rnd() as u32,
                metric_id: rnd(),
            })
            .collect();
        for a in &ids {
            for b in &ids[..50] {
                assert_eq!(a.cmp(b), tsid_key(a).cmp(&tsid_key(b)));
            }
        }
    }

    #[test]
    fn normalize_sorts_and_drops_exact_duplicates() {
        let mut ts = vec![3, 1, 2, 1, 3];
        let mut vs = vec![3.0, 1.0, 2.0, 1.0, 3.5];
        let (dups, _) = normalize_series(&mut ts, &mut vs, 0);
        assert_eq!(dups, 1);
        assert_eq!(ts, vec![1, 2, 3, 3]);
        assert_eq!(vs, vec![1.0, 2.0, 3.0, 3.5]);
    }
}
