//! Delta (gauges) and delta-of-delta (counters) payloads with optional precision bits
//! (FORMATS.md §2.2). With `precision_bits == 64` both are exact; wrapping arithmetic makes the
//! round trip exact for every i64 sequence, including ones whose differences overflow.
//!
//! Lossy mode (`precision_bits < 64`): each (second) difference is rounded toward zero so that
//! roughly `precision_bits` significant bits of the value survive. The encoder accumulates the
//! *rounded* differences, so the error of every value stays below `2^tz` and never drifts. The
//! number of cleared bits may grow by at most 2 per value, which keeps a sudden jump from one
//! tiny value to a huge one from wiping out the small one's digits.

use super::varint::{get_varint, put_varint};

fn bitlen(v: i64) -> u32 {
    64 - v.unsigned_abs().leading_zeros()
}

/// Bits to clear for `next`, limited to `prev_tz + 2`.
#[inline]
fn zeroed_bits(next: i64, precision_bits: u8, prev_tz: u32) -> u32 {
    let tz = bitlen(next).saturating_sub(u32::from(precision_bits));
    tz.min(prev_tz + 2).min(62)
}

#[inline]
fn round_toward_zero(d: i64, tz: u32) -> i64 {
    if tz == 0 {
        return d;
    }
    let mask = !((1u64 << tz) - 1);
    let mag = d.unsigned_abs() & mask;
    if d < 0 { (mag as i64).wrapping_neg() } else { mag as i64 }
}

/// Appends the delta payload of `a[1..]` (the first value lives in the block header).
pub fn marshal_nearest_delta(dst: &mut Vec<u8>, a: &[i64], precision_bits: u8) {
    let Some(&first) = a.first() else { return };
    let mut prev = first;
    if precision_bits >= 64 {
        for &v in &a[1..] {
            put_varint(dst, v.wrapping_sub(prev));
            prev = v;
        }
        return;
    }
    let mut tz = 0;
    for &v in &a[1..] {
        tz = zeroed_bits(v, precision_bits, tz);
        let d = round_toward_zero(v.wrapping_sub(prev), tz);
        put_varint(dst, d);
        prev = prev.wrapping_add(d);
    }
}

/// Decodes `n` values (the first is `first`) from a delta payload; the payload must be consumed
/// exactly.
pub fn unmarshal_nearest_delta(dst: &mut Vec<i64>, src: &[u8], first: i64, n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("zero items".into());
    }
    dst.reserve(n);
    dst.push(first);
    let mut pos = 0;
    let mut v = first;
    for _ in 1..n {
        let d = get_varint(src, &mut pos).ok_or("truncated delta payload")?;
        v = v.wrapping_add(d);
        dst.push(v);
    }
    if pos != src.len() {
        return Err(format!("{} unexpected bytes after {n} deltas", src.len() - pos));
    }
    Ok(())
}

/// Appends the delta-of-delta payload: the first difference, then the n-2 second differences.
/// `a` must hold at least 2 values.
pub fn marshal_nearest_delta2(dst: &mut Vec<u8>, a: &[i64], precision_bits: u8) {
    if a.len() < 2 {
        return;
    }
    if precision_bits >= 64 {
        let mut prev_d = a[1].wrapping_sub(a[0]);
        put_varint(dst, prev_d);
        for w in a[1..].windows(2) {
            let d = w[1].wrapping_sub(w[0]);
            put_varint(dst, d.wrapping_sub(prev_d));
            prev_d = d;
        }
        return;
    }
    let mut tz = zeroed_bits(a[1], precision_bits, 0);
    let d1 = round_toward_zero(a[1].wrapping_sub(a[0]), tz);
    put_varint(dst, d1);
    let mut prev = a[0].wrapping_add(d1);
    let mut prev_d = d1;
    for &v in &a[2..] {
        tz = zeroed_bits(v, precision_bits, tz);
        let predicted = prev.wrapping_add(prev_d);
        let d2 = round_toward_zero(v.wrapping_sub(predicted), tz);
        put_varint(dst, d2);
        prev_d = prev_d.wrapping_add(d2);
        prev = prev.wrapping_add(prev_d);
    }
}

/// Decodes `n >= 2` values from a delta-of-delta payload.
pub fn unmarshal_nearest_delta2(dst: &mut Vec<i64>, src: &[u8], first: i64, n: usize) -> Result<(), String> {
    if n < 2 {
        return Err(format!("delta2 needs at least 2 items, got {n}"));
    }
    dst.reserve(n);
    dst.push(first);
    let mut pos = 0;
    let mut d = get_varint(src, &mut pos).ok_or("truncated delta2 payload")?;
    let mut v = first.wrapping_add(d);
    dst.push(v);
    for _ in 2..n {
        let d2 = get_varint(src, &mut pos).ok_or("truncated delta2 payload")?;
        d = d.wrapping_add(d2);
        v = v.wrapping_add(d);
        dst.push(v);
    }
    if pos != src.len() {
        return Err(format!("{} unexpected bytes after {n} items", src.len() - pos));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_lossy(a: &[i64], pb: u8, delta2: bool) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        if delta2 {
            marshal_nearest_delta2(&mut buf, a, pb);
            unmarshal_nearest_delta2(&mut out, &buf, a[0], a.len()).unwrap();
        } else {
            marshal_nearest_delta(&mut buf, a, pb);
            unmarshal_nearest_delta(&mut out, &buf, a[0], a.len()).unwrap();
        }
        for (x, y) in a.iter().zip(&out) {
            let err = (i128::from(*x) - i128::from(*y)).unsigned_abs();
            // Error below 2^(bitlen - pb + 1) for each value (tz may lag by the +2 limit, which
            // only makes it more exact).
            let bound = 1u128 << (bitlen(*x).saturating_sub(u32::from(pb)) + 1);
            assert!(err < bound.max(1) * 2, "{x} decoded as {y} with pb {pb}");
        }
    }

    proptest! {
        #[test]
        fn exact_roundtrip(a in proptest::collection::vec(any::<i64>(), 2..100)) {
            for delta2 in [false, true] {
                let mut buf = Vec::new();
                let mut out = Vec::new();
                if delta2 {
                    marshal_nearest_delta2(&mut buf, &a, 64);
                    unmarshal_nearest_delta2(&mut out, &buf, a[0], a.len()).unwrap();
                } else {
                    marshal_nearest_delta(&mut buf, &a, 64);
                    unmarshal_nearest_delta(&mut out, &buf, a[0], a.len()).unwrap();
                }
                prop_assert_eq!(&out, &a);
                // Truncations are errors, never panics.
                for cut in 0..buf.len() {
                    let mut o = Vec::new();
                    let r = if delta2 {
                        unmarshal_nearest_delta2(&mut o, &buf[..cut], a[0], a.len())
                    } else {
                        unmarshal_nearest_delta(&mut o, &buf[..cut], a[0], a.len())
                    };
                    prop_assert!(r.is_err());
                }
            }
        }

        #[test]
        fn lossy_error_is_bounded(start in 0i64..1_000_000_000_000, steps in proptest::collection::vec(0i64..1_000_000, 2..100), pb in 8u8..63) {
            let mut v = start;
            let a: Vec<i64> = steps.iter().map(|s| { v += s; v }).collect();
            check_lossy(&a, pb, true);
            check_lossy(&a, pb, false);
        }
    }
}
