//! Which parts to merge (FORMATS.md §1.8 "Part selection", shared with the data side).

/// At most this many parts are merged at once.
pub const DEFAULT_PARTS_TO_MERGE: usize = 15;
/// A part larger than `max_out / MIN_MERGE_MULTIPLIER` is never picked.
pub const MIN_MERGE_MULTIPLIER: f64 = 1.7;

/// Picks the parts to merge among `sizes` (bytes), returning their indices, or nothing when no
/// window is worth merging. The score `total / largest` must reach `max(15/2, 1.7)`: merging
/// parts of very different sizes rewrites the big one for little gain, which is what bounds
/// write amplification.
pub fn select_parts_to_merge(sizes: &[u64], max_out_bytes: u64) -> Vec<usize> {
    let limit = max_out_bytes as f64 / MIN_MERGE_MULTIPLIER;
    let mut cand: Vec<(u64, usize)> = sizes
        .iter()
        .enumerate()
        .filter(|(_, s)| (**s as f64) <= limit)
        .map(|(i, s)| (*s, i))
        .collect();
    cand.sort_unstable();
    let n = cand.len();
    let k = n.min(DEFAULT_PARTS_TO_MERGE);
    if k < 2 {
        return Vec::new();
    }
    let min_len = k.div_ceil(2).max(2);
    let mut best: Option<(f64, usize, usize)> = None;
    for len in min_len..=k {
        for start in 0..=n - len {
            let w = &cand[start..start + len];
            let (smallest, largest) = (w[0].0.max(1), w[len - 1].0.max(1));
            if smallest.saturating_mul(len as u64) < largest {
                continue;
            }
            let total: u64 = w.iter().map(|x| x.0).sum();
            if total > max_out_bytes {
                break;
            }
            let score = total as f64 / largest as f64;
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, start, len));
            }
        }
    }
    let threshold = (DEFAULT_PARTS_TO_MERGE as f64 / 2.0).max(MIN_MERGE_MULTIPLIER);
    match best {
        Some((score, start, len)) if score >= threshold => cand[start..start + len].iter().map(|x| x.1).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_similar_parts_only_when_worth_it() {
        assert!(select_parts_to_merge(&[10, 10, 10], u64::MAX).is_empty());
        let mut got = select_parts_to_merge(&[10; 8], u64::MAX);
        got.sort();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        // One huge part next to many small ones: only the small ones merge.
        let mut sizes = vec![1_000_000u64];
        sizes.extend([100u64; 15]);
        let got = select_parts_to_merge(&sizes, u64::MAX);
        assert_eq!(got.len(), 15);
        assert!(!got.contains(&0));
        // Parts too big for the output limit are never picked.
        assert!(select_parts_to_merge(&[100; 10], 150).is_empty());
    }
}
