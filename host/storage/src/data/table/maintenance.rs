//! Periodic work (flushes, retention), stats and metrics, snapshots.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Inner, RETENTION_CHECK};
use crate::data::part;
use crate::data::partition::{self, PartKind, PartNames};
use crate::data::{TableStats, TierStats};
use crate::error::{Result, StorageError};

impl Inner {
    // ---- periodic work ----

    pub(super) fn flush_worker(&self) {
        let mut last_retention = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            self.sleep(self.opts.pending_rows_flush_interval);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let res = {
                let _g = self.flush_lock.lock();
                self.flush_pending().and_then(|()| self.flush_inmemory(false))
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "cannot flush data");
                metrics::counter!("strata_storage_errors_total", "kind" => "flush").increment(1);
            }
            if last_retention.elapsed() >= RETENTION_CHECK {
                last_retention = Instant::now();
                self.enforce_retention();
            }
            self.update_gauges();
        }
    }

    /// Drops partitions and parts wholly older than the retention deadline.
    pub(super) fn enforce_retention(&self) {
        let deadline = self.retention_deadline();
        let mut removed = 0u64;
        {
            let mut map = self.partitions.write();
            let old: Vec<String> = map
                .values()
                .filter(|p| p.max_ts < deadline)
                .map(|p| p.name.clone())
                .collect();
            for name in old {
                if let Some(p) = map.remove(&name) {
                    let lists = p.parts.lock();
                    for e in lists.all() {
                        removed += e.part.header().rows_count;
                        e.must_drop.store(true, Ordering::Release);
                    }
                    p.dropped.store(true, Ordering::Release);
                    tracing::info!(partition = %name, "dropping partition outside retention");
                }
            }
        }
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in parts {
            let mut lists = p.parts.lock();
            let mut changed = false;
            for kind in [PartKind::InMemory, PartKind::Small, PartKind::Big] {
                lists.tier(kind).retain(|e| {
                    let expired = e.part.header().max_timestamp < deadline && !e.in_merge.load(Ordering::Acquire);
                    if expired {
                        removed += e.part.header().rows_count;
                        e.must_drop.store(true, Ordering::Release);
                        changed |= kind != PartKind::InMemory;
                    }
                    !expired
                });
            }
            if changed && let Err(e) = p.write_manifest(&lists) {
                tracing::error!(partition = %p.name, error = %e, "cannot rewrite parts.json after retention");
            }
        }
        self.counters.retention_removed.fetch_add(removed, Ordering::Relaxed);
        metrics::counter!("strata_retention_samples_removed_total").increment(removed);
    }

    pub(super) fn stats(&self) -> TableStats {
        let mut st = TableStats::default();
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        st.partitions = parts.len() as u64;
        for p in parts {
            let lists = p.parts.lock();
            for e in lists.all() {
                let t: &mut TierStats = match e.kind {
                    PartKind::InMemory => &mut st.inmemory,
                    PartKind::Small => &mut st.small,
                    PartKind::Big => &mut st.big,
                };
                t.parts += 1;
                t.rows += e.part.header().rows_count;
                t.blocks += e.part.header().blocks_count;
                t.bytes += e.part.size_bytes();
            }
        }
        st.pending_rows = self.shards.iter().map(|s| s.lock().len() as u64).sum();
        let c = &self.counters;
        st.rows_added = c.rows_added.load(Ordering::Relaxed);
        st.rows_dropped = c.rows_dropped.load(Ordering::Relaxed);
        st.merges_running = c.merges_running.load(Ordering::Relaxed);
        st.merges_done = c.merges_done.load(Ordering::Relaxed);
        st.dedup_removed = c.dedup_removed.load(Ordering::Relaxed);
        st.retention_removed = c.retention_removed.load(Ordering::Relaxed);
        st.quarantined_parts = c.quarantined.load(Ordering::Relaxed);
        st
    }

    pub(super) fn update_gauges(&self) {
        let st = self.stats();
        for (label, t) in [("inmemory", st.inmemory), ("small", st.small), ("big", st.big)] {
            metrics::gauge!("strata_parts", "type" => label).set(t.parts as f64);
            metrics::gauge!("strata_rows", "type" => label).set(t.rows as f64);
            metrics::gauge!("strata_blocks", "type" => label).set(t.blocks as f64);
            metrics::gauge!("strata_data_size_bytes", "type" => label).set(t.bytes as f64);
        }
        metrics::gauge!("strata_pending_rows").set(st.pending_rows as f64);
        metrics::gauge!("strata_partitions").set(st.partitions as f64);
    }

    // ---- snapshots ----

    pub(super) fn snapshot(&self, dst: &Path) -> Result<()> {
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in parts {
            // Holding the entries keeps their directories alive even if a merge replaces them.
            let (small, big) = {
                let lists = p.parts.lock();
                (lists.small.clone(), lists.big.clone())
            };
            let sdir = dst.join("small").join(&p.name);
            let bdir = dst.join("big").join(&p.name);
            for d in [&sdir, &bdir] {
                strata_fsutil::create_dir_all_durable(d).map_err(|e| StorageError::io("cannot create", d, e))?;
            }
            for (list, base) in [(&small, &sdir), (&big, &bdir)] {
                for e in list {
                    let to = base.join(&e.name);
                    std::fs::create_dir(&to).map_err(|err| StorageError::io("cannot create", &to, err))?;
                    for f in part::PART_FILES {
                        let from = e.part.path().join(f);
                        std::fs::hard_link(&from, to.join(f))
                            .map_err(|err| StorageError::io("cannot link", &from, err))?;
                    }
                    strata_fsutil::fsync_dir(&to).map_err(|err| StorageError::io("cannot fsync", &to, err))?;
                }
                strata_fsutil::fsync_dir(base).map_err(|err| StorageError::io("cannot fsync", base, err))?;
            }
            let names = PartNames {
                small: small.iter().map(|e| e.name.clone()).collect(),
                big: big.iter().map(|e| e.name.clone()).collect(),
            };
            partition::write_parts_json(&sdir.join(partition::PARTS_JSON), &names)?;
        }
        Ok(())
    }
}
