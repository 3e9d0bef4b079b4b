//! Label names, label values and TSDB status: scans of the inverted index that skip from key
//! to key (or value to value) by seeks.

use std::collections::{BTreeSet, HashMap};

use super::indexdb::Inner;
use super::keys::tag_prefix;
use super::metric_name::put_tag_part;
use super::search::{Searcher, ms_err};
use super::uint64set::Uint64Set;
use super::{TagFilter, TsdbStatus, filters::compile};
use crate::{Result, StorageError, Tenant, TimeRange};

/// With at most this many matching series, label names come from the series names.
const MAX_IDS_FOR_DIRECT_LABELS: usize = 100_000;

impl Inner {
    pub(super) fn label_names(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        let compiled = filters.iter().map(compile).collect::<Result<Vec<_>>>()?;
        let trivial = compiled.iter().all(|c| c.matches_everything());
        let ids = if trivial {
            None
        } else {
            Some(self.search_ids(tenant, filters, tr, usize::MAX)?)
        };
        let mut names = BTreeSet::new();
        if let Some(ids) = ids.as_ref().filter(|i| i.len() <= MAX_IDS_FOR_DIRECT_LABELS) {
            for cn in self.names_of(tenant, ids)? {
                if !cn.name.is_empty() {
                    names.insert("__name__".to_string());
                }
                names.extend(cn.tags.into_iter().map(|t| t.0));
            }
        } else {
            let deleted = self.deleted.0.read().clone();
            for t in self.tables.read().all() {
                let mut s = t.searcher(tenant, false);
                for d in Self::dates(tr) {
                    scan_keys(&mut s, d, ids.as_ref(), &deleted, &mut |k| {
                        names.insert(if k.is_empty() { "__name__".to_string() } else { k });
                    })?;
                }
            }
        }
        Ok(truncate(names, limit))
    }

    pub(super) fn label_values(
        &self,
        tenant: Tenant,
        name: &str,
        filters: &[TagFilter],
        tr: TimeRange,
        limit: usize,
    ) -> Result<Vec<String>> {
        let key = if name == "__name__" { "" } else { name };
        let compiled = filters.iter().map(compile).collect::<Result<Vec<_>>>()?;
        let trivial = compiled.iter().all(|c| c.matches_everything());
        let ids = if trivial {
            None
        } else {
            Some(self.search_ids(tenant, filters, tr, usize::MAX)?)
        };
        let mut values = BTreeSet::new();
        let deleted = self.deleted.0.read().clone();
        for t in self.tables.read().all() {
            let mut s = t.searcher(tenant, false);
            for d in Self::dates(tr) {
                scan_values(&mut s, d, key, ids.as_ref(), &deleted, &mut |v| {
                    values.insert(v);
                })?;
            }
        }
        Ok(truncate(values, limit))
    }

    pub(super) fn tsdb_status(
        &self,
        tenant: Tenant,
        date: u64,
        focus: Option<&str>,
        top_n: usize,
    ) -> Result<TsdbStatus> {
        let deleted = self.deleted.0.read().clone();
        let mut total = Uint64Set::new();
        // Per key: ids already counted (a series has one value per key, so this de-duplicates
        // rows repeated across tables or not yet merged).
        let mut per_key: HashMap<String, Uint64Set> = HashMap::new();
        let mut pairs: HashMap<(String, String), u64> = HashMap::new();
        for t in self.tables.read().all() {
            let mut s = t.searcher(tenant, false);
            total.union_with(&s.universe(Some(date))?);
            let p = tag_prefix(tenant, Some(date));
            let mut bad = false;
            s.ts.for_each_with_prefix(&p, |it| {
                let Some((k, v, ids)) = super::keys::parse_tag_row(&it[p.len()..]) else {
                    bad = true;
                    return false;
                };
                let text = |b: &[u8]| super::metric_name::unescape(b).map(|x| String::from_utf8_lossy(&x).into_owned());
                let (Some(k), Some(v)) = (text(k), text(v)) else {
                    bad = true;
                    return false;
                };
                let k = if k.is_empty() { "__name__".to_string() } else { k };
                let set = per_key.entry(k.clone()).or_default();
                let mut n = 0;
                for id in super::keys::ids_of(ids) {
                    if !deleted.contains(id) && set.add(id) {
                        n += 1;
                    }
                }
                if n > 0 {
                    *pairs.entry((k, v)).or_default() += n;
                }
                true
            })
            .map_err(ms_err)?;
            if bad {
                return Err(StorageError::corrupt(&t.path, "malformed per-day tag item"));
            }
        }
        total.subtract(&deleted);
        let top = |mut v: Vec<(String, u64)>| {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(top_n);
            v.into_iter()
                .map(|(name, value)| super::TopEntry { name, value })
                .collect::<Vec<_>>()
        };
        let mut values_per_key: HashMap<&str, u64> = HashMap::new();
        for (k, _) in pairs.keys() {
            *values_per_key.entry(k.as_str()).or_default() += 1;
        }
        Ok(TsdbStatus {
            total_series: total.len() as u64,
            total_label_value_pairs: pairs.values().sum(),
            series_count_by_metric_name: top(pairs
                .iter()
                .filter(|((k, _), _)| k == "__name__")
                .map(|((_, v), n)| (v.clone(), *n))
                .collect()),
            series_count_by_label_name: top(per_key.iter().map(|(k, s)| (k.clone(), s.len() as u64)).collect()),
            series_count_by_focus_label_value: match focus {
                Some(f) => top(pairs
                    .iter()
                    .filter(|((k, _), _)| k == f)
                    .map(|((_, v), n)| (v.clone(), *n))
                    .collect()),
                None => Vec::new(),
            },
            series_count_by_label_value_pair: top(pairs.iter().map(|((k, v), n)| (format!("{k}={v}"), *n)).collect()),
            label_value_count_by_label_name: top(values_per_key.into_iter().map(|(k, n)| (k.to_string(), n)).collect()),
        })
    }
}

fn truncate(set: BTreeSet<String>, limit: usize) -> Vec<String> {
    let n = if limit == 0 { usize::MAX } else { limit };
    set.into_iter().take(n).collect()
}

/// Calls `f` with every label key ("" for the metric name) in the inverted index, skipping
/// from key to key by seeks; with `ids`, only keys some of those series have.
fn scan_keys(
    s: &mut Searcher,
    date: Option<u64>,
    ids: Option<&Uint64Set>,
    deleted: &Uint64Set,
    f: &mut dyn FnMut(String),
) -> Result<()> {
    let p = tag_prefix(s.tenant, date);
    s.ts.seek(&p).map_err(ms_err)?;
    while let Some(it) = s.ts.item() {
        if !it.starts_with(&p) {
            break;
        }
        let (k, _, row_ids) = super::keys::parse_tag_row(&it[p.len()..])
            .ok_or_else(|| StorageError::corrupt(&s.path, "malformed tag item"))?;
        let hit =
            super::keys::ids_of(row_ids).any(|id| ids.is_none_or(|set| set.contains(id)) && !deleted.contains(id));
        if !hit {
            s.ts.advance().map_err(ms_err)?;
            continue;
        }
        let key = super::metric_name::unescape(k)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut next = it[..p.len() + k.len()].to_vec();
        next.push(2);
        f(key);
        s.ts.seek(&next).map_err(ms_err)?;
    }
    Ok(())
}

/// Calls `f` with every value of `key`, skipping from value to value by seeks; with `ids`,
/// only values some of those series have.
fn scan_values(
    s: &mut Searcher,
    date: Option<u64>,
    key: &str,
    ids: Option<&Uint64Set>,
    deleted: &Uint64Set,
    f: &mut dyn FnMut(String),
) -> Result<()> {
    let mut p = tag_prefix(s.tenant, date);
    let fixed = p.len();
    put_tag_part(&mut p, key.as_bytes());
    s.ts.seek(&p).map_err(ms_err)?;
    while let Some(it) = s.ts.item() {
        if !it.starts_with(&p) {
            break;
        }
        let (k, v, row_ids) = super::keys::parse_tag_row(&it[fixed..])
            .ok_or_else(|| StorageError::corrupt(&s.path, "malformed tag item"))?;
        let hit =
            super::keys::ids_of(row_ids).any(|id| ids.is_none_or(|set| set.contains(id)) && !deleted.contains(id));
        if !hit {
            s.ts.advance().map_err(ms_err)?;
            continue;
        }
        let val = super::metric_name::unescape(v)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut next = it[..fixed + k.len() + v.len() + 2].to_vec();
        if let Some(last) = next.last_mut() {
            *last = 2;
        }
        f(val);
        s.ts.seek(&next).map_err(ms_err)?;
    }
    Ok(())
}
