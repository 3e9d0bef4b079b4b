//! Primitive integer encodings (FORMATS.md §0): zig-zag, LEB128 varints and fixed-width
//! big-endian integers. Decoders return `None` on truncated or overlong input instead of
//! panicking; callers turn that into `StorageError::Corrupt` with the part path.

/// Maps signed to unsigned so that small magnitudes become small numbers: 0,-1,1,-2 → 0,1,2,3.
#[inline]
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as unsigned LEB128 (7 bits per byte, 0x80 = more bytes follow).
#[inline]
pub fn put_uvarint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Appends `v` zig-zag encoded, then as LEB128.
#[inline]
pub fn put_varint(dst: &mut Vec<u8>, v: i64) {
    put_uvarint(dst, zigzag_encode(v));
}

/// Reads one LEB128 value from `src[*pos..]`, advancing `pos`. `None` when the input ends
/// mid-value or the value needs more than 64 bits.
#[inline]
pub fn get_uvarint(src: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *src.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        result |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(result);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads one zig-zag LEB128 value.
#[inline]
pub fn get_varint(src: &[u8], pos: &mut usize) -> Option<i64> {
    get_uvarint(src, pos).map(zigzag_decode)
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(dst, b.len() as u64);
    dst.extend_from_slice(b);
}

/// Reads a length-prefixed byte string.
pub fn get_bytes<'a>(src: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let n = usize::try_from(get_uvarint(src, pos)?).ok()?;
    let end = pos.checked_add(n)?;
    let b = src.get(*pos..end)?;
    *pos = end;
    Some(b)
}

/// A cursor over fixed-width big-endian fields; every read checks bounds.
pub struct BeReader<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> BeReader<'a> {
    /// Starts reading at the beginning of `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Self { src, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.src.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.src.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Some(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    /// Big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// Zig-zag big-endian i64 (the block header's timestamp form).
    pub fn zz_i64(&mut self) -> Option<i64> {
        self.u64().map(zigzag_decode)
    }

    /// Zig-zag big-endian i16.
    pub fn zz_i16(&mut self) -> Option<i16> {
        let u = self.u16()?;
        Some(((u >> 1) as i16) ^ -((u & 1) as i16))
    }
}

/// Appends a zig-zag big-endian i64.
pub fn put_zz_i64(dst: &mut Vec<u8>, v: i64) {
    dst.extend_from_slice(&zigzag_encode(v).to_be_bytes());
}

/// Appends a zig-zag big-endian i16.
pub fn put_zz_i16(dst: &mut Vec<u8>, v: i16) {
    let u = ((v << 1) ^ (v >> 15)) as u16;
    dst.extend_from_slice(&u.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_roundtrip(v in any::<i64>(), u in any::<u64>()) {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            put_uvarint(&mut b, u);
            let mut pos = 0;
            prop_assert_eq!(get_varint(&b, &mut pos), Some(v));
            prop_assert_eq!(get_uvarint(&b, &mut pos), Some(u));
            prop_assert_eq!(pos, b.len());
            // Every strict prefix is rejected, never misread.
            for cut in 0..b.len() {
                let mut pos = 0;
                let a = get_varint(&b[..cut], &mut pos);
                let c = a.and_then(|_| get_uvarint(&b[..cut], &mut pos));
                prop_assert!(c.is_none());
            }
        }

        #[test]
        fn fixed_roundtrip(v in any::<i64>(), s in any::<i16>()) {
            let mut b = Vec::new();
            put_zz_i64(&mut b, v);
            put_zz_i16(&mut b, s);
            let mut r = BeReader::new(&b);
            prop_assert_eq!(r.zz_i64(), Some(v));
            prop_assert_eq!(r.zz_i16(), Some(s));
            prop_assert_eq!(r.remaining(), 0);
            prop_assert_eq!(r.u8(), None);
        }
    }

    #[test]
    fn zigzag_small_values() {
        assert_eq!(zigzag_encode(0), 0);
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
        assert_eq!(zigzag_encode(i64::MIN), u64::MAX);
        assert_eq!(zigzag_decode(u64::MAX), i64::MIN);
    }

    #[test]
    fn overlong_varint_rejected() {
        let b = [0xffu8; 11];
        assert_eq!(get_uvarint(&b, &mut 0), None);
        let b = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(get_uvarint(&b, &mut 0), None);
    }
}
