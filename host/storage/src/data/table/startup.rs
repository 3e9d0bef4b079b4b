//! Opening a table: partitions, parts.json, removal of unlisted parts, quarantine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;
use crate::data::CorruptPartPolicy;
use crate::data::part::{self, Part};
use crate::data::partition::{self, PartEntry, PartKind, PartLists, PartNames, Partition};
use crate::error::{Result, StorageError};

impl Inner {
    // ---- start-up ----

    pub(super) fn load_partitions(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for sub in ["small", "big"] {
            let d = self.root.join(sub);
            let rd = std::fs::read_dir(&d).map_err(|e| StorageError::io("cannot list", &d, e))?;
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                if partition::month_range(&name).is_some() && ent.path().is_dir() {
                    names.insert(name);
                }
            }
        }
        let mut max_seq = 0u64;
        for name in names {
            let Some(p) = Partition::new(&self.root, &name) else {
                continue;
            };
            self.load_partition(&p, &mut max_seq)?;
            self.partitions.write().insert(name, Arc::new(p));
        }
        self.part_seq.fetch_max(max_seq + 1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn load_partition(&self, p: &Partition, max_seq: &mut u64) -> Result<()> {
        let pj = p.small_dir.join(partition::PARTS_JSON);
        let listed = partition::read_parts_json(&pj)?;
        let mut rewrite = false;
        let names = match listed {
            Some(n) => n,
            None => {
                // No manifest: take the complete part dirs (metadata.json is written last).
                rewrite = true;
                PartNames {
                    small: complete_parts(&p.small_dir),
                    big: complete_parts(&p.big_dir),
                }
            }
        };
        p.create_dirs()?;
        let mut lists = PartLists::default();
        for (kind, list) in [(PartKind::Small, &names.small), (PartKind::Big, &names.big)] {
            for name in list {
                let dir = p.dir_of(kind).join(name);
                if let Ok(seq) = u64::from_str_radix(name, 16) {
                    *max_seq = (*max_seq).max(seq);
                }
                let opened = if dir.is_dir() {
                    Part::open(&dir)
                } else {
                    Err(StorageError::corrupt(&dir, "listed in parts.json but missing"))
                };
                match opened {
                    Ok(part) => lists.tier(kind).push(PartEntry::new(part, kind, name.clone())),
                    Err(e) if self.opts.on_corrupt_part == CorruptPartPolicy::Quarantine => {
                        self.quarantine(&dir, kind, &p.name, name, &e);
                        rewrite = true;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Anything not listed is a leftover of a crash (a part written but never listed, or
        // a merge output that never got swapped in).
        for (kind, list) in [(PartKind::Small, &names.small), (PartKind::Big, &names.big)] {
            let d = p.dir_of(kind);
            let rd = std::fs::read_dir(d).map_err(|e| StorageError::io("cannot list", d, e))?;
            for ent in rd.flatten() {
                let n = ent.file_name().to_string_lossy().into_owned();
                if n == partition::PARTS_JSON || list.contains(&n) {
                    continue;
                }
                let path = ent.path();
                tracing::info!(path = %path.display(), "removing unlisted part left by an unclean shutdown");
                let r = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                r.map_err(|e| StorageError::io("cannot remove", &path, e))?;
            }
            strata_fsutil::fsync_dir(d).map_err(|e| StorageError::io("cannot fsync", d, e))?;
        }
        if rewrite {
            p.write_manifest(&lists)?;
        }
        *p.parts.lock() = lists;
        Ok(())
    }

    pub(super) fn quarantine(&self, dir: &Path, kind: PartKind, partition: &str, name: &str, err: &StorageError) {
        let qdir = self.root.parent().unwrap_or(&self.root).join("quarantine");
        let dst = qdir.join(format!("{}_{partition}_{name}", kind.label()));
        let moved = strata_fsutil::create_dir_all_durable(&qdir).and_then(|()| {
            if dir.exists() {
                std::fs::rename(dir, &dst)
            } else {
                Ok(())
            }
        });
        tracing::error!(part = %dir.display(), quarantine = %dst.display(), error = %err, moved = moved.is_ok(),
            "quarantined a part that cannot be opened");
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strata_parts_quarantined_total").increment(1);
    }
}

fn complete_parts(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join(part::METADATA_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
