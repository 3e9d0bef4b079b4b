//! A minimal protobuf wire reader for the hot decode path: no allocation, borrowed slices,
//! every read bounds-checked so that truncated or hostile input yields an error, never a panic.

/// A protobuf decoding error with the byte offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub(crate) offset: usize,
    pub(crate) what: &'static str,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// Reads fields from one message. Offsets in errors are relative to `base`, the position of
/// this message within the whole request, so a message points at the real byte.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn err(&self, what: &'static str) -> WireError {
        WireError {
            offset: self.offset(),
            what,
        }
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        // Keys and most lengths are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for shift in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (shift * 7);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// A field key: (field number, wire type).
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| self.err("field number out of range"))?;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    /// A length-delimited payload and its absolute start offset.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length-delimited field runs past the end of its message"))?;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated fixed64"))?;
        self.pos = end;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(arr))
    }

    /// Skips a field of wire type `wt` (unknown fields are allowed by protobuf).
    pub(crate) fn skip(&mut self, wt: u8) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                let end = self.pos + 4;
                if end > self.buf.len() {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos = end;
                Ok(())
            }
            _ => Err(self.err("unsupported wire type (groups or invalid)")),
        }
    }

    /// Checks the wire type of a known field.
    #[inline]
    pub(crate) fn expect(&self, wt: u8, want: u8) -> Result<(), WireError> {
        if wt == want {
            Ok(())
        } else {
            Err(self.err("field has the wrong wire type for its schema"))
        }
    }
}

/// Reads a UTF-8 string field.
#[inline]
pub(crate) fn utf8(bytes: &[u8], offset: usize) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError {
        offset,
        what: "string field is not valid UTF-8",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_input_errors() {
        assert!(Reader::new(&[0x80], 0).varint().is_err());
        assert!(Reader::new(&[0xff; 11], 0).varint().is_err());
        assert!(Reader::new(&[0x05, 1, 2], 0).bytes().is_err());
        assert!(Reader::new(&[1, 2, 3], 0).fixed64().is_err());
        assert_eq!(Reader::new(&[0xac, 0x02], 0).varint().unwrap(), 300);
        let mut huge_len = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 7);
        let err = huge_len.bytes().unwrap_err();
        assert_eq!(err.offset, 17);
    }
}
