//! A compact set of u64 metric ids (FORMATS.md §4.5): ids grouped by their high 48 bits, each
//! group a sorted u16 list while small and a 65,536-bit bitmap once dense. Metric ids come from
//! a counter, so they are dense and the bitmaps make a series cost about one bit.

use std::collections::BTreeMap;

/// Values beyond which a group switches to a bitmap (the list then costs as much as the 8 KiB
/// bitmap).
const SMALL_MAX: usize = 4096;

#[derive(Clone, Debug)]
enum Bucket {
    Small(Vec<u16>),
    Bitmap(Box<[u64; 1024]>, u32),
}

impl Bucket {
    fn len(&self) -> usize {
        match self {
            Bucket::Small(v) => v.len(),
            Bucket::Bitmap(_, n) => *n as usize,
        }
    }

    fn contains(&self, lo: u16) -> bool {
        match self {
            Bucket::Small(v) => v.binary_search(&lo).is_ok(),
            Bucket::Bitmap(b, _) => b[lo as usize / 64] & (1 << (lo % 64)) != 0,
        }
    }

    fn add(&mut self, lo: u16) -> bool {
        match self {
            Bucket::Small(v) => match v.binary_search(&lo) {
                Ok(_) => false,
                Err(i) => {
                    v.insert(i, lo);
                    if v.len() > SMALL_MAX {
                        let mut bm = Box::new([0u64; 1024]);
                        for &x in v.iter() {
                            bm[x as usize / 64] |= 1 << (x % 64);
                        }
                        *self = Bucket::Bitmap(bm, (SMALL_MAX + 1) as u32);
                    }
                    true
                }
            },
            Bucket::Bitmap(b, n) => {
                let (w, bit) = (lo as usize / 64, 1u64 << (lo % 64));
                let new = b[w] & bit == 0;
                b[w] |= bit;
                *n += u32::from(new);
                new
            }
        }
    }

    fn remove(&mut self, lo: u16) -> bool {
        match self {
            Bucket::Small(v) => match v.binary_search(&lo) {
                Ok(i) => {
                    v.remove(i);
                    true
                }
                Err(_) => false,
            },
            Bucket::Bitmap(b, n) => {
                let (w, bit) = (lo as usize / 64, 1u64 << (lo % 64));
                let had = b[w] & bit != 0;
                b[w] &= !bit;
                *n -= u32::from(had);
                had
            }
        }
    }

    fn for_each(&self, mut f: impl FnMut(u16)) {
        match self {
            Bucket::Small(v) => v.iter().for_each(|&x| f(x)),
            Bucket::Bitmap(b, _) => {
                for (w, &word) in b.iter().enumerate() {
                    let mut word = word;
                    while word != 0 {
                        let t = word.trailing_zeros();
                        f((w * 64) as u16 + t as u16);
                        word &= word - 1;
                    }
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Bucket::Small(v) => v.capacity() * 2,
            Bucket::Bitmap(..) => 8192,
        }
    }
}

/// A set of u64 values, iterated in ascending order.
#[derive(Clone, Debug, Default)]
pub struct Uint64Set {
    buckets: BTreeMap<u64, Bucket>,
    len: usize,
}

impl Uint64Set {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `v`; true if it was absent.
    pub fn add(&mut self, v: u64) -> bool {
        let added = self
            .buckets
            .entry(v >> 16)
            .or_insert_with(|| Bucket::Small(Vec::new()))
            .add(v as u16);
        self.len += usize::from(added);
        added
    }

    /// Adds many values at once: sorted first, so each 65,536-value group is found once and
    /// filled in order (much cheaper than one [`Uint64Set::add`] per value for big scans).
    pub fn add_many(&mut self, mut ids: Vec<u64>) {
        ids.sort_unstable();
        ids.dedup();
        let mut i = 0;
        while i < ids.len() {
            let hi = ids[i] >> 16;
            let j = i + ids[i..].partition_point(|v| v >> 16 == hi);
            let b = self.buckets.entry(hi).or_insert_with(|| Bucket::Small(Vec::new()));
            let mut added = 0;
            for &v in &ids[i..j] {
                added += usize::from(b.add(v as u16));
            }
            self.len += added;
            i = j;
        }
    }

    /// Removes `v`; true if it was present.
    pub fn remove(&mut self, v: u64) -> bool {
        let Some(b) = self.buckets.get_mut(&(v >> 16)) else {
            return false;
        };
        let removed = b.remove(v as u16);
        if b.len() == 0 {
            self.buckets.remove(&(v >> 16));
        }
        self.len -= usize::from(removed);
        removed
    }

    /// True if `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        self.buckets.get(&(v >> 16)).is_some_and(|b| b.contains(v as u16))
    }

    /// Calls `f` on every value in ascending order.
    pub fn for_each(&self, mut f: impl FnMut(u64)) {
        for (&hi, b) in &self.buckets {
            b.for_each(|lo| f(hi << 16 | u64::from(lo)));
        }
    }

    /// The values in ascending order.
    pub fn to_vec(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.len);
        self.for_each(|v| out.push(v));
        out
    }

    /// Adds every value of `other`.
    pub fn union_with(&mut self, other: &Uint64Set) {
        for (&hi, ob) in &other.buckets {
            match (self.buckets.get_mut(&hi), ob) {
                (Some(Bucket::Bitmap(a, n)), Bucket::Bitmap(b, _)) => {
                    let mut cnt = 0u32;
                    for (x, y) in a.iter_mut().zip(b.iter()) {
                        *x |= *y;
                        cnt += x.count_ones();
                    }
                    self.len = self.len - *n as usize + cnt as usize;
                    *n = cnt;
                }
                (None, _) => {
                    self.len += ob.len();
                    self.buckets.insert(hi, ob.clone());
                }
                (Some(a), _) => {
                    let mut added = 0;
                    ob.for_each(|lo| added += usize::from(a.add(lo)));
                    self.len += added;
                }
            }
        }
    }

    /// Keeps only values also in `other`.
    pub fn intersect_with(&mut self, other: &Uint64Set) {
        let mut len = 0;
        self.buckets.retain(|hi, a| {
            let Some(b) = other.buckets.get(hi) else { return false };
            let mut keep = Bucket::Small(Vec::new());
            a.for_each(|lo| {
                if b.contains(lo) {
                    keep.add(lo);
                }
            });
            *a = keep;
            len += a.len();
            a.len() > 0
        });
        self.len = len;
    }

    /// Removes every value of `other`.
    pub fn subtract(&mut self, other: &Uint64Set) {
        if other.len > self.len {
            // Walk the smaller side: keep what `other` lacks.
            let mut len = 0;
            self.buckets.retain(|hi, a| {
                let Some(b) = other.buckets.get(hi) else {
                    len += a.len();
                    return true;
                };
                let mut keep = Bucket::Small(Vec::new());
                a.for_each(|lo| {
                    if !b.contains(lo) {
                        keep.add(lo);
                    }
                });
                *a = keep;
                len += a.len();
                a.len() > 0
            });
            self.len = len;
            return;
        }
        for (hi, ob) in &other.buckets {
            if let Some(a) = self.buckets.get_mut(hi) {
                let mut removed = 0;
                ob.for_each(|lo| removed += usize::from(a.remove(lo)));
                self.len -= removed;
                if a.len() == 0 {
                    self.buckets.remove(hi);
                }
            }
        }
    }

    /// Approximate heap bytes (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.values().map(|b| b.heap_bytes() + 48).sum()
    }
}

impl FromIterator<u64> for Uint64Set {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut s = Uint64Set::new();
        for v in iter {
            s.add(v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn ids() -> impl Strategy<Value = Vec<u64>> {
        // Dense runs (bitmaps) and sparse values (lists) mixed.
        prop::collection::vec(
            prop_oneof![0u64..20_000, 1u64 << 40..(1u64 << 40) + 100, any::<u64>()],
            0..12_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn matches_btreeset(a in ids(), b in ids()) {
            let (sa, sb): (Uint64Set, Uint64Set) = (a.iter().copied().collect(), b.iter().copied().collect());
            let (ma, mb): (BTreeSet<u64>, BTreeSet<u64>) = (a.iter().copied().collect(), b.iter().copied().collect());
            prop_assert_eq!(sa.to_vec(), ma.iter().copied().collect::<Vec<_>>());
            let mut bulk = sb.clone();
            bulk.add_many(a.clone());
            prop_assert_eq!(bulk.to_vec(), ma.union(&mb).copied().collect::<Vec<_>>());
            prop_assert_eq!(bulk.len(), ma.union(&mb).count());
            prop_assert_eq!(sa.len(), ma.len());
            let mut u = sa.clone(); u.union_with(&sb);
            prop_assert_eq!(u.to_vec(), ma.union(&mb).copied().collect::<Vec<_>>());
            prop_assert_eq!(u.len(), ma.union(&mb).count());
            let mut i = sa.clone(); i.intersect_with(&sb);
            prop_assert_eq!(i.to_vec(), ma.intersection(&mb).copied().collect::<Vec<_>>());
            prop_assert_eq!(i.len(), ma.intersection(&mb).count());
            let mut d = sa.clone(); d.subtract(&sb);
            prop_assert_eq!(d.to_vec(), ma.difference(&mb).copied().collect::<Vec<_>>());
            prop_assert_eq!(d.len(), ma.difference(&mb).count());
            for v in b.iter().take(50) { prop_assert_eq!(sa.contains(*v), ma.contains(v)); }
        }
    }
}
