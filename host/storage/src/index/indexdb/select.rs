//! The read path of the index: series ids for tag filters (global or per day), their names,
//! and deletion by filters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, MAX_CACHED_RESULTS, MAX_DAYS_FOR_PER_DAY_SEARCH, ResultKey, day_of};
use crate::index::TagFilter;
use crate::index::filters::{Compiled, compile};
use crate::index::keys::NS_DELETED;
use crate::index::metric_name::CanonicalName;
use crate::index::search::{Searcher, ms_err};
use crate::index::uint64set::Uint64Set;
use crate::{Result, StorageError, Tenant, TimeRange};

impl Inner {
    pub(in crate::index) fn search_ids(
        &self,
        tenant: Tenant,
        filters: &[TagFilter],
        tr: TimeRange,
        max: usize,
    ) -> Result<Uint64Set> {
        let compiled = filters.iter().map(compile).collect::<Result<Vec<_>>>()?;
        let dates = Self::dates(tr);
        let span = match (dates.first(), dates.last()) {
            (Some(Some(a)), Some(Some(b))) => Some((*a, *b)),
            _ => None,
        };
        let key: ResultKey = (tenant, filters.to_vec(), span);
        let version = self.version.load(Ordering::Acquire);
        let cached = self
            .results
            .lock()
            .map
            .get(&key)
            .filter(|(v, _)| *v == version)
            .map(|(_, ids)| ids.clone());
        let ids = match cached {
            Some(ids) => ids,
            None => {
                let mut ids = self.eval_all(tenant, &compiled, tr)?;
                ids.subtract(&self.deleted.0.read());
                let ids = Arc::new(ids);
                let mut rc = self.results.lock();
                let limit = self.opts.cache_bytes / 32;
                if rc.map.len() >= MAX_CACHED_RESULTS || rc.bytes + ids.heap_bytes() > limit {
                    rc.map.clear();
                    rc.bytes = 0;
                }
                if ids.heap_bytes() <= limit {
                    rc.bytes += ids.heap_bytes();
                    rc.map.insert(key, (version, ids.clone()));
                }
                ids
            }
        };
        let ids = Arc::unwrap_or_clone(ids);
        if ids.len() > max {
            return Err(StorageError::TooManySeries { limit: max });
        }
        Ok(ids)
    }

    /// The dates to search for `tr`: one per day, or `[None]` (the global index).
    pub(in crate::index) fn dates(tr: TimeRange) -> Vec<Option<u64>> {
        if tr.max < tr.min || tr.max < 0 {
            return Vec::new();
        }
        let (a, b) = (day_of(tr.min), day_of(tr.max));
        if b - a + 1 > MAX_DAYS_FOR_PER_DAY_SEARCH {
            vec![None]
        } else {
            (a..=b).map(Some).collect()
        }
    }

    fn eval_all(&self, tenant: Tenant, filters: &[Compiled], tr: TimeRange) -> Result<Uint64Set> {
        let mut out = Uint64Set::new();
        for t in self.tables.read().all() {
            let mut s = t.searcher(tenant, false);
            for d in Self::dates(tr) {
                out.union_with(&s.eval(d, filters)?);
            }
        }
        Ok(out)
    }

    pub(in crate::index) fn names_of(&self, tenant: Tenant, ids: &Uint64Set) -> Result<Vec<CanonicalName>> {
        let mut searchers: Vec<Searcher> = self
            .tables
            .read()
            .all()
            .iter()
            .map(|t| t.searcher(tenant, false))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids.to_vec() {
            for s in &mut searchers {
                if let Some(cn) = s.name_of(id)? {
                    out.push(cn);
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn delete_series(&self, tenant: Tenant, filters: &[TagFilter]) -> Result<u64> {
        let compiled = filters.iter().map(compile).collect::<Result<Vec<_>>>()?;
        let mut ids = Uint64Set::new();
        let tables = self.tables.read().all();
        for t in &tables {
            ids.union_with(&t.searcher(tenant, false).eval(None, &compiled)?);
        }
        ids.subtract(&self.deleted.0.read());
        if ids.is_empty() {
            return Ok(0);
        }
        // Memory first (invisible at once), then the durable record (FORMATS.md §1.12).
        self.deleted.0.write().union_with(&ids);
        self.version.fetch_add(1, Ordering::Release);
        let items: Vec<[u8; 9]> = ids
            .to_vec()
            .into_iter()
            .map(|id| {
                let mut k = [NS_DELETED; 9];
                k[1..].copy_from_slice(&id.to_be_bytes());
                k
            })
            .collect();
        tables[0].t().add_items(items.iter().map(|k| k.as_slice()));
        self.version.fetch_add(1, Ordering::Release);
        tables[0].t().flush().map_err(ms_err)?;
        metrics::counter!("strata_index_deleted_series_total").increment(ids.len() as u64);
        Ok(ids.len() as u64)
    }
}
