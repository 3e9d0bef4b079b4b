//! Flushes of in-memory parts, background merges and forced merges.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, MAX_BACKOFF, MAX_PART_BYTES, MIN_BACKOFF, free_disk_bytes};
use crate::data::merge;
use crate::data::part::{self, Part, PartWriter};
use crate::data::partition::{self, PartEntry, PartKind, Partition};
use crate::error::{Result, StorageError};

impl Inner {
    // ---- merges ----

    /// Merges `srcs` (already marked `in_merge`) into one new part of `dst` and swaps it in.
    pub(super) fn merge_into(
        &self,
        p: &Arc<Partition>,
        srcs: Vec<Arc<PartEntry>>,
        dst: PartKind,
        abortable: bool,
    ) -> Result<()> {
        let started = Instant::now();
        self.counters.merges_running.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("strata_merges_running").increment(1.0);
        let res = self.merge_into_inner(p, &srcs, dst, abortable);
        self.counters.merges_running.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("strata_merges_running").decrement(1.0);
        match res {
            Ok(()) => {
                self.counters.merges_done.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("strata_merges_total", "type" => dst.label()).increment(1);
                metrics::histogram!("strata_merge_duration_seconds", "type" => dst.label())
                    .record(started.elapsed().as_secs_f64());
                if started.elapsed() > Duration::from_secs(30) {
                    tracing::info!(partition = %p.name, parts = srcs.len(), secs = started.elapsed().as_secs(), "long merge");
                }
                self.notify();
                Ok(())
            }
            Err(e) => {
                for s in &srcs {
                    s.in_merge.store(false, Ordering::Release);
                }
                if let StorageError::Corrupt { path, .. } = &e {
                    self.on_corrupt_source(p, &srcs, path, &e);
                }
                Err(e)
            }
        }
    }

    pub(super) fn merge_into_inner(
        &self,
        p: &Arc<Partition>,
        srcs: &[Arc<PartEntry>],
        dst: PartKind,
        abortable: bool,
    ) -> Result<()> {
        let name = self.next_part_name();
        let dir = p.dir_of(dst).join(&name);
        let written = (|| -> Result<Part> {
            if srcs.len() == 1 && srcs[0].part.is_in_memory() && self.opts.dedup_interval_ms == 0 {
                srcs[0].part.write_in_memory_to(&dir)?;
            } else {
                let rows: u64 = srcs.iter().map(|s| s.part.header().rows_count).sum();
                let blocks: u64 = srcs.iter().map(|s| s.part.header().blocks_count).sum();
                let mut level = part::compress_level(rows, blocks);
                if dst == PartKind::Big {
                    level = level.max(3);
                }
                let mut w = PartWriter::create(&dir, level)?;
                let parts: Vec<_> = srcs.iter().map(|s| s.part.clone()).collect();
                let st = merge::merge_parts(&parts, &mut w, &self.rules(abortable))?;
                self.account(&st);
                w.finish(self.opts.dedup_interval_ms)?;
            }
            Part::open(&dir)
        })();
        let part = match written {
            Ok(part) => part,
            Err(e) => {
                if dir.exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let entry = PartEntry::new(part, dst, name);
        let mut lists = p.parts.lock();
        // parts.json first: if it cannot be written (a full disk), the lists stay as they were
        // and the sources keep their data, instead of the new part living in memory only and
        // being removed as unlisted at the next start.
        let keep = entry.part.header().rows_count > 0;
        let names_of = |kind: PartKind, list: &[Arc<PartEntry>]| -> Vec<String> {
            let mut v: Vec<String> = list
                .iter()
                .filter(|e| !srcs.iter().any(|s| Arc::ptr_eq(e, s)))
                .map(|e| e.name.clone())
                .collect();
            if keep && dst == kind {
                v.push(entry.name.clone());
            }
            v
        };
        let names = partition::PartNames {
            small: names_of(PartKind::Small, &lists.small),
            big: names_of(PartKind::Big, &lists.big),
        };
        if let Err(e) = partition::write_parts_json(&p.small_dir.join(partition::PARTS_JSON), &names) {
            entry.must_drop.store(true, Ordering::Release);
            return Err(e);
        }
        for s in srcs {
            let tier = lists.tier(s.kind);
            tier.retain(|e| !Arc::ptr_eq(e, s));
            s.must_drop.store(true, Ordering::Release);
        }
        if keep {
            lists.tier(dst).push(entry);
        } else {
            entry.must_drop.store(true, Ordering::Release);
        }
        Ok(())
    }

    pub(super) fn merge_worker(&self) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::SeqCst) {
            match self.merge_once() {
                Ok(true) => {
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Ok(false) => {}
                Err(StorageError::Unavailable(_)) if self.stop.load(Ordering::SeqCst) => return,
                Err(e) => {
                    self.note_error(&e);
                    tracing::error!(error = %e, "background merge failed");
                    metrics::counter!("strata_storage_errors_total", "kind" => "merge").increment(1);
                }
            }
            if self.sleep(backoff) {
                backoff = MIN_BACKOFF;
            } else {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Runs at most one merge; true if it did.
    pub(super) fn merge_once(&self) -> Result<bool> {
        if self.disk_read_only() {
            // A merge needs room for its output; wait until the guard sees space again.
            return Ok(false);
        }
        let avail = free_disk_bytes(&self.root).saturating_sub(self.opts.min_free_disk_bytes);
        let parts: Vec<_> = self.partitions.read().values().rev().cloned().collect();
        for p in parts {
            for kind in [PartKind::Small, PartKind::Big] {
                let max_out = avail.min(MAX_PART_BYTES);
                let picked: Vec<_> = {
                    let mut lists = p.parts.lock();
                    let cands: Vec<_> = lists
                        .tier(kind)
                        .iter()
                        .filter(|e| !e.in_merge.load(Ordering::Acquire) && !e.broken.load(Ordering::Acquire))
                        .cloned()
                        .collect();
                    let sizes: Vec<u64> = cands.iter().map(|e| e.part.size_bytes()).collect();
                    let sel = partition::select_parts_to_merge(&sizes, max_out, false);
                    sel.into_iter()
                        .map(|i| cands[i].clone())
                        .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                        .collect()
                };
                if picked.len() < 2 {
                    for e in &picked {
                        e.in_merge.store(false, Ordering::Release);
                    }
                    continue;
                }
                let total: u64 = picked.iter().map(|e| e.part.size_bytes()).sum();
                let dst = if kind == PartKind::Big || total > self.opts.max_small_part_bytes {
                    PartKind::Big
                } else {
                    PartKind::Small
                };
                self.merge_into(&p, picked, dst, true)?;
                return Ok(true);
            }
        }
        self.dedup_past_partition()
    }

    /// With deduplication on, a past month whose parts were written with a smaller interval
    /// is merged once more as a whole, so its samples end up deduplicated on disk too
    /// (FORMATS.md §1.10, the historical dedup pass). Only when there is nothing else to do.
    fn dedup_past_partition(&self) -> Result<bool> {
        let d = self.opts.dedup_interval_ms;
        if d <= 0 {
            return Ok(false);
        }
        let now = super::now_ms();
        let parts: Vec<_> = self.partitions.read().values().cloned().collect();
        for p in parts {
            if p.max_ts >= now {
                continue;
            }
            let needs = {
                let lists = p.parts.lock();
                lists.small.iter().chain(&lists.big).any(|e| {
                    e.part.header().min_dedup_interval < d
                        && !e.in_merge.load(Ordering::Acquire)
                        && !e.broken.load(Ordering::Acquire)
                })
            };
            if needs {
                self.force_merge_partition(&p)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn force_merge_partition(&self, p: &Arc<Partition>) -> Result<()> {
        loop {
            let (picked, busy) = {
                let lists = p.parts.lock();
                let file_parts: Vec<_> = lists
                    .small
                    .iter()
                    .chain(&lists.big)
                    .filter(|e| !e.broken.load(Ordering::Acquire))
                    .cloned()
                    .collect();
                let busy = file_parts.iter().any(|e| e.in_merge.load(Ordering::Acquire));
                let free: Vec<_> = file_parts
                    .into_iter()
                    .filter(|e| !e.in_merge.swap(true, Ordering::AcqRel))
                    .collect();
                (free, busy)
            };
            // A lone part is rewritten only if that changes something: dedup with a larger
            // interval than it was written with, or samples past the retention deadline.
            let lone_needs_merge = picked.len() == 1 && {
                let h = picked[0].part.header();
                (self.opts.dedup_interval_ms > 0 && h.min_dedup_interval < self.opts.dedup_interval_ms)
                    || h.min_timestamp < self.retention_deadline()
            };
            if picked.len() < 2 && !lone_needs_merge {
                for e in &picked {
                    e.in_merge.store(false, Ordering::Release);
                }
                if busy && !self.stop.load(Ordering::SeqCst) {
                    // A background merge owns some parts: wait for it, then merge its output.
                    std::thread::sleep(MIN_BACKOFF);
                    continue;
                }
                return Ok(());
            }
            let total: u64 = picked.iter().map(|e| e.part.size_bytes()).sum();
            let avail = free_disk_bytes(&self.root).saturating_sub(self.opts.min_free_disk_bytes);
            if total > avail {
                for e in &picked {
                    e.in_merge.store(false, Ordering::Release);
                }
                return Err(StorageError::Unavailable(format!(
                    "not enough free disk to merge partition {} ({total} bytes needed)",
                    p.name
                )));
            }
            let dst = if total > self.opts.max_small_part_bytes {
                PartKind::Big
            } else {
                PartKind::Small
            };
            self.merge_into(p, picked, dst, true)?;
            if !busy {
                return Ok(());
            }
        }
    }

    /// A merge input failed to decode: keep merges away from it, and with the quarantine
    /// policy move it aside (unlisted first, so a crash cannot leave parts.json naming it).
    fn on_corrupt_source(&self, p: &Partition, srcs: &[Arc<PartEntry>], path: &std::path::Path, err: &StorageError) {
        for s in srcs.iter().filter(|s| path.starts_with(s.part.path())) {
            s.broken.store(true, Ordering::Release);
            metrics::counter!("strata_storage_errors_total", "kind" => "corrupt_part").increment(1);
            if s.kind == PartKind::InMemory || self.opts.on_corrupt_part != crate::data::CorruptPartPolicy::Quarantine {
                continue;
            }
            {
                let mut lists = p.parts.lock();
                lists.tier(s.kind).retain(|e| !Arc::ptr_eq(e, s));
                if let Err(e) = p.write_manifest(&lists) {
                    tracing::error!(partition = %p.name, error = %e, "cannot rewrite parts.json while quarantining");
                    continue;
                }
            }
            self.quarantine(s.part.path(), s.kind, &p.name, &s.name, err);
        }
    }
}
