//! On-disk encodings (FORMATS.md §0, §3.2, §3.3): varints, item blocks, block headers and
//! metaindex rows. Decoders return `None` on malformed input; the caller names the file.

use crate::items::Items;

/// Appends `v` as unsigned LEB128.
pub fn put_uvarint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Reads an unsigned LEB128 value; `None` if truncated or longer than 10 bytes.
pub fn get_uvarint(src: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in src.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, &src[i + 1..]));
        }
    }
    None
}

/// Appends `VarUint(len) | bytes`.
pub fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(dst, b.len() as u64);
    dst.extend_from_slice(b);
}

/// Reads `VarUint(len) | bytes`.
pub fn get_bytes(src: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, rest) = get_uvarint(src)?;
    let n = usize::try_from(n).ok()?;
    (rest.len() >= n).then(|| rest.split_at(n))
}

fn get_u32(src: &[u8]) -> Option<(u32, &[u8])> {
    let (a, b) = src.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*a), b))
}

fn get_u64(src: &[u8]) -> Option<(u64, &[u8])> {
    let (a, b) = src.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*a), b))
}

/// Block items are kept in plain form (marshalType 0).
pub const MARSHAL_PLAIN: u8 = 0;
/// Block items are zstd-compressed with prefix and length deltas (marshalType 1).
pub const MARSHAL_ZSTD: u8 = 1;
/// Largest uncompressed items chunk a header may announce.
pub const MAX_ITEMS_BLOCK_SIZE: u32 = 128 * 1024;
/// Largest lens chunk a header may announce.
pub const MAX_LENS_BLOCK_SIZE: u32 = 1024 * 1024;
/// Largest index block a metaindex row may announce.
pub const MAX_INDEX_BLOCK_SIZE: u32 = 256 * 1024;
/// zstd level for item blocks: index items are small and written often; speed wins.
const ZSTD_LEVEL: i32 = 1;

/// The header of one item block (FORMATS.md §3.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockHeader {
    /// Prefix shared by every item of the block.
    pub common_prefix: Vec<u8>,
    /// The first item, whole.
    pub first_item: Vec<u8>,
    /// [`MARSHAL_PLAIN`] or [`MARSHAL_ZSTD`].
    pub marshal_type: u8,
    /// Items in the block.
    pub items_count: u32,
    /// Offset of the items chunk in items.bin.
    pub items_block_offset: u64,
    /// Offset of the lens chunk in lens.bin.
    pub lens_block_offset: u64,
    /// Size of the items chunk.
    pub items_block_size: u32,
    /// Size of the lens chunk.
    pub lens_block_size: u32,
}

impl BlockHeader {
    /// Appends the marshaled header.
    pub fn marshal(&self, dst: &mut Vec<u8>) {
        put_bytes(dst, &self.common_prefix);
        put_bytes(dst, &self.first_item);
        dst.push(self.marshal_type);
        dst.extend_from_slice(&self.items_count.to_be_bytes());
        dst.extend_from_slice(&self.items_block_offset.to_be_bytes());
        dst.extend_from_slice(&self.lens_block_offset.to_be_bytes());
        dst.extend_from_slice(&self.items_block_size.to_be_bytes());
        dst.extend_from_slice(&self.lens_block_size.to_be_bytes());
    }

    /// Reads one header and checks its limits.
    pub fn unmarshal(src: &[u8]) -> Option<(BlockHeader, &[u8])> {
        let (cp, src) = get_bytes(src)?;
        let (first, src) = get_bytes(src)?;
        let (&mt, src) = src.split_first()?;
        let (items_count, src) = get_u32(src)?;
        let (items_block_offset, src) = get_u64(src)?;
        let (lens_block_offset, src) = get_u64(src)?;
        let (items_block_size, src) = get_u32(src)?;
        let (lens_block_size, src) = get_u32(src)?;
        let ok = mt <= MARSHAL_ZSTD
            && items_count > 0
            && items_block_size <= MAX_ITEMS_BLOCK_SIZE
            && lens_block_size <= MAX_LENS_BLOCK_SIZE
            && first.starts_with(cp);
        ok.then(|| {
            let bh = BlockHeader {
                common_prefix: cp.to_vec(),
                first_item: first.to_vec(),
                marshal_type: mt,
                items_count,
                items_block_offset,
                lens_block_offset,
                items_block_size,
                lens_block_size,
            };
            (bh, src)
        })
    }
}

/// One metaindex row: where an index block is and the first item it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaindexRow {
    /// First item of the first block in the index block.
    pub first_item: Vec<u8>,
    /// Block headers in the index block.
    pub block_headers_count: u32,
    /// Offset in index.bin.
    pub index_block_offset: u64,
    /// Compressed size in index.bin.
    pub index_block_size: u32,
}

impl MetaindexRow {
    /// Appends the marshaled row.
    pub fn marshal(&self, dst: &mut Vec<u8>) {
        put_bytes(dst, &self.first_item);
        dst.extend_from_slice(&self.block_headers_count.to_be_bytes());
        dst.extend_from_slice(&self.index_block_offset.to_be_bytes());
        dst.extend_from_slice(&self.index_block_size.to_be_bytes());
    }

    /// Reads one row and checks its limits.
    pub fn unmarshal(src: &[u8]) -> Option<(MetaindexRow, &[u8])> {
        let (first, src) = get_bytes(src)?;
        let (block_headers_count, src) = get_u32(src)?;
        let (index_block_offset, src) = get_u64(src)?;
        let (index_block_size, src) = get_u32(src)?;
        let ok = block_headers_count > 0 && index_block_size <= MAX_INDEX_BLOCK_SIZE;
        ok.then(|| {
            let row = MetaindexRow {
                first_item: first.to_vec(),
                block_headers_count,
                index_block_offset,
                index_block_size,
            };
            (row, src)
        })
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The encoded form of one sorted, non-empty block.
pub struct EncodedBlock {
    /// Header with offsets and sizes left at zero (the writer fills them in).
    pub header: BlockHeader,
    /// The items chunk.
    pub items: Vec<u8>,
    /// The lens chunk.
    pub lens: Vec<u8>,
}

/// Encodes a sorted, non-empty block (FORMATS.md §3.2).
pub fn encode_block(items: &Items) -> EncodedBlock {
    let n = items.len();
    let first = items.get(0);
    let last = items.get(n - 1);
    let cp_len = common_prefix_len(first, last);
    let header = BlockHeader {
        common_prefix: first[..cp_len].to_vec(),
        first_item: first.to_vec(),
        marshal_type: MARSHAL_PLAIN,
        items_count: n as u32,
        ..Default::default()
    };
    let stripped = |i: usize| &items.get(i)[cp_len..];
    let plain = |mut header: BlockHeader| {
        let mut data = Vec::new();
        let mut lens = Vec::with_capacity(8 * n);
        for i in 1..n {
            data.extend_from_slice(stripped(i));
            lens.extend_from_slice(&(stripped(i).len() as u64).to_be_bytes());
        }
        header.marshal_type = MARSHAL_PLAIN;
        EncodedBlock {
            header,
            items: data,
            lens,
        }
    };
    if n < 2 || items.data_len().saturating_sub(cp_len * n) < 64 {
        return plain(header);
    }
    let mut suffixes = Vec::new();
    let mut prefix_xor = Vec::with_capacity(n);
    let mut len_xor = Vec::with_capacity(n);
    let (mut prev_prefix, mut prev_len) = (0u64, stripped(0).len() as u64);
    for i in 1..n {
        let (prev, cur) = (stripped(i - 1), stripped(i));
        let p = common_prefix_len(prev, cur);
        suffixes.extend_from_slice(&cur[p..]);
        prefix_xor.push(p as u64 ^ prev_prefix);
        len_xor.push(cur.len() as u64 ^ prev_len);
        prev_prefix = p as u64;
        prev_len = cur.len() as u64;
    }
    let raw_len = items.data_len() - cp_len * n;
    let Ok(zitems) = zstd::bulk::compress(&suffixes, ZSTD_LEVEL) else {
        return plain(header);
    };
    if zitems.len() as f64 > 0.9 * raw_len as f64 {
        return plain(header);
    }
    let mut lens_raw = Vec::new();
    for v in prefix_xor.iter().chain(&len_xor) {
        put_uvarint(&mut lens_raw, *v);
    }
    let Ok(zlens) = zstd::bulk::compress(&lens_raw, ZSTD_LEVEL) else {
        return plain(header);
    };
    let mut header = header;
    header.marshal_type = MARSHAL_ZSTD;
    EncodedBlock {
        header,
        items: zitems,
        lens: zlens,
    }
}

/// Decompresses a zstd frame whose content size is bounded by `max`.
pub fn zstd_decompress(src: &[u8], max: usize) -> Option<Vec<u8>> {
    zstd::bulk::decompress(src, max).ok()
}

/// Decodes a block from its header and chunks; `Err` describes what is wrong.
pub fn decode_block(h: &BlockHeader, items_chunk: &[u8], lens_chunk: &[u8]) -> Result<Items, String> {
    let n = h.items_count as usize;
    let cp = &h.common_prefix;
    let first_stripped = &h.first_item[cp.len()..];
    let mut out = Items::with_capacity(h.first_item.len() * n);
    out.push(&h.first_item);
    match h.marshal_type {
        MARSHAL_PLAIN => {
            if lens_chunk.len() != 8 * (n - 1) {
                return Err(format!(
                    "lens chunk has {} bytes, want {}",
                    lens_chunk.len(),
                    8 * (n - 1)
                ));
            }
            let mut data = items_chunk;
            let mut buf = cp.clone();
            for c in lens_chunk.chunks_exact(8) {
                let l = u64::from_be_bytes(c.try_into().unwrap_or_default()) as usize;
                if l > data.len() {
                    return Err("item length beyond the items chunk".into());
                }
                buf.truncate(cp.len());
                buf.extend_from_slice(&data[..l]);
                out.push(&buf);
                data = &data[l..];
            }
            if !data.is_empty() {
                return Err("trailing bytes in the items chunk".into());
            }
        }
        MARSHAL_ZSTD => {
            let lens = zstd_decompress(lens_chunk, 20 * n + 16).ok_or("cannot decompress lens chunk")?;
            let suffixes = zstd_decompress(items_chunk, 64 * MAX_ITEMS_BLOCK_SIZE as usize)
                .ok_or("cannot decompress items chunk")?;
            let mut vals = Vec::with_capacity(2 * n);
            let mut src = &lens[..];
            for _ in 0..2 * (n - 1) {
                let (v, rest) = get_uvarint(src).ok_or("truncated lens chunk")?;
                vals.push(v);
                src = rest;
            }
            if !src.is_empty() {
                return Err("trailing bytes in the lens chunk".into());
            }
            let (pxor, lxor) = vals.split_at(n - 1);
            let mut prev = first_stripped.to_vec();
            let (mut prev_prefix, mut prev_len) = (0u64, first_stripped.len() as u64);
            let mut data = &suffixes[..];
            let mut buf = Vec::new();
            for i in 0..n - 1 {
                let p = (pxor[i] ^ prev_prefix) as usize;
                let l = (lxor[i] ^ prev_len) as usize;
                if p > prev.len() || p > l || l - p > data.len() {
                    return Err("inconsistent item lengths".into());
                }
                let mut cur = prev[..p].to_vec();
                cur.extend_from_slice(&data[..l - p]);
                data = &data[l - p..];
                buf.clear();
                buf.extend_from_slice(cp);
                buf.extend_from_slice(&cur);
                out.push(&buf);
                prev_prefix = p as u64;
                prev_len = l as u64;
                prev = cur;
            }
            if !data.is_empty() {
                return Err("trailing bytes in the items chunk".into());
            }
        }
        other => return Err(format!("unknown marshal type {other}")),
    }
    if !out.is_sorted() {
        return Err("items are not sorted".into());
    }
    if out.iter().any(|it| !it.starts_with(cp)) {
        return Err("an item lacks the block's common prefix".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(items: &Items) {
        let enc = encode_block(items);
        let dec = decode_block(&enc.header, &enc.items, &enc.lens).unwrap();
        assert_eq!(&dec, items);
        let mut hb = Vec::new();
        enc.header.marshal(&mut hb);
        let (h2, rest) = BlockHeader::unmarshal(&hb).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h2, enc.header);
    }

    #[test]
    fn blocks_roundtrip_in_both_modes() {
        let one: Items = [&b"x"[..]].into_iter().collect();
        roundtrip(&one);
        let mut many = Items::new();
        for i in 0..500u32 {
            many.push(format!("prefix/common/{:06}/value", i * 7).as_bytes());
        }
        let enc = encode_block(&many);
        assert_eq!(enc.header.marshal_type, MARSHAL_ZSTD);
        assert_eq!(enc.header.common_prefix, b"prefix/common/00");
        roundtrip(&many);
        let mut dups = Items::new();
        for s in ["", "", "a", "a", "ab", "b"] {
            dups.push(s.as_bytes());
        }
        roundtrip(&dups);
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let mut many = Items::new();
        for i in 0..300u32 {
            many.push(format!("k{:08}", i * 13).as_bytes());
        }
        let enc = encode_block(&many);
        assert!(decode_block(&enc.header, &enc.items[..enc.items.len() / 2], &enc.lens).is_err());
        assert!(decode_block(&enc.header, &enc.items, &[1, 2, 3]).is_err());
        let mut h = enc.header.clone();
        h.items_count += 1;
        assert!(decode_block(&h, &enc.items, &enc.lens).is_err());
        assert!(get_uvarint(&[0x80; 11]).is_none());
    }
}
