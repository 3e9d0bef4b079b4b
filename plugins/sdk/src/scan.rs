//! Text scanning and number parsing for parsers, written for how a component runs.
//!
//! Inside a component the standard library's routines for these jobs are slower than natively,
//! more than the rest of the code:
//! - `memchr` and UTF-8 checks work on `usize` words, which are 4 bytes on `wasm32`;
//! - `memcmp` is a byte loop (natively it is the C library's vector code);
//! - `i64::from_str` checks overflow with 128-bit multiplications, which `wasm32` has no
//!   instruction for (a call to `__multi3` per digit);
//! - every loop iteration pays an epoch check (the host's deadline), so a byte-at-a-time loop
//!   pays it per byte.
//!
//! The helpers here work on 8-byte words (`u64` is native in WebAssembly) and avoid 128-bit
//! arithmetic. They are plain safe Rust and as fast natively, so a parser's unit tests and
//! native benchmarks run the same code as its component.

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The word at `b[i..i + 8]`, little-endian (callers check the bounds).
#[inline(always)]
fn word(b: &[u8], i: usize) -> u64 {
    let c = &b[i..i + 8];
    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// Up to 8 bytes as one word without a loop (a loop costs an epoch check per iteration in a
/// component): two overlapping 4-byte loads for 4..=8 bytes, three single bytes below. For a
/// given length the result tells any two inputs apart, so equal lengths and equal words mean
/// equal bytes; callers mix in or compare the length.
#[inline(always)]
pub fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(lo) | (u64::from(hi) << 32)
    } else if n > 0 {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    } else {
        0
    }
}

/// A mask whose lowest set bit marks the first zero byte of `v` (bits above it may be set
/// wrongly by the borrow, so only the lowest is meaningful).
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LOW_BITS) & !v & HIGH_BITS
}

/// The index of the first byte of `b` at or after `start` equal to one of `needles`, or
/// `b.len()` when there is none (also when `start` is past the end).
///
/// ```
/// use strata_plugin_sdk::scan::find_any;
/// assert_eq!(find_any(b"host=a,b c", 0, *b", "), 6);
/// assert_eq!(find_any(b"no stop here", 0, *b","), 12);
/// ```
#[inline(always)]
pub fn find_any<const N: usize>(b: &[u8], start: usize, needles: [u8; N]) -> usize {
    let mut i = start;
    while i + 8 <= b.len() {
        let w = word(b, i);
        let mut hits = 0;
        for c in needles {
            hits |= zero_bytes(w ^ (LOW_BITS * u64::from(c)));
        }
        if hits != 0 {
            // The lowest set bit of each needle's mask is a true match; the lowest over all of
            // them is the first match in the word.
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() {
        if needles.contains(&b[i]) {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Whether `a` and `b` hold the same bytes, compared 8 bytes at a time.
///
/// ```
/// use strata_plugin_sdk::scan::bytes_eq;
/// assert!(bytes_eq(b"region", b"region"));
/// assert!(!bytes_eq(b"region1", b"region2"));
/// ```
#[inline(always)]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n <= 8 {
        // Not `a == b`: that is a call to a byte-at-a-time `memcmp` in a component.
        return short_word(a) == short_word(b);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last, partial word: compare the final 8 bytes (overlapping ones already equal).
    i == n || word(a, n - 8) == word(b, n - 8)
}

/// Parses an optionally signed decimal integer (`-12`, `+7`, `42`) without 128-bit arithmetic.
/// `None` when `s` is not one, or it overflows `i64`.
///
/// ```
/// use strata_plugin_sdk::scan::parse_i64;
/// assert_eq!(parse_i64("1700000000000000000"), Some(1_700_000_000_000_000_000));
/// assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
/// assert_eq!(parse_i64("9223372036854775808"), None);
/// assert_eq!(parse_i64("12a"), None);
/// ```
#[inline(always)]
pub fn parse_i64(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() > 19 {
        // Leading zeros aside, too big: the standard parser decides.
        return s.parse().ok();
    }
    // Up to 19 digits fit in a u64 (< 1.85e19): no overflow checks. (Nanosecond timestamps
    // have 19 digits; `checked_mul` would be a 128-bit multiplication per digit.)
    let mut v: u64 = 0;
    let mut i = 0;
    while i + 8 <= digits.len() {
        v = v * 100_000_000 + eight_digits(word(digits, i))?;
        i += 8;
    }
    for &c in &digits[i..] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    if negative {
        if v <= i64::MAX as u64 + 1 {
            Some((v as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// The value of 8 ASCII digits loaded little-endian (the first digit in the lowest byte), or
/// `None` when one of them is not a digit. Three multiplications instead of eight steps.
#[inline(always)]
fn eight_digits(w: u64) -> Option<u64> {
    const NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it 3.
    if w & NIBBLES != ZEROS || (w.wrapping_add(0x0606_0606_0606_0606) & NIBBLES) != ZEROS {
        return None;
    }
    let d = w - ZEROS;
    // Each step joins neighbouring groups: the higher-order group sits in the lower bytes,
    // so group * (scale << width) + next lands in the upper half of each pair; shift it down.
    let pairs = (d.wrapping_mul(10 << 8 | 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_ffff_0000_ffff;
    Some(quads.wrapping_mul(10_000 << 32 | 1) >> 32)
}

/// Exact powers of ten as `f64` (every one up to 1e22 is representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a decimal floating-point number as `str::parse::<f64>` does (the same result for
/// every input), taking a shorter way for the common plain forms.
///
/// `[-+]digits[.digits]` with at most 15 significant digits is computed as an integer divided
/// by a power of ten: both are exact in an `f64`, so the one rounding of the division gives the
/// correctly rounded result. Everything else (exponents, `inf`, `NaN`, long mantissas) goes to
/// the standard parser.
///
/// ```
/// use strata_plugin_sdk::scan::parse_f64;
/// assert_eq!(parse_f64("12.5"), Some(12.5));
/// assert_eq!(parse_f64("-0.1"), Some(-0.1));
/// assert_eq!(parse_f64("1e3"), Some(1000.0));
/// assert_eq!(parse_f64("x"), None);
/// ```
#[inline(always)]
pub fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (negative, start) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut fraction_digits = 0usize;
    let mut seen_dot = false;
    for &c in &b[start..] {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
                fraction_digits += usize::from(seen_dot);
                if digits > 15 {
                    return s.parse().ok();
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return s.parse().ok(),
        }
    }
    if digits == 0 {
        // ".", "-", "" and the like: let the standard parser refuse them.
        return s.parse().ok();
    }
    // At most 15 digits: mantissa < 10^15 < 2^53 and fraction_digits <= 15, both exact.
    let v = mantissa as f64 / POW10[fraction_digits];
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_any_matches_a_byte_loop_at_every_offset_and_length() {
        let text = b"cpu,host=a\\ b,region=eu usage=1.5,x=2i 1700000000\nnext line=1\n";
        for start in 0..=text.len() + 1 {
            for end in start.min(text.len())..=text.len() {
                let b = &text[..end];
                let want = (start..b.len())
                    .find(|&i| b", =\\\n".contains(&b[i]))
                    .unwrap_or(b.len());
                assert_eq!(find_any(b, start, *b", =\\\n"), want, "start {start} end {end}");
            }
        }
    }

    #[test]
    fn find_any_is_not_fooled_by_bytes_next_to_needles() {
        // 0x2b and 0x2d sit either side of ','; 0xac has the high bit set.
        let b = [0x2b, 0x2d, 0xac, 0x01, 0x00, 0x80, 0xff, 0x2b, 0x2c, 0x2d];
        assert_eq!(find_any(&b, 0, *b","), 8);
        assert_eq!(find_any(&b, 0, [0]), 4);
        assert_eq!(find_any(&b, 5, [0]), b.len());
    }

    #[test]
    fn bytes_eq_agrees_with_slice_equality() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "aab",
            "aba",
            "abc",
            "abd",
            "abcd",
            "abce",
            "bbcd",
            "region",
            "region1",
            "region2",
            "regiom1",
            "12345678",
            "12345679",
            "02345678",
            "123456789",
            "123456780",
            "023456789",
        ];
        for a in words {
            for b in words {
                assert_eq!(bytes_eq(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn eight_digits_reads_every_position_and_refuses_non_digits() {
        for s in ["00000000", "12345678", "99999999", "10000000", "00000001", "90817263"] {
            assert_eq!(eight_digits(word(s.as_bytes(), 0)), s.parse().ok(), "{s}");
        }
        for bad in [b'/', b':', b' ', b'a', 0x80, 0xb0, 0] {
            for pos in 0..8 {
                let mut b = *b"12345678";
                b[pos] = bad;
                assert_eq!(eight_digits(word(&b, 0)), None, "{bad:#x} at {pos}");
            }
        }
    }

    #[test]
    fn parse_i64_agrees_with_std() {
        let cases = [
            "0",
            "-0",
            "+5",
            "123456789012345678",
            "999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "9999999999999999999",
            "-9999999999999999999",
            "18446744073709551615",
            "00000000000000000000001",
            "1700000000000000000",
            "1700000000000000000x",
            "17000000a0000000000",
            "12345678",
            "123456789",
            "-1234567812345678",
            "",
            "-",
            "+",
            "1-",
            "1 ",
            " 1",
            "0x10",
            "١",
        ];
        for s in cases {
            assert_eq!(parse_i64(s), s.parse::<i64>().ok(), "{s:?}");
        }
    }

    #[test]
    fn parse_f64_agrees_with_std_bit_for_bit() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "1.5",
            "-2.25",
            "+3",
            "0.1",
            "0.3",
            "123456789012345",
            "12345678901234.5",
            "1234567890123456",
            "0.000000000000001",
            "9007199254740993",
            "1e3",
            "1E-3",
            "inf",
            "-inf",
            "NaN",
            "nan",
            "infinity",
            ".5",
            "5.",
            ".",
            "-",
            "",
            "1.2.3",
            "1,5",
            " 1",
            "1 ",
            "0x1",
            "١",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every value with up to 6 digits around the point, signed and not.
        for m in (0..1_000_000u64).step_by(997) {
            for point in 0..=6 {
                let digits = format!("{m:06}");
                let (int, frac) = digits.split_at(6 - point);
                cases.push(format!("{int}.{frac}"));
                cases.push(format!("-{int}.{frac}"));
            }
        }
        for s in &cases {
            let (ours, std) = (parse_f64(s), s.parse::<f64>().ok());
            match (ours, std) {
                (Some(a), Some(b)) if a.is_nan() && b.is_nan() => {}
                (Some(a), Some(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{s:?}"),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{s:?}"),
            }
        }
    }
}
