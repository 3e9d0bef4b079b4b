//! Body decompression with bomb protection (FORMATS.md §7).
//!
//! Snappy block format is the default. With `Content-Encoding: zstd`, zstd is tried first.
//! Either codec falls back to the other on failure, because old vmagent queues hold bodies
//! whose header does not match their encoding. A size-limit refusal never falls back.
//!
//! Bombs are refused before inflating: a snappy block starts with its decompressed length, and
//! a zstd frame usually declares its content size; both are checked against the limit before
//! any buffer is allocated. A zstd stream without a declared size is inflated through a reader
//! that stops one byte past the limit.

use std::io::Read;

use crate::error::{IngestError, RejectReason};

/// The encoding a request says its body has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Snappy block format (the remote-write default; also assumed when no header is given).
    Snappy,
    /// Zstandard.
    Zstd,
    /// No compression (`Content-Encoding: identity`), used by import endpoints.
    Identity,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value for remote write; `None` header means snappy.
    pub fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Encoding::Snappy),
            Some(v) if v.is_empty() || v == "snappy" => Ok(Encoding::Snappy),
            Some(v) if v == "zstd" => Ok(Encoding::Zstd),
            Some(v) if v == "identity" => Ok(Encoding::Identity),
            Some(v) => Err(IngestError::new(
                RejectReason::UnsupportedMediaType,
                format!("unsupported Content-Encoding \"{v}\"; use snappy or zstd"),
            )),
        }
    }
}

fn too_large(what: &str, size: u64, limit: usize) -> IngestError {
    IngestError::new(
        RejectReason::TooLarge,
        format!("{what} decompresses to {size} bytes, more than max_decompressed_bytes={limit}"),
    )
}

/// Decompresses a snappy block, refusing a declared size over `limit` before allocating.
pub fn snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    snappy_into(body, limit, &mut out)?;
    Ok(out)
}

/// [`snappy`] into a reused buffer (replacing its contents).
pub fn snappy_into(body: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), IngestError> {
    let bad =
        |e: snap::Error| IngestError::new(RejectReason::Decompress, format!("cannot decompress snappy block: {e}"));
    let declared = snap::raw::decompress_len(body).map_err(bad)?;
    if declared > limit {
        return Err(too_large("snappy body", declared as u64, limit));
    }
    out.clear();
    out.resize(declared, 0);
    let written = snap::raw::Decoder::new().decompress(body, out).map_err(bad)?;
    out.truncate(written);
    Ok(())
}

/// Decompresses zstd frames, refusing a declared size over `limit` before allocating and
/// stopping at `limit` otherwise.
pub fn zstd(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    zstd_into(body, limit, &mut out)?;
    Ok(out)
}

/// [`zstd`] into a reused buffer (replacing its contents).
pub fn zstd_into(body: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), IngestError> {
    let bad = |e: std::io::Error| IngestError::new(RejectReason::Decompress, format!("cannot decompress zstd: {e}"));
    let declared = match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(size) => size,
        Err(_) => return Err(bad(std::io::Error::other("not a zstd frame"))),
    };
    if let Some(size) = declared
        && size > limit as u64
    {
        return Err(too_large("zstd body", size, limit));
    }
    // The declared size only sizes the buffer; the read is bounded whatever the frames say.
    let capacity = declared.map_or(body.len().saturating_mul(4), |s| s as usize).min(limit);
    out.clear();
    out.reserve(capacity);
    let decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(bad)?;
    decoder.take(limit as u64 + 1).read_to_end(out).map_err(bad)?;
    if out.len() > limit {
        return Err(too_large("zstd body", out.len() as u64, limit));
    }
    Ok(())
}

/// Decompresses a remote-write body given its declared encoding, with the fallback described
/// in the module docs. The error reported is that of the declared codec.
pub fn remote_write_body(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    remote_write_body_into(body, encoding, limit, &mut out)?;
    Ok(out)
}

/// [`remote_write_body`] into a reused buffer (replacing its contents).
pub fn remote_write_body_into(
    body: &[u8],
    encoding: Encoding,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), IngestError> {
    type Codec = fn(&[u8], usize, &mut Vec<u8>) -> Result<(), IngestError>;
    let (first, second): (Codec, Codec) = match encoding {
        Encoding::Snappy => (snappy_into, zstd_into),
        Encoding::Zstd => (zstd_into, snappy_into),
        Encoding::Identity => return identity_into(body, limit, out),
    };
    match first(body, limit, out) {
        Ok(()) => Ok(()),
        Err(err) if err.reason == RejectReason::TooLarge => Err(err),
        Err(err) => match second(body, limit, out) {
            Ok(()) => Ok(()),
            Err(other) if other.reason == RejectReason::TooLarge => Err(other),
            Err(_) => Err(err),
        },
    }
}

/// An uncompressed body, checked against the same limit.
pub fn identity(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    identity_into(body, limit, &mut out)?;
    Ok(out)
}

/// [`identity`] into a reused buffer (replacing its contents).
pub fn identity_into(body: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), IngestError> {
    if body.len() > limit {
        return Err(too_large("body", body.len() as u64, limit));
    }
    out.clear();
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_bomb_is_refused_from_its_header() {
        // A header declaring 1 GiB followed by nothing: refused as too large, not as corrupt,
        // which shows the check ran before decoding.
        let mut body = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        let err = snappy(&body, 1 << 20).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooLarge, "{err}");
    }

    #[test]
    fn real_snappy_bomb_is_refused() {
        let zeros = vec![0u8; 8 << 20];
        let packed = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(packed.len() < 1 << 20);
        let err = remote_write_body(&packed, Encoding::Snappy, 1 << 20).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooLarge);
    }

    #[test]
    fn zstd_bomb_is_refused_with_and_without_declared_size() {
        let zeros = vec![0u8; 8 << 20];
        let framed = zstd::bulk::compress(&zeros, 1).unwrap();
        assert_eq!(zstd(&framed, 1 << 20).unwrap_err().reason, RejectReason::TooLarge);
        // Streaming encoder: no content size in the frame header.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
        let streamed = enc.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(), None);
        assert_eq!(zstd(&streamed, 1 << 20).unwrap_err().reason, RejectReason::TooLarge);
        assert_eq!(zstd(&streamed, 8 << 20).unwrap().len(), 8 << 20);
    }

    #[test]
    fn codecs_fall_back_to_each_other() {
        let data = b"hello hello hello hello".to_vec();
        let sn = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zs = zstd::bulk::compress(&data, 1).unwrap();
        assert_eq!(remote_write_body(&sn, Encoding::Zstd, 1024).unwrap(), data);
        assert_eq!(remote_write_body(&zs, Encoding::Snappy, 1024).unwrap(), data);
        let err = remote_write_body(&sn[..sn.len() - 3], Encoding::Snappy, 1024).unwrap_err();
        assert_eq!(err.reason, RejectReason::Decompress);
        assert!(err.message.contains("snappy"), "{err}");
    }

    #[test]
    fn encoding_header() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Snappy);
        assert_eq!(Encoding::from_header(Some("ZSTD")).unwrap(), Encoding::Zstd);
        assert_eq!(
            Encoding::from_header(Some("gzip")).unwrap_err().reason,
            RejectReason::UnsupportedMediaType
        );
    }
}
