//! The write path of the index: a TSID for a metric name, created with its global and per-day
//! entries when the name is new.

use std::sync::atomic::Ordering;

use super::{IdxTable, Inner, MAX_NAME_BYTES, SEEN_DAYS, day_of, hash128};
use crate::index::Label;
use crate::index::keys::{NS_DATE_TO_ID, NS_ID_TO_NAME, NS_ID_TO_TSID, name_to_tsid_prefix, tag_prefix, tenant_prefix};
use crate::index::metric_name::{CanonicalName, marshal_raw, put_tag_part};
use crate::index::search::ms_err;
use crate::{DeletedMetricIds, Result, StorageError, Tenant, Tsid};

impl Inner {
    pub(super) fn get_or_create_tsid(&self, tenant: Tenant, labels: &[Label<'_>], ts: i64) -> Result<Tsid> {
        let mut raw = Vec::with_capacity(160);
        marshal_raw(&mut raw, tenant, labels)?;
        let key = hash128(&raw);
        let h1 = key.0;
        let date = day_of(ts);
        let curr = self.tables.read().curr.clone();
        if let Some((tsid, generation)) = self.name_cache.get(&key, h1)
            && !self.deleted.contains(tsid.metric_id)
        {
            if generation == curr.generation {
                self.ensure_per_day(&curr, tsid, date, None, labels, false)?;
                return Ok(tsid);
            }
            // Known from the previous table: register it in the current one, same TSID.
            let cn = CanonicalName::from_labels(tenant, labels)?;
            self.register_global(&curr, &cn, tsid);
            self.name_cache.put(key, h1, (tsid, curr.generation));
            self.ensure_per_day(&curr, tsid, date, Some(&cn), labels, false)?;
            return Ok(tsid);
        }
        let cn = CanonicalName::from_labels(tenant, labels)?;
        let mut mn = Vec::with_capacity(raw.len() + 16);
        cn.marshal(&mut mn);
        if mn.len() > MAX_NAME_BYTES {
            // Index items hold the whole name and mergeset drops items over 64 KiB.
            return Err(StorageError::InvalidInput(format!(
                "series name of {} bytes exceeds the limit of {MAX_NAME_BYTES} bytes",
                mn.len()
            )));
        }
        let guard = self.create_lock.lock();
        let curr = self.tables.read().curr.clone();
        if let Some((tsid, generation)) = self.name_cache.get(&key, h1)
            && generation == curr.generation
            && !self.deleted.contains(tsid.metric_id)
        {
            drop(guard);
            self.ensure_per_day(&curr, tsid, date, Some(&cn), labels, false)?;
            return Ok(tsid);
        }
        let prev = self.tables.read().prev.clone();
        let mn_key = hash128(&mn);
        let recent = self
            .recent
            .lock()
            .get(mn_key)
            .filter(|id| !self.deleted.contains(*id))
            .map(|id| cn.tsid(id));
        let (tsid, is_new) = if let Some(t) = recent {
            (t, false)
        } else if let Some(t) = self.lookup_name(&curr, tenant, &mn, mn_key)? {
            (t, false)
        } else if let Some(t) = match &prev {
            Some(p) => self.lookup_name(p, tenant, &mn, mn_key)?,
            None => None,
        } {
            self.register_global(&curr, &cn, t);
            (t, false)
        } else {
            let t = cn.tsid(self.next_metric_id.fetch_add(1, Ordering::Relaxed));
            self.register_global(&curr, &cn, t);
            self.recent.lock().put(mn_key, t.metric_id);
            metrics::counter!("strata_index_new_series_total").increment(1);
            (t, true)
        };
        self.name_cache.put(key, h1, (tsid, curr.generation));
        drop(guard);
        self.ensure_per_day(&curr, tsid, date, Some(&cn), labels, is_new)?;
        Ok(tsid)
    }

    /// A live TSID registered under this canonical name in `t`.
    fn lookup_name(&self, t: &IdxTable, tenant: Tenant, mn: &[u8], mn_key: (u64, u64)) -> Result<Option<Tsid>> {
        if !t.names.may_contain(mn_key) {
            return Ok(None);
        }
        let p = name_to_tsid_prefix(mn);
        let mut s = t.searcher(tenant, true);
        let mut found = None;
        s.ts.for_each_with_prefix(&p, |it| match Tsid::unmarshal(&it[p.len()..]) {
            Some((tsid, _)) if !self.deleted.contains(tsid.metric_id) => {
                found = Some(tsid);
                false
            }
            _ => true,
        })
        .map_err(ms_err)?;
        Ok(found)
    }

    /// Writes the global entries of a series into `t`.
    fn register_global(&self, t: &IdxTable, cn: &CanonicalName, tsid: Tsid) {
        let mut mn = Vec::with_capacity(128);
        cn.marshal(&mut mn);
        t.names.add(hash128(&mn));
        let id = tsid.metric_id.to_be_bytes();
        let mut tsid_b = Vec::with_capacity(32);
        tsid.marshal(&mut tsid_b);
        let mut items: Vec<Vec<u8>> = Vec::with_capacity(cn.tags.len() + 5);
        let mut a = name_to_tsid_prefix(&mn);
        a.extend_from_slice(&tsid_b);
        items.push(a);
        tag_items(&mut items, cn, None, &id);
        let mut b = tenant_prefix(NS_ID_TO_TSID, cn.tenant);
        b.extend_from_slice(&id);
        b.extend_from_slice(&tsid_b);
        items.push(b);
        let mut c = tenant_prefix(NS_ID_TO_NAME, cn.tenant);
        c.extend_from_slice(&id);
        c.extend_from_slice(&mn);
        items.push(c);
        t.t().add_items(items.iter().map(|v| v.as_slice()));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Writes per-day entries for (date, series) unless already done.
    fn ensure_per_day(
        &self,
        t: &IdxTable,
        tsid: Tsid,
        date: u64,
        cn: Option<&CanonicalName>,
        labels: &[Label<'_>],
        is_new: bool,
    ) -> Result<()> {
        let id = tsid.metric_id;
        if self.seen.lock().get(&date).is_some_and(|s| s.contains(id)) {
            return Ok(());
        }
        let mut k = tenant_prefix(NS_DATE_TO_ID, tsid.tenant);
        k.extend_from_slice(&date.to_be_bytes());
        k.extend_from_slice(&id.to_be_bytes());
        let exists = !is_new && t.searcher(tsid.tenant, true).ts.contains(&k).map_err(ms_err)?;
        if !exists {
            let owned;
            let cn = match cn {
                Some(c) => c,
                None => {
                    owned = CanonicalName::from_labels(tsid.tenant, labels)?;
                    &owned
                }
            };
            let mut items = vec![k];
            tag_items(&mut items, cn, Some(date), &id.to_be_bytes());
            t.t().add_items(items.iter().map(|v| v.as_slice()));
            self.version.fetch_add(1, Ordering::Release);
        }
        let mut seen = self.seen.lock();
        seen.entry(date).or_default().add(id);
        if seen.len() > SEEN_DAYS
            && let Some(&oldest) = seen.keys().min()
        {
            seen.remove(&oldest);
        }
        Ok(())
    }
}

/// Inverted-index items for the name and every label of `cn` (global or for `date`).
fn tag_items(items: &mut Vec<Vec<u8>>, cn: &CanonicalName, date: Option<u64>, id: &[u8; 8]) {
    let base = tag_prefix(cn.tenant, date);
    let mut push = |k: &str, v: &str| {
        let mut it = Vec::with_capacity(base.len() + k.len() + v.len() + 10);
        it.extend_from_slice(&base);
        put_tag_part(&mut it, k.as_bytes());
        put_tag_part(&mut it, v.as_bytes());
        it.extend_from_slice(id);
        items.push(it);
    };
    if !cn.name.is_empty() {
        push("", &cn.name);
    }
    for (k, v) in &cn.tags {
        push(k, v);
    }
}
