//! The cluster: node-to-node protocol and the storage, insert and select roles (DESIGN.md §2,
//! FORMATS.md §5).
//!
//! - [`proto`]: our own wire protocol — a versioned handshake, length-prefixed zstd frames.
//! - [`client`]: a blocking, pooled client for one storage node (keep-alive, timeouts).
//! - [`server`]: the storage node's insert and select RPC servers over local storage.
//! - [`hash`]: rendezvous hashing of tenant + labels over storage nodes.
//! - [`insert`]: [`insert::ClusterSink`], the insert role's sharding and replicating `SampleSink`.
//! - [`select`]: [`select::ClusterSource`], the select role's fan-out `SeriesSource`.
//! - [`merge`]: the streaming merge of the nodes' search streams (replicas count once).
//! - [`tenants`]: the tenants a storage node has taken writes for.
//! - [`tls`]: optional (mutual) TLS on the cluster protocol.
//! - [`select_http`]: the select role's `/select/<tenant>/prometheus/...` routes, with `isPartial`.
//! - [`select_api`]: export, TSDB status and tenant listing through select.
//!
//! Invariants: the protocol never trusts a length it reads (every size is bounded before it is
//! allocated); a tenant travels in every request, and storage answers only for that tenant.

pub mod client;
pub mod hash;
pub mod insert;
pub mod merge;
pub mod proto;
pub mod select;
pub mod select_api;
pub mod select_http;
pub mod server;
pub mod tenants;
pub mod tls;
