//! A bounded two-generation cache: entries live in `curr`; when it fills, it becomes `prev`
//! and a fresh `curr` starts. A hit in `prev` moves the entry back to `curr`. Entries used at
//! least once per generation stay; the rest age out, with no per-entry bookkeeping.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Keys are hashes or dense ids already: a multiply-mix is enough, and much cheaper than SipHash.
#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(29) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

struct Shard<K, V> {
    curr: Map<K, V>,
    prev: Map<K, V>,
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
                    curr: Map::default(),
                    prev: Map::default(),
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
        // Top bits pick the shard; the map's own hash mixes all bits.
        &self.shards[(h >> 60) as usize % SHARDS]
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
