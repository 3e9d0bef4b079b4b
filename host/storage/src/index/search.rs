//! Evaluation of compiled filters against one index table (FORMATS.md §4.4, simplified: a
//! static cost order instead of remembered loop counts).

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_mergeset::TableSearch;

use super::filters::{Compiled, ValueMatch};
use super::keys::{
    NS_ID_TO_NAME, NS_ID_TO_TSID, all_ids_prefix, be_u64, ids_of, parse_tag_row, tag_prefix, tenant_prefix,
};
use super::metric_name::{CanonicalName, escape_into, put_tag_part, unescape};
use super::uint64set::Uint64Set;
use crate::{Result, StorageError, Tenant, Tsid};

/// Below this many candidates, remaining filters are checked on the series names instead of
/// scanning the index (a name lookup is one seek; a label scan may read millions of rows).
/// A static so tests can force either path.
static MATCH_BY_NAME_BELOW: AtomicUsize = AtomicUsize::new(1000);

/// Sets the candidate count below which filters are matched on series names rather than the
/// index. For tests that must exercise both paths; not a tuning knob.
#[doc(hidden)]
pub fn set_match_by_name_below(n: usize) {
    MATCH_BY_NAME_BELOW.store(n, Ordering::Relaxed);
}
/// Rows with at least this many ids are skipped by a seek rather than read.
const SKIP_ROW_IDS: usize = 32;

/// Index reads for one tenant over one table snapshot.
pub(crate) struct Searcher {
    pub ts: TableSearch,
    pub tenant: Tenant,
    /// Where the table came from, for corruption messages.
    pub path: std::path::PathBuf,
}

fn corrupt(path: &std::path::Path, what: &str) -> StorageError {
    StorageError::corrupt(path, format!("malformed {what} item"))
}

pub(crate) fn ms_err(e: strata_mergeset::Error) -> StorageError {
    match e {
        strata_mergeset::Error::Io { op, path, source } => StorageError::Io { op, path, source },
        strata_mergeset::Error::Corrupt { path, detail } => StorageError::Corrupt { path, detail },
    }
}

impl Searcher {
    fn corrupt(&self, what: &str) -> StorageError {
        corrupt(&self.path, what)
    }

    /// Adds the ids of every row starting with `prefix` (which ends inside a tag row).
    fn add_rows(&mut self, prefix: &[u8], fixed: usize, out: &mut Uint64Set) -> Result<()> {
        self.ts.seek(prefix).map_err(ms_err)?;
        let mut batch = Vec::new();
        while let Some(it) = self.ts.item() {
            if !it.starts_with(prefix) {
                break;
            }
            let (_, _, ids) = parse_tag_row(&it[fixed..]).ok_or_else(|| corrupt(&self.path, "tag"))?;
            batch.extend(ids_of(ids));
            self.ts.advance().map_err(ms_err)?;
        }
        out.add_many(batch);
        Ok(())
    }

    /// Ids of series whose value for `f.key` is present and matches `f`'s pattern.
    pub fn pattern_ids(&mut self, date: Option<u64>, f: &Compiled) -> Result<Uint64Set> {
        let tagp = tag_prefix(self.tenant, date);
        let fixed = tagp.len();
        let mut base = tagp;
        put_tag_part(&mut base, f.key.as_bytes());
        let mut out = Uint64Set::new();
        match &f.vm {
            ValueMatch::Values(vs) => {
                for v in vs {
                    let mut k = base.clone();
                    put_tag_part(&mut k, v.as_bytes());
                    self.add_rows(&k, fixed, &mut out)?;
                }
            }
            ValueMatch::Prefix { prefix, re } => {
                escape_into(&mut base, prefix.as_bytes());
                if re.is_none() {
                    self.add_rows(&base, fixed, &mut out)?;
                    return Ok(out);
                }
                self.ts.seek(&base).map_err(ms_err)?;
                let mut batch = Vec::new();
                let mut last: Vec<u8> = Vec::new();
                let mut last_match = false;
                let mut have_last = false;
                while let Some(it) = self.ts.item() {
                    if !it.starts_with(&base) {
                        break;
                    }
                    let (k, v, ids) = parse_tag_row(&it[fixed..]).ok_or_else(|| corrupt(&self.path, "tag"))?;
                    if !have_last || v != last.as_slice() {
                        last.clear();
                        last.extend_from_slice(v);
                        have_last = true;
                        let val = unescape(v)
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or_else(|| corrupt(&self.path, "tag"))?;
                        last_match = f.pattern_matches(&val);
                    }
                    if last_match {
                        batch.extend(ids_of(ids));
                        self.ts.advance().map_err(ms_err)?;
                    } else if ids.len() / 8 >= SKIP_ROW_IDS {
                        let mut skip = it[..fixed + k.len() + v.len() + 2].to_vec();
                        *skip.last_mut().unwrap_or(&mut 0) = 2;
                        self.ts.seek(&skip).map_err(ms_err)?;
                    } else {
                        self.ts.advance().map_err(ms_err)?;
                    }
                }
                out.add_many(batch);
            }
        }
        Ok(out)
    }

    /// Ids of series that have label `key`.
    pub fn present_ids(&mut self, date: Option<u64>, key: &str) -> Result<Uint64Set> {
        let tagp = tag_prefix(self.tenant, date);
        let fixed = tagp.len();
        let mut base = tagp;
        put_tag_part(&mut base, key.as_bytes());
        let mut out = Uint64Set::new();
        self.add_rows(&base, fixed, &mut out)?;
        Ok(out)
    }

    /// Every series of the tenant (global) or active on `date`.
    pub fn universe(&mut self, date: Option<u64>) -> Result<Uint64Set> {
        let p = all_ids_prefix(self.tenant, date);
        let mut batch = Vec::new();
        let mut bad = false;
        self.ts
            .for_each_with_prefix(&p, |it| match be_u64(&it[p.len()..]) {
                Some(id) => {
                    batch.push(id);
                    true
                }
                None => {
                    bad = true;
                    false
                }
            })
            .map_err(ms_err)?;
        if bad {
            return Err(self.corrupt("id"));
        }
        let mut out = Uint64Set::new();
        out.add_many(batch);
        Ok(out)
    }

    /// The canonical name of series `id`.
    pub fn name_of(&mut self, id: u64) -> Result<Option<CanonicalName>> {
        let mut p = tenant_prefix(NS_ID_TO_NAME, self.tenant);
        p.extend_from_slice(&id.to_be_bytes());
        let Some(it) = self.ts.first_item_with_prefix(&p).map_err(ms_err)? else {
            return Ok(None);
        };
        let cn = CanonicalName::unmarshal(&it[p.len()..]).ok_or_else(|| corrupt(&self.path, "metric name"))?;
        Ok(Some(cn))
    }

    /// The TSID of series `id`.
    pub fn tsid_of(&mut self, id: u64) -> Result<Option<Tsid>> {
        let mut p = tenant_prefix(NS_ID_TO_TSID, self.tenant);
        p.extend_from_slice(&id.to_be_bytes());
        let Some(it) = self.ts.first_item_with_prefix(&p).map_err(ms_err)? else {
            return Ok(None);
        };
        let (tsid, _) = Tsid::unmarshal(&it[p.len()..]).ok_or_else(|| corrupt(&self.path, "tsid"))?;
        Ok(Some(tsid))
    }

    /// Moves the TSIDs of the ids in `left` found in this table into `out`, in one scan.
    pub fn tsids_scan(&mut self, left: &mut Uint64Set, out: &mut Vec<Tsid>) -> Result<()> {
        let p = tenant_prefix(NS_ID_TO_TSID, self.tenant);
        let mut bad = false;
        self.ts
            .for_each_with_prefix(&p, |it| {
                let rest = &it[p.len()..];
                match (be_u64(rest), rest.get(8..).and_then(Tsid::unmarshal)) {
                    (Some(id), Some((tsid, _))) => {
                        if left.remove(id) {
                            out.push(tsid);
                        }
                        !left.is_empty()
                    }
                    _ => {
                        bad = true;
                        false
                    }
                }
            })
            .map_err(ms_err)?;
        if bad {
            return Err(corrupt(&self.path, "tsid"));
        }
        Ok(())
    }

    /// The ids matching every filter, for one day or (`None`) the whole table.
    pub fn eval(&mut self, date: Option<u64>, filters: &[Compiled]) -> Result<Uint64Set> {
        let mut filters: Vec<&Compiled> = filters.iter().filter(|f| !f.matches_everything()).collect();
        filters.sort_by_key(|f| (f.negative || f.matches_empty, f.cost()));
        let split = filters
            .iter()
            .position(|f| f.negative || f.matches_empty)
            .unwrap_or(filters.len());
        let (pos, rest) = filters.split_at(split);
        let mut result: Option<Uint64Set> = None;
        for f in pos {
            let s = self.pattern_ids(date, f)?;
            result = Some(match result {
                None => s,
                Some(mut r) => {
                    r.intersect_with(&s);
                    r
                }
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return Ok(Uint64Set::new());
            }
        }
        let mut result = match result {
            Some(r) => r,
            None => self.universe(date)?,
        };
        for (i, f) in rest.iter().enumerate() {
            if result.is_empty() {
                break;
            }
            if result.len() < MATCH_BY_NAME_BELOW.load(Ordering::Relaxed) {
                return self.filter_by_names(result, &rest[i..]);
            }
            let s = self.pattern_ids(date, f)?;
            if !f.negative {
                // Matches the empty value too: drop series whose present value fails.
                let mut fail = self.present_ids(date, &f.key)?;
                fail.subtract(&s);
                result.subtract(&fail);
            } else if f.matches_empty {
                // Negated and the pattern accepts "": only series with a failing present value.
                let mut keep = self.present_ids(date, &f.key)?;
                keep.subtract(&s);
                result.intersect_with(&keep);
            } else {
                result.subtract(&s);
            }
        }
        Ok(result)
    }

    fn filter_by_names(&mut self, ids: Uint64Set, filters: &[&Compiled]) -> Result<Uint64Set> {
        let mut out = Uint64Set::new();
        for id in ids.to_vec() {
            let Some(cn) = self.name_of(id)? else { continue };
            if filters.iter().all(|f| f.series_matches(cn.value_of(&f.key))) {
                out.add(id);
            }
        }
        Ok(out)
    }
}
