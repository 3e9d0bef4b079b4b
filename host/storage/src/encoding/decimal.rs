//! Floats to decimal mantissas with one shared exponent per block (FORMATS.md §2.3), lossless.
//!
//! Every value of a block becomes an integer mantissa `m` with `value = m × 10^scale`. Values
//! that are decimal in their source (node_exporter's `12345.67`) get small mantissas whose
//! deltas compress well. Unlike a fixed 12-digit conversion, ours is exact for every f64: a
//! mantissa is accepted only if dividing it back (one correctly rounded IEEE operation, or a
//! correctly rounded parse when the operands are not exact doubles) reproduces the bits.
//!
//! Reserved mantissas keep the special values: +Inf = `i64::MAX`, -Inf = `i64::MIN`, and the
//! Prometheus stale marker = `i64::MAX - 1`. A block that cannot be expressed with one scale
//! (mantissa overflow), or that holds `-0.0` or a NaN other than the stale marker, is stored in
//! *raw* form: scale [`RAW_SCALE`] and mantissas that are the IEEE bits themselves. Raw blocks
//! compress worse but lose nothing.

/// Prometheus' staleness marker: the only NaN the engine stores, kept bit-exactly.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The scale that marks a block whose mantissas are raw IEEE-754 bits.
pub const RAW_SCALE: i16 = i16::MIN;

const POS_INF: i64 = i64::MAX;
const NEG_INF: i64 = i64::MIN;
const STALE: i64 = i64::MAX - 1;
/// Largest magnitude of a normal mantissa: everything above is reserved.
const MAX_NORMAL: i64 = i64::MAX - 2;
/// Doubles below this magnitude hold every integer exactly.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Whether `v` is the stale marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The stale marker as an f64.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

enum Conv {
    Special(i64),
    Decimal(i64, i16),
    /// Needs the raw form (-0.0, non-stale NaN).
    Raw,
}

fn strip_zeros(mut m: i64, mut e: i16) -> (i64, i16) {
    if m == 0 {
        return (0, 0);
    }
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    (m, e)
}

fn convert(f: f64) -> Conv {
    if f.is_nan() {
        return if f.to_bits() == STALE_NAN_BITS {
            Conv::Special(STALE)
        } else {
            Conv::Raw
        };
    }
    if f.is_infinite() {
        return Conv::Special(if f > 0.0 { POS_INF } else { NEG_INF });
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            Conv::Raw
        } else {
            Conv::Decimal(0, 0)
        };
    }
    let a = f.abs();
    if a < EXACT_INT {
        if f.fract() == 0.0 {
            let (m, e) = strip_zeros(f as i64, 0);
            return Conv::Decimal(m, e);
        }
        // Find the fewest decimal digits after the point that reproduce f exactly.
        for (k, &p) in POW10.iter().enumerate().skip(1) {
            let x = (f * p).round();
            if x.abs() >= EXACT_INT {
                break;
            }
            if x / p == f {
                let (m, e) = strip_zeros(x as i64, -(k as i16));
                return Conv::Decimal(m, e);
            }
        }
    }
    // The shortest round-trip digits (at most 17) always fit an i64.
    shortest_decimal(f).map_or(Conv::Raw, |(m, e)| Conv::Decimal(m, e))
}

fn shortest_decimal(f: f64) -> Option<(i64, i16)> {
    let s = format!("{f:e}");
    let (digits, exp) = s.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut m: i64 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        m = m.checked_mul(10)?.checked_add(i64::from(c.checked_sub(b'0')?))?;
    }
    let e = i16::try_from(exp - frac.len() as i32).ok()?;
    Some(strip_zeros(if neg { -m } else { m }, e))
}

/// Converts `src` to mantissas appended to `dst` and returns the block's shared scale
/// ([`RAW_SCALE`] for the raw form). Exact for every input.
pub fn floats_to_decimals(dst: &mut Vec<i64>, src: &[f64]) -> i16 {
    CONV.with(|c| {
        let mut conv = c.borrow_mut();
        conv.clear();
        to_decimals(dst, src, &mut conv)
    })
}

thread_local! {
    static CONV: std::cell::RefCell<Vec<(i64, Option<i16>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn to_decimals(dst: &mut Vec<i64>, src: &[f64], conv: &mut Vec<(i64, Option<i16>)>) -> i16 {
    let start = dst.len();
    // (mantissa, exponent); specials carry no exponent and are never scaled.
    let mut min_exp = i16::MAX;
    let mut raw = false;
    for &f in src {
        match convert(f) {
            Conv::Raw => {
                raw = true;
                break;
            }
            Conv::Special(m) => conv.push((m, None)),
            Conv::Decimal(m, e) => {
                if m != 0 {
                    min_exp = min_exp.min(e);
                }
                conv.push((m, Some(e)));
            }
        }
    }
    if !raw {
        if min_exp == i16::MAX {
            min_exp = 0;
        }
        for &(m, e) in conv.iter() {
            let scaled = match e {
                Some(e) if m != 0 => scale_up(m, (e - min_exp) as u32),
                _ => Some(m),
            };
            match scaled {
                Some(v) => dst.push(v),
                None => {
                    raw = true;
                    break;
                }
            }
        }
        if !raw {
            return min_exp;
        }
    }
    dst.truncate(start);
    dst.extend(src.iter().map(|f| f.to_bits() as i64));
    RAW_SCALE
}

fn scale_up(m: i64, k: u32) -> Option<i64> {
    let p = 10i64.checked_pow(k)?;
    let v = m.checked_mul(p)?;
    (v.checked_abs()? <= MAX_NORMAL).then_some(v)
}

/// Converts mantissas back to floats, appending to `dst`. Total: any input decodes to some
/// float (garbage in, garbage out, never a panic); exact for what [`floats_to_decimals`] wrote.
pub fn decimals_to_floats(dst: &mut Vec<f64>, src: &[i64], scale: i16) {
    dst.reserve(src.len());
    if scale == RAW_SCALE {
        dst.extend(src.iter().map(|&m| f64::from_bits(m as u64)));
        return;
    }
    for &m in src {
        dst.push(decimal_to_float(m, scale));
    }
}

/// One mantissa at `scale` (not [`RAW_SCALE`]) back to a float.
#[inline]
pub fn decimal_to_float(m: i64, scale: i16) -> f64 {
    match m {
        POS_INF => return f64::INFINITY,
        NEG_INF => return f64::NEG_INFINITY,
        STALE => return stale_nan(),
        0 => return 0.0,
        _ => {}
    }
    let k = scale.unsigned_abs() as usize;
    if (m.unsigned_abs() as f64) < EXACT_INT && k < POW10.len() {
        // Both operands are exact doubles, so one IEEE operation is correctly rounded.
        if scale >= 0 {
            m as f64 * POW10[k]
        } else {
            m as f64 / POW10[k]
        }
    } else {
        format!("{m}e{scale}").parse().unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(vals: &[f64]) -> (Vec<i64>, i16) {
        let mut m = Vec::new();
        let scale = floats_to_decimals(&mut m, vals);
        let mut back = Vec::new();
        decimals_to_floats(&mut back, &m, scale);
        let a: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = back.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "values {vals:?} scale {scale} mantissas {m:?}");
        (m, scale)
    }

    #[test]
    fn node_exporter_like_values_are_small_decimals() {
        let (m, s) = roundtrip(&[12345.67, 12345.7, 12346.0]);
        assert_eq!(s, -2);
        assert_eq!(m, vec![1234567, 1234570, 1234600]);
        let (m, s) = roundtrip(&[1000.0, 2000.0, 0.0]);
        assert_eq!((m, s), (vec![1, 2, 0], 3));
        let (_, s) = roundtrip(&[0.1, 0.2, 0.3]);
        assert_eq!(s, -1);
    }

    #[test]
    fn specials_are_exact() {
        let (_, s) = roundtrip(&[f64::INFINITY, f64::NEG_INFINITY, stale_nan(), 1.5]);
        assert_ne!(s, RAW_SCALE);
        let (_, s) = roundtrip(&[-0.0, 1.0]);
        assert_eq!(s, RAW_SCALE);
        let (_, s) = roundtrip(&[f64::NAN, 1.0]);
        assert_eq!(s, RAW_SCALE);
        roundtrip(&[f64::MAX, f64::MIN_POSITIVE, 5e-324, -f64::MAX]);
        roundtrip(&[1.0 / 3.0, 1e300, 2.0f64.powi(60)]);
        roundtrip(&[]);
    }

    proptest! {
        #[test]
        fn every_bit_pattern_roundtrips(bits in proptest::collection::vec(any::<u64>(), 1..40)) {
            let vals: Vec<f64> = bits.iter().map(|b| f64::from_bits(*b)).collect();
            roundtrip(&vals);
        }

        #[test]
        fn every_finite_roundtrips(vals in proptest::collection::vec(proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO, 1..40)) {
            roundtrip(&vals);
        }

        #[test]
        fn decimal_values_roundtrip(ms in proptest::collection::vec(-1_000_000_000_000i64..1_000_000_000_000, 1..40), e in -12i32..12) {
            let vals: Vec<f64> = ms.iter().map(|m| format!("{m}e{e}").parse().unwrap()).collect();
            let (_, s) = roundtrip(&vals);
            prop_assert_ne!(s, RAW_SCALE);
        }
    }
}
