//! The version 1 record format (segments written before the compact format): no segment header,
//! one record per series per write, `u32 LE payload length | u64 LE xxh64(payload) | payload`,
//! the payload being `u32 account | u32 project | varint label count | {varint len, name,
//! varint len, value}* | varint n | n × i64 LE timestamps | n × f64 LE values`.
//!
//! Only read now (an upgrade with a non-empty WAL replays its old segments); the encoder is
//! kept for the tests that check exactly that.

use super::format::{Reader, SegmentVisitor, frame};
use crate::Tenant;
use crate::error::Result;
use crate::index::Label;

/// Largest payload accepted when reading (a write of one series is far smaller).
const MAX_RECORD: usize = 256 << 20;

/// Visits the records of a v1 segment's bytes in order. Returns whether a torn or corrupt
/// record ended it early.
pub(crate) fn visit(bytes: &[u8], visit: &mut SegmentVisitor<'_>) -> Result<bool> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((payload, tail)) = frame(rest, MAX_RECORD) else {
            return Ok(true);
        };
        if !decode(payload, visit)? {
            return Ok(true);
        }
        rest = tail;
    }
    Ok(false)
}

/// Decodes one payload and hands it on; `Ok(false)` if it is malformed.
fn decode(p: &[u8], visit: &mut SegmentVisitor<'_>) -> Result<bool> {
    let Some((tenant, labels, timestamps, values)) = parse(p) else {
        return Ok(false);
    };
    let labels: Vec<Label<'_>> = labels.iter().map(|&(name, value)| Label { name, value }).collect();
    visit(tenant, &labels, &timestamps, &values)?;
    Ok(true)
}

type Parsed<'a> = (Tenant, Vec<(&'a str, &'a str)>, Vec<i64>, Vec<f64>);

fn parse(p: &[u8]) -> Option<Parsed<'_>> {
    let mut r = Reader::new(p);
    let tenant = Tenant {
        account_id: r.u32_le()?,
        project_id: r.u32_le()?,
    };
    let nl = r.varint()?;
    let mut labels = Vec::with_capacity(nl.min(256) as usize);
    for _ in 0..nl {
        labels.push((r.str()?, r.str()?));
    }
    let n = usize::try_from(r.varint()?).ok()?;
    if n.checked_mul(16)? != r.remaining() {
        return None;
    }
    let mut timestamps = Vec::with_capacity(n);
    for _ in 0..n {
        timestamps.push(r.u64_le()? as i64);
    }
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(f64::from_bits(r.u64_le()?));
    }
    Some((tenant, labels, timestamps, values))
}

/// Appends one framed v1 record to `dst`, exactly as the v1 writer did.
#[cfg(test)]
pub(crate) fn encode(dst: &mut Vec<u8>, tenant: Tenant, labels: &[Label<'_>], timestamps: &[i64], values: &[f64]) {
    use super::format::{RECORD_HEADER, put_varint};
    let start = dst.len();
    dst.extend_from_slice(&[0; RECORD_HEADER]);
    dst.extend_from_slice(&tenant.account_id.to_le_bytes());
    dst.extend_from_slice(&tenant.project_id.to_le_bytes());
    put_varint(dst, labels.len() as u64);
    for l in labels {
        put_varint(dst, l.name.len() as u64);
        dst.extend_from_slice(l.name.as_bytes());
        put_varint(dst, l.value.len() as u64);
        dst.extend_from_slice(l.value.as_bytes());
    }
    let n = timestamps.len().min(values.len());
    put_varint(dst, n as u64);
    for t in &timestamps[..n] {
        dst.extend_from_slice(&t.to_le_bytes());
    }
    for v in &values[..n] {
        dst.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    super::format::seal_record(dst, start);
}
