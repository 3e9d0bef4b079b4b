//! The data (samples) side of the engine (FORMATS.md §1.4–§1.14): blocks, parts, monthly
//! partitions, background flushes and merges.
//!
//! Flow: [`Table::add_rows`] buffers rows in shards; every `pending_rows_flush_interval` they
//! become a searchable in-memory part; every `inmemory_flush_interval` in-memory parts are
//! written to a small part on disk and listed in `parts.json`; background workers merge parts,
//! applying deduplication, retention and deleted-series removal.
//!
//! Metrics (the `metrics` facade): counters `strata_rows_added_total`,
//! `strata_rows_dropped_total{reason=retention|future|nan}`, `strata_merges_total{type}`,
//! `strata_dedup_samples_removed_total`, `strata_retention_samples_removed_total`,
//! `strata_deleted_samples_removed_total`, `strata_parts_quarantined_total`,
//! `strata_storage_errors_total{kind=merge|flush|corrupt_part}`; gauges `strata_pending_rows`,
//! `strata_partitions`, `strata_merges_running`, and per `type=inmemory|small|big`
//! `strata_parts`, `strata_rows`, `strata_blocks`, `strata_data_size_bytes`; histogram
//! `strata_merge_duration_seconds{type}`. Gauges refresh every pending-rows flush tick.

pub mod block;
pub mod merge;
pub mod part;
pub mod partition;
mod table;

use std::sync::Arc;
use std::time::Duration;

pub use table::Table;

use crate::diskguard::DiskGuard;
use crate::tsid::Tsid;

/// The callback of [`Table::search`]: one series, its timestamps and values.
pub type SeriesVisitor<'a> = dyn FnMut(&Tsid, &[i64], &[f64]) -> crate::error::Result<()> + 'a;

/// One sample of one series, as the ingest path hands it over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawRow {
    /// The series.
    pub tsid: Tsid,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The value (the stale marker is kept; other NaNs are dropped).
    pub value: f64,
}

/// What to do with a listed part that cannot be opened (`storage.on_corrupt_part`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CorruptPartPolicy {
    /// Refuse to open the table; the error names the part.
    #[default]
    Fail,
    /// Move the part to `<data>/quarantine/`, log and count it, and go on without it.
    Quarantine,
}

/// Table settings.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Samples older than this are invisible and get removed. Default 31 days.
    pub retention: Duration,
    /// How often in-memory parts reach disk. Default 5 s.
    pub inmemory_flush_interval: Duration,
    /// How often buffered rows become searchable. Default 1 s.
    pub pending_rows_flush_interval: Duration,
    /// Deduplication interval in ms (FORMATS.md §1.10); 0 = off.
    pub dedup_interval_ms: i64,
    /// Listed parts that fail to open.
    pub on_corrupt_part: CorruptPartPolicy,
    /// Merges whose output would leave less free disk than this are skipped.
    pub min_free_disk_bytes: u64,
    /// Merge outputs larger than this go to `big/`. Default 256 MiB.
    pub max_small_part_bytes: u64,
    /// Log every sample to `<data>/wal/` and acknowledge writes only once it is fsynced (read
    /// by `Storage::open`; the table itself ignores it). Default off.
    pub wal: bool,
    /// With the WAL: zero fsyncs it before every acknowledgement (survives power loss); a
    /// longer interval acknowledges once the records are written to the file (survives the
    /// process being killed) and fsyncs at most this much later. Default 100 ms.
    pub wal_sync_interval: Duration,
    /// With the WAL: how often a checkpoint starts a new segment and deletes the closed ones
    /// (a segment is also closed when it reaches its size cap). Series labels are logged once
    /// per segment, so this sets how often a slowly sent series pays for its labels. Default 60 s.
    pub wal_checkpoint_interval: Duration,
    /// Read-only switch: while it is on, merges wait; `ENOSPC` from a flush or merge turns it on.
    pub disk_guard: Option<Arc<DiskGuard>>,
    /// Runs before in-memory parts are written to disk; if it fails they stay in memory. The
    /// storage flushes the index here, so a part on disk never holds series the index lost.
    pub before_disk_flush: Option<FlushHook>,
}

/// A callback run before in-memory parts go to disk (see [`TableOptions::before_disk_flush`]).
#[derive(Clone)]
pub struct FlushHook(pub Arc<dyn Fn() -> crate::error::Result<()> + Send + Sync>);

impl std::fmt::Debug for FlushHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushHook")
    }
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(31 * 24 * 3600),
            inmemory_flush_interval: Duration::from_secs(5),
            pending_rows_flush_interval: Duration::from_secs(1),
            dedup_interval_ms: 0,
            on_corrupt_part: CorruptPartPolicy::Fail,
            min_free_disk_bytes: 100_000_000,
            max_small_part_bytes: 256 << 20,
            wal: false,
            wal_sync_interval: Duration::from_millis(100),
            wal_checkpoint_interval: Duration::from_secs(60),
            disk_guard: None,
            before_disk_flush: None,
        }
    }
}

/// Counts for one part tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Parts.
    pub parts: u64,
    /// Samples.
    pub rows: u64,
    /// Blocks.
    pub blocks: u64,
    /// Bytes (files, or buffers for in-memory parts).
    pub bytes: u64,
}

/// A snapshot of the table's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// In-memory parts.
    pub inmemory: TierStats,
    /// Small parts.
    pub small: TierStats,
    /// Big parts.
    pub big: TierStats,
    /// Partitions.
    pub partitions: u64,
    /// Rows buffered, not yet searchable.
    pub pending_rows: u64,
    /// Rows accepted by `add_rows` since open.
    pub rows_added: u64,
    /// Rows dropped by `add_rows` (outside retention, too far in the future, NaN).
    pub rows_dropped: u64,
    /// Merges in progress.
    pub merges_running: u64,
    /// Merges finished since open (including in-memory flushes).
    pub merges_done: u64,
    /// Samples removed by deduplication since open.
    pub dedup_removed: u64,
    /// Samples removed by retention (merges and part drops) since open.
    pub retention_removed: u64,
    /// Parts moved to quarantine at open.
    pub quarantined_parts: u64,
}
