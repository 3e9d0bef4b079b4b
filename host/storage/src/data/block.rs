//! A block: the samples of one series, sorted by timestamp, at most [`MAX_ROWS_PER_BLOCK`]
//! rows, and its fixed-size header (FORMATS.md §1.5).

use crate::encoding::varint::{BeReader, put_zz_i16, put_zz_i64};
use crate::encoding::{self, MarshalType, decimal};
use crate::error::{Result, StorageError};
use crate::tsid::{TSID_SIZE, Tsid};

/// Most samples one block holds when written.
pub const MAX_ROWS_PER_BLOCK: usize = 8 * 1024;
/// The size an index block may reach before it is flushed.
pub const MAX_BLOCK_SIZE: usize = 8 * MAX_ROWS_PER_BLOCK;
/// Readers accept up to twice the writer's limits, like the format they follow.
const MAX_ROWS_ACCEPTED: u32 = 2 * MAX_ROWS_PER_BLOCK as u32;
/// Marshaled size of a [`BlockHeader`].
pub const BLOCK_HEADER_SIZE: usize = TSID_SIZE + 8 * 5 + 4 * 3 + 2 + 3;

/// Where a block's encoded timestamps and values are and how to decode them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// The series.
    pub tsid: Tsid,
    /// First timestamp (also the first value of the timestamp codec).
    pub min_timestamp: i64,
    /// Last timestamp.
    pub max_timestamp: i64,
    /// First value mantissa, kept out of the value payload.
    pub first_value: i64,
    /// Offset in timestamps.bin.
    pub timestamps_offset: u64,
    /// Offset in values.bin.
    pub values_offset: u64,
    /// Encoded timestamps size.
    pub timestamps_size: u32,
    /// Encoded values size.
    pub values_size: u32,
    /// Samples in the block, > 0.
    pub rows_count: u32,
    /// Decimal exponent shared by all values ([`decimal::RAW_SCALE`] for raw IEEE bits).
    pub scale: i16,
    /// Timestamp codec.
    pub timestamps_marshal_type: MarshalType,
    /// Value codec.
    pub values_marshal_type: MarshalType,
    /// 64 = lossless. Timestamps are always stored losslessly.
    pub precision_bits: u8,
}

impl BlockHeader {
    /// Appends the [`BLOCK_HEADER_SIZE`]-byte form.
    pub fn marshal(&self, dst: &mut Vec<u8>) {
        self.tsid.marshal(dst);
        put_zz_i64(dst, self.min_timestamp);
        put_zz_i64(dst, self.max_timestamp);
        put_zz_i64(dst, self.first_value);
        dst.extend_from_slice(&self.timestamps_offset.to_be_bytes());
        dst.extend_from_slice(&self.values_offset.to_be_bytes());
        dst.extend_from_slice(&self.timestamps_size.to_be_bytes());
        dst.extend_from_slice(&self.values_size.to_be_bytes());
        dst.extend_from_slice(&self.rows_count.to_be_bytes());
        put_zz_i16(dst, self.scale);
        dst.push(self.timestamps_marshal_type as u8);
        dst.push(self.values_marshal_type as u8);
        dst.push(self.precision_bits);
    }

    /// Parses and validates one header.
    pub fn unmarshal(src: &[u8]) -> Result<BlockHeader, String> {
        let (tsid, rest) = Tsid::unmarshal(src).ok_or("truncated block header")?;
        let mut r = BeReader::new(rest);
        let short = || "truncated block header".to_string();
        let h = BlockHeader {
            tsid,
            min_timestamp: r.zz_i64().ok_or_else(short)?,
            max_timestamp: r.zz_i64().ok_or_else(short)?,
            first_value: r.zz_i64().ok_or_else(short)?,
            timestamps_offset: r.u64().ok_or_else(short)?,
            values_offset: r.u64().ok_or_else(short)?,
            timestamps_size: r.u32().ok_or_else(short)?,
            values_size: r.u32().ok_or_else(short)?,
            rows_count: r.u32().ok_or_else(short)?,
            scale: r.zz_i16().ok_or_else(short)?,
            timestamps_marshal_type: marshal_type(r.u8().ok_or_else(short)?)?,
            values_marshal_type: marshal_type(r.u8().ok_or_else(short)?)?,
            precision_bits: r.u8().ok_or_else(short)?,
        };
        h.validate()?;
        Ok(h)
    }

    fn validate(&self) -> Result<(), String> {
        if self.rows_count == 0 || self.rows_count > MAX_ROWS_ACCEPTED {
            return Err(format!(
                "block rows count {} outside 1..={MAX_ROWS_ACCEPTED}",
                self.rows_count
            ));
        }
        if self.min_timestamp > self.max_timestamp {
            return Err(format!(
                "block min timestamp {} > max {}",
                self.min_timestamp, self.max_timestamp
            ));
        }
        // A varint never exceeds 10 bytes, and zstd is kept only when it is smaller.
        let max_size = self.rows_count as u64 * 10 + 64;
        if u64::from(self.timestamps_size) > max_size || u64::from(self.values_size) > max_size {
            return Err(format!(
                "block sizes {}/{} too large for {} rows",
                self.timestamps_size, self.values_size, self.rows_count
            ));
        }
        if !(1..=64).contains(&self.precision_bits) {
            return Err(format!("precision bits {} outside 1..=64", self.precision_bits));
        }
        Ok(())
    }
}

fn marshal_type(b: u8) -> Result<MarshalType, String> {
    MarshalType::from_u8(b).ok_or_else(|| format!("unknown marshal type {b}"))
}

thread_local! {
    // Blocks built from raw rows are often a handful of samples: reuse the scratch buffer.
    static MANTISSAS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes one block's samples (`ts` sorted, 1..=[`MAX_ROWS_PER_BLOCK`] rows), appending the
/// payloads to `ts_out` and `values_out`. The returned header has zero offsets: the part
/// writer fills them in.
pub fn encode_block(
    tsid: &Tsid,
    ts: &[i64],
    values: &[f64],
    ts_out: &mut Vec<u8>,
    values_out: &mut Vec<u8>,
) -> Result<BlockHeader> {
    if ts.is_empty() || ts.len() != values.len() || ts.len() > MAX_ROWS_PER_BLOCK {
        return Err(StorageError::InvalidInput(format!(
            "block with {} timestamps and {} values",
            ts.len(),
            values.len()
        )));
    }
    let ts_start = ts_out.len();
    let v_start = values_out.len();
    let (ts_mt, min_ts) = encoding::marshal_timestamps(ts_out, ts)?;
    let (scale, (v_mt, first_value)) = MANTISSAS.with(|m| -> Result<_> {
        let mut mantissas = m.borrow_mut();
        mantissas.clear();
        let scale = decimal::floats_to_decimals(&mut mantissas, values);
        Ok((scale, encoding::marshal_int64s(values_out, &mantissas, 64)?))
    })?;
    Ok(BlockHeader {
        tsid: *tsid,
        min_timestamp: min_ts,
        max_timestamp: ts[ts.len() - 1],
        first_value,
        timestamps_offset: 0,
        values_offset: 0,
        timestamps_size: (ts_out.len() - ts_start) as u32,
        values_size: (values_out.len() - v_start) as u32,
        rows_count: ts.len() as u32,
        scale,
        timestamps_marshal_type: ts_mt,
        values_marshal_type: v_mt,
        precision_bits: 64,
    })
}

/// Decodes a block's payloads, appending to `ts` and `values`. Checks that timestamps are
/// sorted and inside the header's range.
pub fn decode_block(
    h: &BlockHeader,
    ts_src: &[u8],
    values_src: &[u8],
    ts: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<(), String> {
    let n = h.rows_count as usize;
    let start = ts.len();
    encoding::unmarshal_int64s(ts, ts_src, h.timestamps_marshal_type, h.min_timestamp, n)?;
    let decoded = &ts[start..];
    if decoded.windows(2).any(|w| w[1] < w[0]) || decoded.last() != Some(&h.max_timestamp) {
        return Err(format!(
            "block timestamps of {:?} are not sorted or do not match the header",
            h.tsid
        ));
    }
    let mut mantissas = Vec::with_capacity(n);
    encoding::unmarshal_int64s(&mut mantissas, values_src, h.values_marshal_type, h.first_value, n)?;
    decimal::decimals_to_floats(values, &mantissas, h.scale);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_rejects_garbage() {
        let tsid = Tsid {
            metric_id: 42,
            ..Default::default()
        };
        let ts: Vec<i64> = (0..100)
            .map(|i| 1_700_000_000_000 + i * 15_000 + (i * 7) % 13)
            .collect();
        let vals: Vec<f64> = (0..100).map(|i| f64::from(i) * 1.25).collect();
        let (mut tb, mut vb) = (Vec::new(), Vec::new());
        let h = encode_block(&tsid, &ts, &vals, &mut tb, &mut vb).unwrap();
        let mut buf = Vec::new();
        h.marshal(&mut buf);
        assert_eq!(buf.len(), BLOCK_HEADER_SIZE);
        assert_eq!(BlockHeader::unmarshal(&buf).unwrap(), h);
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        decode_block(&h, &tb, &vb, &mut t2, &mut v2).unwrap();
        assert_eq!(t2, ts);
        assert_eq!(v2, vals);
        for cut in 0..buf.len() {
            assert!(BlockHeader::unmarshal(&buf[..cut]).is_err());
        }
        let mut bad = buf.clone();
        bad[BLOCK_HEADER_SIZE - 2] = 9; // values marshal type
        assert!(BlockHeader::unmarshal(&bad).is_err());
        // Timestamps not matching the header are caught.
        let mut h2 = h;
        h2.max_timestamp += 1;
        assert!(decode_block(&h2, &tb, &vb, &mut Vec::new(), &mut Vec::new()).is_err());
        assert!(encode_block(&tsid, &[2, 1], &[1.0, 2.0], &mut tb, &mut vb).is_err());
        assert!(encode_block(&tsid, &[], &[], &mut tb, &mut vb).is_err());
    }
}
