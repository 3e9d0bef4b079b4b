//! The time-series storage engine (DESIGN.md §3, FORMATS.md §0–§4).
//!
//! Not built yet: the storage issues fill this crate. It must never depend on the network, the
//! query engine or wasm.
