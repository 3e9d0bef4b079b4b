//! Bit-packed differences: our own payload next to the varint ones (MarshalType 7 and 8).
//!
//! Varints spend whole bytes: a 20-bit difference takes 24 bits, an 8-bit one 16. Packing each
//! group of 128 zig-zagged differences at the width of the largest one wastes far less on
//! irregular counters and gauges, where zstd finds nothing to squeeze. Differences that share
//! low zero bits (byte counts in 4 KiB pages, millisecond timestamps of whole seconds) are
//! shifted right first; the shift is stored once.
//!
//! Payload: `shift u8`, then per group of up to 128 values `width u8` and `ceil(n*width/8)`
//! bytes, bits least significant first.

use super::varint::{zigzag_decode, zigzag_encode};

const GROUP: usize = 128;

/// Appends the packed form of `deltas`.
pub fn pack(dst: &mut Vec<u8>, deltas: &[i64]) {
    let shift = deltas
        .iter()
        .filter(|&&d| d != 0)
        .map(|d| d.trailing_zeros())
        .min()
        .unwrap_or(0);
    dst.push(shift as u8);
    for group in deltas.chunks(GROUP) {
        let max = group.iter().map(|&d| zigzag_encode(d >> shift)).max().unwrap_or(0);
        let width = 64 - max.leading_zeros();
        dst.push(width as u8);
        if width == 0 {
            continue;
        }
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        for &d in group {
            acc |= u128::from(zigzag_encode(d >> shift)) << bits;
            bits += width;
            while bits >= 8 {
                dst.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            dst.push(acc as u8);
        }
    }
}

/// The size [`pack`] would produce for the `n` differences `d(0..n)`, without building them.
pub fn packed_len(n: usize, d: impl Fn(usize) -> i64) -> usize {
    let shift = (0..n)
        .map(&d)
        .filter(|&v| v != 0)
        .map(|v| v.trailing_zeros())
        .min()
        .unwrap_or(0);
    let mut len = 1;
    for start in (0..n).step_by(GROUP) {
        let end = (start + GROUP).min(n);
        let max = (start..end).map(|i| zigzag_encode(d(i) >> shift)).max().unwrap_or(0);
        let width = (64 - max.leading_zeros()) as usize;
        len += 1 + ((end - start) * width).div_ceil(8);
    }
    len
}

/// Reads `n` differences written by [`pack`], appending them to `dst`; the payload must be
/// consumed exactly.
pub fn unpack(dst: &mut Vec<i64>, src: &[u8], n: usize) -> Result<(), String> {
    let (&shift, mut rest) = src.split_first().ok_or("empty packed payload")?;
    if shift > 63 {
        return Err(format!("packed shift {shift} > 63"));
    }
    dst.reserve(n);
    let mut left = n;
    while left > 0 {
        let cnt = left.min(GROUP);
        let (&width, body) = rest.split_first().ok_or("truncated packed payload")?;
        let width = u32::from(width);
        if width > 64 {
            return Err(format!("packed width {width} > 64"));
        }
        let len = (cnt * width as usize).div_ceil(8);
        let data = body.get(..len).ok_or("truncated packed group")?;
        rest = &body[len..];
        let mask: u128 = if width == 64 {
            u128::from(u64::MAX)
        } else {
            (1u128 << width) - 1
        };
        let mut acc: u128 = 0;
        let mut bits = 0u32;
        let mut bytes = data.iter();
        for _ in 0..cnt {
            while bits < width {
                // `len` covers every bit of the group, so the iterator cannot run dry here.
                acc |= u128::from(*bytes.next().unwrap_or(&0)) << bits;
                bits += 8;
            }
            let z = (acc & mask) as u64;
            acc >>= width;
            bits -= width;
            dst.push(zigzag_decode(z).wrapping_shl(u32::from(shift)));
        }
        left -= cnt;
    }
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes after packed payload", rest.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(d in proptest::collection::vec(any::<i64>(), 0..400), shift in 0u32..20) {
            let d: Vec<i64> = d.iter().map(|v| v.wrapping_shl(shift)).collect();
            let mut buf = Vec::new();
            pack(&mut buf, &d);
            let mut out = Vec::new();
            unpack(&mut out, &buf, d.len()).unwrap();
            prop_assert_eq!(&out, &d);
            prop_assert_eq!(packed_len(d.len(), |i| d[i]), buf.len());
            for cut in 0..buf.len() {
                prop_assert!(unpack(&mut Vec::new(), &buf[..cut], d.len()).is_err() || d.is_empty());
            }
        }
    }

    #[test]
    fn pages_pack_tightly() {
        let d: Vec<i64> = (0..128).map(|i| ((i * 37) % 129 - 64) * 4096).collect();
        let mut buf = Vec::new();
        pack(&mut buf, &d);
        // 8 bits per value after dropping the 12 zero bits, plus the shift and width bytes.
        assert_eq!(buf.len(), 2 + 128);
    }
}
