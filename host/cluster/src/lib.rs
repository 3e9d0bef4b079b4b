//! The cluster: node-to-node protocol and the storage, insert and select roles (DESIGN.md §2,
//! FORMATS.md §5).
//!
//! Not built yet: the cluster issue fills this crate. Until then the `strata` binary refuses to
//! start these roles and says so.
