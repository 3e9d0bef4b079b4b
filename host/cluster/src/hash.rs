//! Rendezvous (highest-random-weight) hashing of series over storage nodes (FORMATS.md §5.5):
//! each node scores every series key and the highest score wins, so adding or removing a node
//! moves only the series that node wins or won — about 1/N of them.

use strata_storage::Tenant;
use xxhash_rust::xxh64::{Xxh64, xxh64};

/// The key of a series: xxhash64 over `u32 account | u32 project | (u16 len | name, u16 len |
/// value)*` in arrival order (label lengths over u16 are cut; they only feed a hash).
pub fn series_key<'a>(tenant: Tenant, labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = Xxh64::new(0);
    h.update(&tenant.account_id.to_be_bytes());
    h.update(&tenant.project_id.to_be_bytes());
    for (n, v) in labels {
        h.update(&(n.len().min(u16::MAX as usize) as u16).to_be_bytes());
        h.update(n.as_bytes());
        h.update(&(v.len().min(u16::MAX as usize) as u16).to_be_bytes());
        h.update(v.as_bytes());
    }
    h.digest()
}

/// The hash of a node address, its identity in the ranking.
pub fn node_hash(addr: &str) -> u64 {
    xxh64(addr.as_bytes(), 0)
}

/// xorshift(12, 25, 27) times a large odd constant: spreads `node ^ key` over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(2_685_821_657_736_338_717)
}

/// The score of node `node_hash` for `key`; higher wins.
pub fn score(node_hash: u64, key: u64) -> u64 {
    mix(node_hash ^ key)
}

/// Node indexes ordered by preference for `key` (best first). Ties (equal scores) fall back
/// to the index so the order is total.
pub fn ranking(node_hashes: &[u64], key: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..node_hashes.len()).collect();
    idx.sort_by_key(|&i| (std::cmp::Reverse(score(node_hashes[i], key)), i));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> u64 {
        let v = i.to_string();
        series_key(Tenant::default(), [("__name__", "m"), ("i", v.as_str())].into_iter())
    }

    #[test]
    fn spreads_evenly_and_adding_a_node_moves_about_one_nth() {
        let addrs: Vec<String> = (0..4).map(|i| format!("10.0.0.{i}:8400")).collect();
        let hashes: Vec<u64> = addrs.iter().map(|a| node_hash(a)).collect();
        let n = 20_000;
        let mut counts = [0usize; 4];
        let before: Vec<usize> = (0..n).map(|i| ranking(&hashes, key(i))[0]).collect();
        for &b in &before {
            counts[b] += 1;
        }
        for c in counts {
            assert!((4_000..6_000).contains(&c), "uneven: {counts:?}");
        }
        let mut more = hashes.clone();
        more.push(node_hash("10.0.0.9:8400"));
        let moved = (0..n).filter(|&i| ranking(&more, key(i))[0] != before[i]).count();
        // Ideal is n/5 = 4000, and every moved series must have gone to the new node.
        assert!((3_000..5_000).contains(&moved), "moved {moved}");
        assert!((0..n).all(|i| {
            let now = ranking(&more, key(i))[0];
            now == before[i] || now == 4
        }));
    }

    #[test]
    fn tenant_and_label_order_change_the_key() {
        let a = series_key(Tenant::default(), [("a", "1"), ("b", "2")].into_iter());
        let b = series_key(Tenant::default(), [("b", "2"), ("a", "1")].into_iter());
        let t = Tenant {
            account_id: 1,
            project_id: 0,
        };
        let c = series_key(t, [("a", "1"), ("b", "2")].into_iter());
        assert_ne!(a, b);
        assert_ne!(a, c);
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            series_key(Tenant::default(), [("ab", "c")].into_iter()),
            series_key(Tenant::default(), [("a", "bc")].into_iter())
        );
    }
}
