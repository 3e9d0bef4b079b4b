//! Sample compression (FORMATS.md §0 and §2): zig-zag varints, floats to decimal mantissas,
//! and the int64 array codec that picks a [`MarshalType`] per block.
//!
//! Decoders take untrusted bytes: they return `Err(String)` describing what is wrong and never
//! panic; the part reader wraps that into `StorageError::Corrupt` with the part's path.

pub mod decimal;
pub mod nearest_delta;
pub mod packed;
pub mod varint;

use crate::error::{Result, StorageError};

/// How an int64 array is stored (FORMATS.md §2.1). The numbers are on-disk values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MarshalType {
    /// zstd over a [`MarshalType::NearestDelta2`] payload.
    ZstdNearestDelta2 = 1,
    /// One varint: the constant difference. The first value is in the header.
    DeltaConst = 2,
    /// No payload: every value equals the first.
    Const = 3,
    /// zstd over a [`MarshalType::NearestDelta`] payload.
    ZstdNearestDelta = 4,
    /// Second differences (counters).
    NearestDelta2 = 5,
    /// First differences (gauges).
    NearestDelta = 6,
    /// Our own: bit-packed first differences ([`packed`]).
    PackedDelta = 7,
    /// Our own: bit-packed second differences ([`packed`]).
    PackedDelta2 = 8,
}

impl MarshalType {
    /// Parses the on-disk byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::ZstdNearestDelta2,
            2 => Self::DeltaConst,
            3 => Self::Const,
            4 => Self::ZstdNearestDelta,
            5 => Self::NearestDelta2,
            6 => Self::NearestDelta,
            7 => Self::PackedDelta,
            8 => Self::PackedDelta2,
            _ => return None,
        })
    }
}

/// Plain payloads smaller than this are not worth a zstd frame.
const MIN_COMPRESSIBLE: usize = 128;

/// zstd level for a payload of `n` items (FORMATS.md §1.9).
fn payload_level(n: usize) -> i32 {
    match n {
        0..=64 => 1,
        65..=256 => 2,
        257..=1024 => 3,
        1025..=4096 => 4,
        _ => 5,
    }
}

/// Counters (mostly non-decreasing, few resets) get delta-of-delta; everything else delta.
fn is_gauge(a: &[i64]) -> bool {
    let mut resets = 0usize;
    let mut prev = match a.first() {
        Some(&v) => v,
        None => return false,
    };
    if prev < 0 {
        return true;
    }
    for &v in &a[1..] {
        if v < 0 {
            return true;
        }
        if v < prev {
            if v > prev / 8 {
                // A small drop is a gauge going down, not a counter reset.
                return true;
            }
            resets += 1;
        }
        prev = v;
    }
    resets > 2 && resets > a.len() / 8
}

/// Appends the encoding of `a` (non-empty) to `dst` and returns its type and the first value,
/// which the caller keeps in the block header. `precision_bits` is 1..=64; 64 is lossless.
pub fn marshal_int64s(dst: &mut Vec<u8>, a: &[i64], precision_bits: u8) -> Result<(MarshalType, i64)> {
    let Some(&first) = a.first() else {
        return Err(StorageError::InvalidInput("cannot encode an empty array".into()));
    };
    if !(1..=64).contains(&precision_bits) {
        return Err(StorageError::InvalidInput(format!(
            "precision bits {precision_bits} outside 1..=64"
        )));
    }
    if a.iter().all(|&v| v == first) {
        return Ok((MarshalType::Const, first));
    }
    let d = a[1].wrapping_sub(first);
    if a.windows(2).all(|w| w[1].wrapping_sub(w[0]) == d) {
        varint::put_varint(dst, d);
        return Ok((MarshalType::DeltaConst, first));
    }
    let start = dst.len();
    let (plain, zstd_type) = if is_gauge(a) {
        let pb = if precision_bits < 6 {
            precision_bits + 2
        } else {
            precision_bits
        };
        nearest_delta::marshal_nearest_delta(dst, a, pb);
        (MarshalType::NearestDelta, MarshalType::ZstdNearestDelta)
    } else {
        nearest_delta::marshal_nearest_delta2(dst, a, precision_bits);
        // Counters with irregular increments (bytes, packets) compress better as first
        // differences: a second difference of two random increments has more entropy than
        // either. Keep whichever payload is smaller; the type byte tells the reader.
        let mut alt = Vec::with_capacity(dst.len() - start);
        nearest_delta::marshal_nearest_delta(&mut alt, a, precision_bits);
        if alt.len() < dst.len() - start {
            dst.truncate(start);
            dst.extend_from_slice(&alt);
            (MarshalType::NearestDelta, MarshalType::ZstdNearestDelta)
        } else {
            (MarshalType::NearestDelta2, MarshalType::ZstdNearestDelta2)
        }
    };
    let plain_len = dst.len() - start;
    let mut best = (plain, plain_len);
    if plain_len >= MIN_COMPRESSIBLE
        && let Ok(z) = zstd_compress(&dst[start..], payload_level(a.len()))
        && (z.len() as f64) < 0.9 * plain_len as f64
    {
        dst.truncate(start);
        dst.extend_from_slice(&z);
        best = (zstd_type, z.len());
    }
    // Lossless blocks also try bit-packed first and second differences and keep the smallest.
    // Sizes are computed first; only a winner is built.
    if precision_bits == 64 && a.len() > 2 {
        let n = a.len() - 1;
        let d1 = |i: usize| a[i + 1].wrapping_sub(a[i]);
        let d2 = |i: usize| if i == 0 { d1(0) } else { d1(i).wrapping_sub(d1(i - 1)) };
        let l1 = packed::packed_len(n, d1);
        let l2 = if best.0 == MarshalType::NearestDelta || best.0 == MarshalType::ZstdNearestDelta {
            // A gauge: second differences of a random walk are never smaller.
            usize::MAX
        } else {
            packed::packed_len(n, d2)
        };
        if l1.min(l2) < best.1 {
            let (mt, d): (MarshalType, Vec<i64>) = if l1 <= l2 {
                (MarshalType::PackedDelta, (0..n).map(d1).collect())
            } else {
                (MarshalType::PackedDelta2, (0..n).map(d2).collect())
            };
            dst.truncate(start);
            packed::pack(dst, &d);
            best.0 = mt;
        }
    }
    Ok((best.0, first))
}

/// Decodes `n` values written by [`marshal_int64s`], appending them to `dst`.
pub fn unmarshal_int64s(dst: &mut Vec<i64>, src: &[u8], mt: MarshalType, first: i64, n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("zero items".into());
    }
    match mt {
        MarshalType::Const => {
            if !src.is_empty() {
                return Err(format!("const block with {} payload bytes", src.len()));
            }
            dst.extend(std::iter::repeat_n(first, n));
            Ok(())
        }
        MarshalType::DeltaConst => {
            let mut pos = 0;
            let d = varint::get_varint(src, &mut pos).ok_or("truncated delta-const payload")?;
            if pos != src.len() {
                return Err("trailing bytes after delta-const payload".into());
            }
            let mut v = first;
            dst.reserve(n);
            for _ in 0..n {
                dst.push(v);
                v = v.wrapping_add(d);
            }
            Ok(())
        }
        MarshalType::NearestDelta => nearest_delta::unmarshal_nearest_delta(dst, src, first, n),
        MarshalType::NearestDelta2 => nearest_delta::unmarshal_nearest_delta2(dst, src, first, n),
        MarshalType::PackedDelta | MarshalType::PackedDelta2 => {
            let start = dst.len();
            dst.push(first);
            packed::unpack(dst, src, n - 1)?;
            let vals = &mut dst[start..];
            if mt == MarshalType::PackedDelta2 {
                // Second differences → first differences (vals[1] already is the first one).
                for i in 2..vals.len() {
                    vals[i] = vals[i].wrapping_add(vals[i - 1]);
                }
            }
            // First differences → values.
            for i in 1..vals.len() {
                vals[i] = vals[i].wrapping_add(vals[i - 1]);
            }
            Ok(())
        }
        MarshalType::ZstdNearestDelta | MarshalType::ZstdNearestDelta2 => {
            // A varint is at most 10 bytes: anything larger is a lie (or a zip bomb).
            let plain = zstd_decompress(src, n.saturating_mul(10) + 16).map_err(|e| format!("zstd: {e}"))?;
            if mt == MarshalType::ZstdNearestDelta {
                nearest_delta::unmarshal_nearest_delta(dst, &plain, first, n)
            } else {
                nearest_delta::unmarshal_nearest_delta2(dst, &plain, first, n)
            }
        }
    }
}

thread_local! {
    // Creating a zstd context costs more than compressing one block; keep one per thread.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_compress(src: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some((l, comp)) => {
                if *l != level {
                    comp.set_compression_level(level)?;
                    *l = level;
                }
            }
            None => *c = Some((level, zstd::bulk::Compressor::new(level)?)),
        }
        match c.as_mut() {
            Some((_, comp)) => comp.compress(src),
            None => zstd::bulk::compress(src, level),
        }
    })
}

fn zstd_decompress(src: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    // Allocate what the frame declares, never more than the caller allows: a damaged header
    // must not turn into a huge allocation.
    let declared = zstd::zstd_safe::get_frame_content_size(src)
        .map_err(|_| std::io::Error::other("bad zstd frame header"))?
        .ok_or_else(|| std::io::Error::other("zstd frame without content size"))?;
    if declared > limit as u64 {
        return Err(std::io::Error::other(format!(
            "zstd frame declares {declared} bytes, limit {limit}"
        )));
    }
    let limit = declared as usize;
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(dec) => dec.decompress(src, limit),
            None => zstd::bulk::decompress(src, limit),
        }
    })
}

/// Encodes timestamps, which must be sorted ascending (always lossless).
pub fn marshal_timestamps(dst: &mut Vec<u8>, ts: &[i64]) -> Result<(MarshalType, i64)> {
    if ts.windows(2).any(|w| w[1] < w[0]) {
        return Err(StorageError::InvalidInput("timestamps are not sorted".into()));
    }
    marshal_int64s(dst, ts, 64)
}

/// zstd-compresses a whole buffer (index blocks, the metaindex).
pub fn compress(src: &[u8], level: i32) -> Vec<u8> {
    // Compressing an in-memory buffer only fails on allocation failure or a bad level; storing
    // the data uncompressed is not an option for these formats, so fall back to level 1.
    zstd_compress(src, level)
        .or_else(|_| zstd_compress(src, 1))
        .unwrap_or_default()
}

/// Decompresses a buffer written by [`compress`], refusing more than `limit` bytes of output.
pub fn decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    zstd_decompress(src, limit).map_err(|e| format!("zstd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(a: &[i64]) -> MarshalType {
        let mut buf = Vec::new();
        let (mt, first) = marshal_int64s(&mut buf, a, 64).unwrap();
        let mut out = Vec::new();
        unmarshal_int64s(&mut out, &buf, mt, first, a.len()).unwrap();
        assert_eq!(out, a);
        // Garbled payloads decode to an error or some values, never a panic.
        for cut in 0..buf.len().min(64) {
            let mut o = Vec::new();
            let _ = unmarshal_int64s(&mut o, &buf[..cut], mt, first, a.len());
        }
        mt
    }

    #[test]
    fn picks_types() {
        assert_eq!(roundtrip(&[5; 100]), MarshalType::Const);
        assert_eq!(
            roundtrip(&(0..100).map(|i| 1000 + 15_000 * i).collect::<Vec<_>>()),
            MarshalType::DeltaConst
        );
        let counter: Vec<i64> = (0..1000).map(|i| i * i / 7 + i).collect();
        let mt = roundtrip(&counter);
        assert!(
            matches!(mt, MarshalType::NearestDelta2 | MarshalType::ZstdNearestDelta2),
            "{mt:?}"
        );
        let gauge: Vec<i64> = (0..1000).map(|i| ((i * 7919) % 1000) - 500).collect();
        let mt = roundtrip(&gauge);
        assert!(
            matches!(mt, MarshalType::NearestDelta | MarshalType::ZstdNearestDelta),
            "{mt:?}"
        );
        assert_eq!(roundtrip(&[i64::MIN, i64::MAX, 0, -1]), MarshalType::NearestDelta);
        // Memory in 4 KiB pages moving randomly: the shared low zero bits make packing win.
        let mut x = 7u64;
        let pages: Vec<i64> = (0..1000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (1_000_000 + (x >> 58) as i64) * 4096
            })
            .collect();
        assert_eq!(roundtrip(&pages), MarshalType::PackedDelta);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(marshal_int64s(&mut Vec::new(), &[], 64).is_err());
        assert!(marshal_int64s(&mut Vec::new(), &[1, 2], 0).is_err());
        assert!(marshal_timestamps(&mut Vec::new(), &[3, 2]).is_err());
        assert!(unmarshal_int64s(&mut Vec::new(), &[1], MarshalType::Const, 0, 3).is_err());
        assert!(unmarshal_int64s(&mut Vec::new(), &[], MarshalType::Const, 0, 0).is_err());
        assert!(unmarshal_int64s(&mut Vec::new(), &[1, 2, 3], MarshalType::ZstdNearestDelta, 0, 3).is_err());
        assert_eq!(MarshalType::from_u8(0), None);
        assert_eq!(MarshalType::from_u8(9), None);
    }

    proptest! {
        #[test]
        fn any_array_roundtrips(a in proptest::collection::vec(any::<i64>(), 1..300)) {
            roundtrip(&a);
        }

        #[test]
        fn sorted_timestamps_roundtrip(start in 0i64..2_000_000_000_000, steps in proptest::collection::vec(0i64..30_000, 1..2000)) {
            let mut t = start;
            let ts: Vec<i64> = steps.iter().map(|s| { t += s; t }).collect();
            let mut buf = Vec::new();
            let (mt, first) = marshal_timestamps(&mut buf, &ts).unwrap();
            let mut out = Vec::new();
            unmarshal_int64s(&mut out, &buf, mt, first, ts.len()).unwrap();
            prop_assert_eq!(out, ts);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), mt in 1u8..=8, n in 1usize..50) {
            let mt = MarshalType::from_u8(mt).unwrap();
            let _ = unmarshal_int64s(&mut Vec::new(), &b, mt, 7, n);
        }
    }
}
