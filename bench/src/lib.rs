//! `strata-bench`: Strata side by side with VictoriaMetrics and Prometheus.
//!
//! The same deterministic node_exporter-like data ([`datagen`]) is encoded once ([`plan`],
//! [`remote_write`], [`influx`]) and fed to every target ([`target`]) by concurrent clients
//! ([`load`]); then disk, memory, queries ([`queries`]) and restarts are measured ([`run`]) and
//! printed as one table with Strata/peer ratios ([`report`], [`summary`]).

pub mod datagen;
pub mod http;
pub mod influx;
pub mod load;
pub mod plan;
pub mod procfs;
pub mod queries;
pub mod remote_write;
pub mod report;
pub mod run;
pub mod stats;
pub mod summary;
pub mod target;
