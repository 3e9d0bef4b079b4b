//! `Items`: a run of byte items in one shared buffer (no per-item allocation).

/// A list of byte items stored back to back in one buffer. Used for pending items, in-memory
/// parts, decoded blocks and the blocks handed to the prepare-block hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Items {
    data: Vec<u8>,
    /// `ends[i]` is the end offset of item `i` in `data`; item `i` starts at `ends[i-1]` (or 0).
    ends: Vec<u32>,
}

impl Items {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `bytes` of item data.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::new(),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True without items.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of item data.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Approximate heap bytes held (for cache accounting).
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() + self.ends.capacity() * 4
    }

    /// Item `i`. Panics when out of range, like slice indexing; callers index within `len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// The first item, if any.
    pub fn first(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.get(0))
    }

    /// The last item, if any.
    pub fn last(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.get(self.len() - 1))
    }

    /// Appends an item. Item buffers stay far below 4 GiB (blocks are 64 KiB, in-memory parts
    /// are bounded), so u32 offsets suffice.
    pub fn push(&mut self, item: &[u8]) {
        self.data.extend_from_slice(item);
        self.ends.push(self.data.len() as u32);
    }

    /// Removes every item, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Iterates over the items in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// True if the items are in non-decreasing byte order.
    pub fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.get(i - 1) <= self.get(i))
    }

    /// Returns the items sorted by byte order (duplicates kept).
    pub fn sorted(&self) -> Items {
        let mut idx: Vec<u32> = (0..self.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| self.get(a as usize).cmp(self.get(b as usize)));
        let mut out = Items::with_capacity(self.data.len());
        out.ends.reserve(self.len());
        for i in idx {
            out.push(self.get(i as usize));
        }
        out
    }

    /// Index of the first item `>= key` (binary search; items must be sorted).
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl<'a> FromIterator<&'a [u8]> for Items {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut items = Items::new();
        for it in iter {
            items.push(it);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_sort_bound() {
        let mut it = Items::new();
        for s in ["b", "", "abc", "b"] {
            it.push(s.as_bytes());
        }
        assert_eq!(it.get(2), b"abc");
        let s = it.sorted();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![&b""[..], b"abc", b"b", b"b"]);
        assert!(s.is_sorted() && !it.is_sorted());
        assert_eq!(s.lower_bound(b"abd"), 2);
        assert_eq!(s.lower_bound(b"c"), 4);
        assert_eq!(s.lower_bound(b""), 0);
    }
}
