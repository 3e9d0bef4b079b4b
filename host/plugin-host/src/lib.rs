//! The WebAssembly plugin host (DESIGN.md §4): the only crate that depends on wasmtime, so that
//! edits elsewhere never rebuild it.
//!
//! Not built yet: the plugin issue fills this crate.
