//! Prometheus remote-write 1.0 and 2.0 decoding, straight from the wire into a [`MetricBatch`].
//!
//! The decoder reads protobuf fields itself instead of going through the prost types in
//! [`crate::prompb`]: that avoids a `String` per label and a `Vec` per series, which is most of
//! the cost of a naive decode. The prost types remain the reference for tests.
//!
//! Decisions (documented in docs/INGEST.md as well):
//! - **Native histograms are refused with 400** in both versions. Converting exponential buckets
//!   into classic `le` series would invent bucket boundaries nobody configured; a sender can be
//!   set not to send them (`send_native_histograms: false`, the Prometheus default).
//! - Exemplars are accepted and dropped (the storage has no place for them), so
//!   `X-Prometheus-Remote-Write-Exemplars-Written` honestly answers 0.
//! - Metadata (1.0 `metadata`, 2.0 per-series `metadata`) and 2.0 created timestamps are
//!   checked for well-formedness and accepted, and not stored.

use crate::batch::{MetricBatch, RawText};
use crate::error::{IngestError, RejectReason};
use crate::wire::{FIXED64, LEN, Reader, VARINT, WireError, utf8};

/// Which remote-write message a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteWriteVersion {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

impl RemoteWriteVersion {
    /// Picks the message from the `Content-Type` header, as the 2.0 spec describes: no header or
    /// plain `application/x-protobuf` is 1.0; `proto=` selects explicitly; anything else is
    /// refused with 415.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, IngestError> {
        let Some(value) = value else {
            return Ok(RemoteWriteVersion::V1);
        };
        let mut parts = value.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        if media != "application/x-protobuf" {
            return Err(IngestError::new(
                RejectReason::UnsupportedMediaType,
                format!("unsupported Content-Type \"{value}\" for remote write; use application/x-protobuf"),
            ));
        }
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("proto")
            {
                return match v.trim().trim_matches('"') {
                    "prometheus.WriteRequest" => Ok(RemoteWriteVersion::V1),
                    "io.prometheus.write.v2.Request" => Ok(RemoteWriteVersion::V2),
                    other => Err(IngestError::new(
                        RejectReason::UnsupportedMediaType,
                        format!(
                            "unsupported remote-write message proto={other}; supported: prometheus.WriteRequest, io.prometheus.write.v2.Request"
                        ),
                    )),
                };
            }
        }
        Ok(RemoteWriteVersion::V1)
    }
}

/// Counts of what one request carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteWriteStats {
    /// Float samples decoded (all go into the batch).
    pub samples: usize,
    /// Native histogram samples seen (refused; always 0 on success).
    pub histograms: usize,
    /// Exemplars seen (dropped).
    pub exemplars: usize,
    /// Metadata entries seen (dropped).
    pub metadata: usize,
}

fn protobuf_error(err: WireError, context: &str) -> IngestError {
    IngestError::new(
        RejectReason::Protobuf,
        format!("cannot parse remote-write protobuf: {context}: {err}"),
    )
}

fn histograms_refused(series: usize) -> IngestError {
    IngestError::new(
        RejectReason::NativeHistogram,
        format!(
            "series #{series} carries native histogram samples, which this server does not accept; configure the sender not to send native histograms"
        ),
    )
}

/// Decodes an uncompressed remote-write message of either version into `batch` (appending).
pub fn decode(
    raw: &[u8],
    version: RemoteWriteVersion,
    batch: &mut MetricBatch,
) -> Result<RemoteWriteStats, IngestError> {
    match version {
        RemoteWriteVersion::V1 => decode_v1(raw, batch),
        RemoteWriteVersion::V2 => decode_v2(raw, batch),
    }
}

/// Decodes an uncompressed `prometheus.WriteRequest` into `batch` (appending).
pub fn decode_v1(raw: &[u8], batch: &mut MetricBatch) -> Result<RemoteWriteStats, IngestError> {
    let mut text = batch.begin_raw();
    let result = decode_v1_fields(raw, batch, &mut text);
    let utf8 = batch.finish_raw(text);
    let stats = result?;
    utf8.map_err(|(series, label)| {
        IngestError::new(
            RejectReason::InvalidLabelValue,
            format!("series #{series}: label #{label} (name or value) is not valid UTF-8"),
        )
    })?;
    Ok(stats)
}

fn decode_v1_fields(raw: &[u8], batch: &mut MetricBatch, text: &mut RawText) -> Result<RemoteWriteStats, IngestError> {
    let mut stats = RemoteWriteStats::default();
    let mut r = Reader::new(raw, 0);
    let mut series = 0usize;
    while !r.at_end() {
        let (field, wt) = r.key().map_err(|e| protobuf_error(e, "WriteRequest"))?;
        match field {
            1 => {
                r.expect(wt, LEN)
                    .map_err(|e| protobuf_error(e, "WriteRequest.timeseries"))?;
                let (msg, base) = r.bytes().map_err(|e| protobuf_error(e, "WriteRequest.timeseries"))?;
                decode_v1_series(msg, base, series, batch, text, &mut stats)?;
                series += 1;
            }
            3 => {
                r.expect(wt, LEN)
                    .map_err(|e| protobuf_error(e, "WriteRequest.metadata"))?;
                let (msg, base) = r.bytes().map_err(|e| protobuf_error(e, "WriteRequest.metadata"))?;
                check_v1_metadata(msg, base).map_err(|e| protobuf_error(e, "MetricMetadata"))?;
                stats.metadata += 1;
            }
            _ => r.skip(wt).map_err(|e| protobuf_error(e, "WriteRequest"))?,
        }
    }
    Ok(stats)
}

fn decode_v1_series(
    msg: &[u8],
    base: usize,
    index: usize,
    batch: &mut MetricBatch,
    text: &mut RawText,
    stats: &mut RemoteWriteStats,
) -> Result<(), IngestError> {
    let ctx = |e: WireError| protobuf_error(e, &format!("series #{index}"));
    let mut r = Reader::new(msg, base);
    while !r.at_end() {
        let (field, wt) = r.key().map_err(ctx)?;
        match field {
            1 => {
                r.expect(wt, LEN).map_err(ctx)?;
                let (label, lbase) = r.bytes().map_err(ctx)?;
                let (name, value) = decode_label(label, lbase).map_err(ctx)?;
                batch.push_label_raw(text, name, value)?;
            }
            2 => {
                r.expect(wt, LEN).map_err(ctx)?;
                let (sample, sbase) = r.bytes().map_err(ctx)?;
                let (ts, v) = decode_sample(sample, sbase).map_err(ctx)?;
                batch.push_sample(ts, v);
                stats.samples += 1;
            }
            3 => {
                r.skip(wt).map_err(ctx)?;
                stats.exemplars += 1;
            }
            4 => {
                stats.histograms += 1;
                return Err(histograms_refused(index));
            }
            _ => r.skip(wt).map_err(ctx)?,
        }
    }
    batch.finish_series()?;
    Ok(())
}

/// A `Label` message as raw bytes; UTF-8 is checked for the whole request at once.
#[inline]
fn decode_label(msg: &[u8], base: usize) -> Result<(&[u8], &[u8]), WireError> {
    // Fast path: the canonical encoding `0x0a len name 0x12 len value` with one-byte lengths,
    // which is what senders produce for all but very long labels.
    if let [0x0a, name_len, rest @ ..] = msg {
        let name_len = *name_len as usize;
        if name_len < 0x80
            && let Some((name, rest)) = rest.split_at_checked(name_len)
            && let [0x12, value_len, value @ ..] = rest
            && (*value_len as usize) == value.len()
        {
            return Ok((name, value));
        }
    }
    let mut r = Reader::new(msg, base);
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match field {
            1 | 2 => {
                r.expect(wt, LEN)?;
                let (bytes, _) = r.bytes()?;
                if field == 1 {
                    name = bytes;
                } else {
                    value = bytes;
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((name, value))
}

/// A `Sample` message (same layout in 1.0 and 2.0): value is field 1 (double), timestamp 2.
#[inline]
fn decode_sample(msg: &[u8], base: usize) -> Result<(i64, f64), WireError> {
    // Fast path: the canonical encoding (value, then a timestamp varint) as Prometheus writes it.
    if msg.len() >= 10 && msg[0] == 0x09 && msg[9] == 0x10 {
        let mut r = Reader::new(&msg[10..], base + 10);
        let mut arr = [0u8; 8];
        arr.copy_from_slice(&msg[1..9]);
        let ts = r.varint()? as i64;
        if r.at_end() {
            return Ok((ts, f64::from_bits(u64::from_le_bytes(arr))));
        }
    }
    let mut r = Reader::new(msg, base);
    let (mut ts, mut value) = (0i64, 0f64);
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, FIXED64)?;
                value = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect(wt, VARINT)?;
                // int64 is two's complement in a varint.
                ts = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((ts, value))
}

fn check_v1_metadata(msg: &[u8], base: usize) -> Result<(), WireError> {
    let mut r = Reader::new(msg, base);
    while !r.at_end() {
        let (field, wt) = r.key()?;
        match field {
            2 | 4 | 5 => {
                r.expect(wt, LEN)?;
                let (bytes, off) = r.bytes()?;
                utf8(bytes, off)?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(())
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request` into `batch` (appending).
pub fn decode_v2(raw: &[u8], batch: &mut MetricBatch) -> Result<RemoteWriteStats, IngestError> {
    // Protobuf allows fields in any order, so the symbol table is collected in a first pass.
    let mut symbols: Vec<&str> = Vec::new();
    let mut r = Reader::new(raw, 0);
    while !r.at_end() {
        let (field, wt) = r.key().map_err(|e| protobuf_error(e, "Request"))?;
        if field == 4 {
            r.expect(wt, LEN).map_err(|e| protobuf_error(e, "Request.symbols"))?;
            let (bytes, off) = r.bytes().map_err(|e| protobuf_error(e, "Request.symbols"))?;
            symbols.push(utf8(bytes, off).map_err(|e| protobuf_error(e, "Request.symbols"))?);
        } else {
            r.skip(wt).map_err(|e| protobuf_error(e, "Request"))?;
        }
    }
    let mut stats = RemoteWriteStats::default();
    let mut refs: Vec<u32> = Vec::new();
    let mut r = Reader::new(raw, 0);
    let mut series = 0usize;
    while !r.at_end() {
        let (field, wt) = r.key().map_err(|e| protobuf_error(e, "Request"))?;
        if field == 5 {
            r.expect(wt, LEN).map_err(|e| protobuf_error(e, "Request.timeseries"))?;
            let (msg, base) = r.bytes().map_err(|e| protobuf_error(e, "Request.timeseries"))?;
            decode_v2_series(msg, base, series, &symbols, &mut refs, batch, &mut stats)?;
            series += 1;
        } else {
            r.skip(wt).map_err(|e| protobuf_error(e, "Request"))?;
        }
    }
    Ok(stats)
}

/// Appends the uint32s of a repeated field, packed or not.
fn read_refs(r: &mut Reader<'_>, wt: u8, out: &mut Vec<u32>) -> Result<(), WireError> {
    let mut push = |r: &Reader<'_>, v: u64| {
        out.push(u32::try_from(v).map_err(|_| r.err("symbol reference out of uint32 range"))?);
        Ok(())
    };
    if wt == LEN {
        let (packed, base) = r.bytes()?;
        let mut p = Reader::new(packed, base);
        while !p.at_end() {
            let v = p.varint()?;
            push(&p, v)?;
        }
        Ok(())
    } else {
        r.expect(wt, VARINT)?;
        let v = r.varint()?;
        push(r, v)
    }
}

fn symbol<'s>(symbols: &[&'s str], reference: u32, series: usize) -> Result<&'s str, IngestError> {
    symbols.get(reference as usize).copied().ok_or_else(|| {
        IngestError::new(
            RejectReason::InvalidLabelValue,
            format!(
                "series #{series} refers to symbol {reference}, but the symbol table has {} entries",
                symbols.len()
            ),
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn decode_v2_series(
    msg: &[u8],
    base: usize,
    index: usize,
    symbols: &[&str],
    refs: &mut Vec<u32>,
    batch: &mut MetricBatch,
    stats: &mut RemoteWriteStats,
) -> Result<(), IngestError> {
    let ctx = |e: WireError| protobuf_error(e, &format!("series #{index}"));
    refs.clear();
    let mut r = Reader::new(msg, base);
    while !r.at_end() {
        let (field, wt) = r.key().map_err(ctx)?;
        match field {
            1 => read_refs(&mut r, wt, refs).map_err(ctx)?,
            2 => {
                r.expect(wt, LEN).map_err(ctx)?;
                let (sample, sbase) = r.bytes().map_err(ctx)?;
                let (ts, v) = decode_sample(sample, sbase).map_err(ctx)?;
                batch.push_sample(ts, v);
                stats.samples += 1;
            }
            3 => {
                stats.histograms += 1;
                batch.abandon_series();
                return Err(histograms_refused(index));
            }
            4 => {
                r.expect(wt, LEN).map_err(ctx)?;
                let (ex, ebase) = r.bytes().map_err(ctx)?;
                check_v2_refs(ex, ebase, 1, symbols, index)?;
                stats.exemplars += 1;
            }
            5 => {
                r.expect(wt, LEN).map_err(ctx)?;
                let (md, mbase) = r.bytes().map_err(ctx)?;
                check_v2_refs(md, mbase, 3, symbols, index)?;
                check_v2_refs(md, mbase, 4, symbols, index)?;
                stats.metadata += 1;
            }
            _ => r.skip(wt).map_err(ctx)?,
        }
    }
    if !refs.len().is_multiple_of(2) {
        batch.abandon_series();
        return Err(IngestError::new(
            RejectReason::Protobuf,
            format!("series #{index} has an odd number ({}) of labels_refs", refs.len()),
        ));
    }
    for pair in refs.chunks_exact(2) {
        let name = symbol(symbols, pair[0], index)?;
        let value = symbol(symbols, pair[1], index)?;
        batch.push_label(name, value)?;
    }
    batch.finish_series()?;
    Ok(())
}

/// Checks that the uint32 symbol references in `field` of a small message are in range.
fn check_v2_refs(msg: &[u8], base: usize, field: u32, symbols: &[&str], series: usize) -> Result<(), IngestError> {
    let ctx = |e: WireError| protobuf_error(e, &format!("series #{series}"));
    let mut r = Reader::new(msg, base);
    let mut refs = Vec::new();
    while !r.at_end() {
        let (f, wt) = r.key().map_err(ctx)?;
        if f == field {
            read_refs(&mut r, wt, &mut refs).map_err(ctx)?;
        } else {
            r.skip(wt).map_err(ctx)?;
        }
    }
    for &reference in &refs {
        symbol(symbols, reference, series)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "remote_write_tests.rs"]
mod tests;
