//! The time-series storage engine (DESIGN.md §3, FORMATS.md §0–§4).
//!
//! Two halves meet here: the data side (samples: codecs, blocks, parts, partitions, merges) and
//! the index side (MetricName → TSID, inverted indexes, series search). They share only
//! [`Tsid`], [`Tenant`], [`TimeRange`] and [`StorageError`]. This crate never depends on the
//! network, the query engine or wasm.

pub mod data;
pub mod deleted;
pub mod diskguard;
mod durability;
pub mod encoding;
pub mod error;
pub mod index;
pub mod storage;
pub mod tsid;
pub mod wal;

pub use deleted::{DeletedMetricIds, NoDeletedMetricIds};
pub use error::{Result, StorageError};
pub use storage::{SharedStorage, Storage, StorageOptions};
pub use tsid::{TSID_SIZE, Tenant, TimeRange, Tsid};
