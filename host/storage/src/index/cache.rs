//! A bounded two-generation cache: entries live in `curr`; when it fills, it becomes `prev`
//! and a fresh `curr` starts. A hit in `prev` moves the entry back to `curr`. Entries used at
//! least once per generation stay; the rest age out, with no per-entry bookkeeping.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

const SHARDS: usize = 16;

struct Shard<K, V> {
    curr: HashMap<K, V>,
    prev: HashMap<K, V>,
}

/// A sharded, bounded cache of small `Copy` values.
pub(crate) struct TwoGenCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    max_per_shard: usize,
}

impl<K: Hash + Eq + Copy, V: Copy> TwoGenCache<K, V> {
    /// A cache holding at most about `max_entries` (two generations of half that).
    pub fn new(max_entries: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    curr: HashMap::new(),
                    prev: HashMap::new(),
                })
            })
            .collect();
        Self {
            shards,
            max_per_shard: (max_entries / SHARDS / 2).max(16),
        }
    }

    fn shard(&self, k: &K, h: u64) -> &Mutex<Shard<K, V>> {
        let _ = k;
        &self.shards[(h as usize) % SHARDS]
    }

    /// Looks `k` up; `h` is any hash of `k` used to pick the shard.
    pub fn get(&self, k: &K, h: u64) -> Option<V> {
        let mut s = self.shard(k, h).lock();
        if let Some(v) = s.curr.get(k) {
            return Some(*v);
        }
        let v = s.prev.remove(k)?;
        Self::insert_locked(&mut s, *k, v, self.max_per_shard);
        Some(v)
    }

    /// Stores `k -> v`.
    pub fn put(&self, k: K, h: u64, v: V) {
        let mut s = self.shard(&k, h).lock();
        Self::insert_locked(&mut s, k, v, self.max_per_shard);
    }

    fn insert_locked(s: &mut Shard<K, V>, k: K, v: V, max: usize) {
        if s.curr.len() >= max && !s.curr.contains_key(&k) {
            s.prev = std::mem::take(&mut s.curr);
            s.curr.reserve(max / 4);
        }
        s.curr.insert(k, v);
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.curr.len() + s.prev.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_promotes() {
        let c = TwoGenCache::<u64, u64>::new(SHARDS * 2 * 16);
        for i in 0..10_000u64 {
            c.put(i, i, i * 2);
            assert_eq!(c.get(&0, 0), Some(0), "a key used every round stays");
        }
        assert!(c.len() <= SHARDS * 2 * 16);
        assert_eq!(c.get(&9999, 9999), Some(19998));
        assert_eq!(c.get(&5, 5), None);
    }
}
