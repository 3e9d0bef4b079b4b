//! indexdb item layouts (FORMATS.md §4.1, cluster form: tenant-prefixed) and the merge hook
//! that packs label→metric-id rows.

use strata_mergeset::Items;

use super::metric_name::{KV_SEPARATOR, split_tag_part};
use crate::Tenant;

/// `00 MN 02 TSID`: series lookup by canonical name (the global, not per-day, form).
pub const NS_NAME_TO_TSID: u8 = 0;
/// `01 T tag id{1..64}`: global inverted index.
pub const NS_TAG_TO_IDS: u8 = 1;
/// `02 T id TSID`.
pub const NS_ID_TO_TSID: u8 = 2;
/// `03 T id MN`.
pub const NS_ID_TO_NAME: u8 = 3;
/// `04 id`: deleted series (no tenant).
pub const NS_DELETED: u8 = 4;
/// `05 T date id`: series active on a day.
pub const NS_DATE_TO_ID: u8 = 5;
/// `06 T date tag id{1..64}`: per-day inverted index.
pub const NS_DATE_TAG_TO_IDS: u8 = 6;

/// Ids per packed row (FORMATS.md §3.4 `maxMetricIDsPerRow`).
const MAX_IDS_PER_ROW: usize = 64;

/// `ns T`.
pub fn tenant_prefix(ns: u8, t: Tenant) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.push(ns);
    k.extend_from_slice(&t.account_id.to_be_bytes());
    k.extend_from_slice(&t.project_id.to_be_bytes());
    k
}

/// The prefix of inverted-index rows: `01 T` (global, `date == None`) or `06 T date`.
pub fn tag_prefix(t: Tenant, date: Option<u64>) -> Vec<u8> {
    match date {
        None => tenant_prefix(NS_TAG_TO_IDS, t),
        Some(d) => {
            let mut k = tenant_prefix(NS_DATE_TAG_TO_IDS, t);
            k.extend_from_slice(&d.to_be_bytes());
            k
        }
    }
}

/// The universe prefix: `02 T` (global) or `05 T date`.
pub fn all_ids_prefix(t: Tenant, date: Option<u64>) -> Vec<u8> {
    match date {
        None => tenant_prefix(NS_ID_TO_TSID, t),
        Some(d) => {
            let mut k = tenant_prefix(NS_DATE_TO_ID, t);
            k.extend_from_slice(&d.to_be_bytes());
            k
        }
    }
}

/// Reads a big-endian u64 at the start of `b`.
pub fn be_u64(b: &[u8]) -> Option<u64> {
    b.first_chunk::<8>().map(|c| u64::from_be_bytes(*c))
}

/// Length of the fixed prefix (`ns T` or `ns T date`) of an inverted-index row, or `None` if
/// the item is not one.
fn tag_row_prefix_len(item: &[u8]) -> Option<usize> {
    match *item.first()? {
        NS_TAG_TO_IDS => Some(9),
        NS_DATE_TAG_TO_IDS => Some(17),
        _ => None,
    }
}

/// Splits an inverted-index row after its fixed prefix into (escaped key, escaped value, ids).
pub fn parse_tag_row(rest: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (k, r) = split_tag_part(rest)?;
    let (v, ids) = split_tag_part(r)?;
    (ids.len() % 8 == 0 && !ids.is_empty()).then_some((k, v, ids))
}

/// Iterates the ids of a row's id bytes.
pub fn ids_of(ids: &[u8]) -> impl Iterator<Item = u64> + '_ {
    ids.chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
}

/// Splits a whole inverted-index item into (key bytes up to and including the value's
/// terminator, ids).
fn split_row(item: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = tag_row_prefix_len(item)?;
    let (k, v, ids) = parse_tag_row(item.get(p..)?)?;
    Some((&item[..p + k.len() + v.len() + 2], ids))
}

/// The merge hook: consecutive rows of one key get their ids sorted, de-duplicated and packed
/// into rows of up to 64 ids. The first and last items of a block stay as they are, so the
/// block keeps its bounds; mergeset discards the result if it came out unsorted.
pub fn merge_tag_rows(b: &Items) -> Option<Items> {
    let n = b.len();
    if n <= 3 || !(1..n - 1).any(|i| split_row(b.get(i)).is_some()) {
        return None;
    }
    let mut out = Items::with_capacity(b.data_len());
    out.push(b.get(0));
    let mut key: Vec<u8> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut row = Vec::new();
    let mut flush = |key: &[u8], ids: &mut Vec<u64>, out: &mut Items| {
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(MAX_IDS_PER_ROW) {
            row.clear();
            row.extend_from_slice(key);
            for id in chunk {
                row.extend_from_slice(&id.to_be_bytes());
            }
            out.push(&row);
        }
        ids.clear();
    };
    for i in 1..n - 1 {
        let it = b.get(i);
        match split_row(it) {
            Some((k, row_ids)) => {
                if k != key.as_slice() {
                    flush(&key, &mut ids, &mut out);
                    key.clear();
                    key.extend_from_slice(k);
                }
                ids.extend(ids_of(row_ids));
            }
            None => {
                flush(&key, &mut ids, &mut out);
                key.clear();
                out.push(it);
            }
        }
    }
    flush(&key, &mut ids, &mut out);
    out.push(b.get(n - 1));
    Some(out)
}

/// The `00 MN 02` prefix of name→TSID items for a marshaled canonical name.
pub fn name_to_tsid_prefix(mn: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(mn.len() + 34);
    k.push(NS_NAME_TO_TSID);
    k.extend_from_slice(mn);
    k.push(KV_SEPARATOR);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::metric_name::put_tag_part;

    fn row(key: &str, val: &str, ids: &[u64]) -> Vec<u8> {
        let mut r = tag_prefix(Tenant::default(), None);
        put_tag_part(&mut r, key.as_bytes());
        put_tag_part(&mut r, val.as_bytes());
        for id in ids {
            r.extend_from_slice(&id.to_be_bytes());
        }
        r
    }

    #[test]
    fn packs_rows_of_one_key() {
        let mut rows = vec![
            row("a", "0", &[1]),
            row("a", "x", &[9]),
            row("a", "x", &[3]),
            row("a", "x", &[3, 5]),
        ];
        rows.extend((100..200u64).map(|i| row("a", "y", &[i])));
        rows.push(row("z", "z", &[1]));
        rows.sort();
        let b: Items = rows.iter().map(|r| r.as_slice()).collect();
        let out = merge_tag_rows(&b).unwrap();
        assert!(out.is_sorted());
        assert_eq!(out.get(0), rows[0].as_slice());
        assert_eq!(out.get(1), row("a", "x", &[3, 5, 9]).as_slice());
        assert_eq!(out.get(2), row("a", "y", &(100..164).collect::<Vec<_>>()).as_slice());
        assert_eq!(out.get(3), row("a", "y", &(164..200).collect::<Vec<_>>()).as_slice());
        assert_eq!(out.len(), 5);
        let (_, _, ids) = parse_tag_row(&out.get(1)[9..]).unwrap();
        assert_eq!(ids_of(ids).collect::<Vec<_>>(), vec![3, 5, 9]);
    }
}
