//! The data (samples) side of the engine (FORMATS.md §1.4–§1.14): blocks, parts, monthly
//! partitions, background flushes and merges.

pub mod block;
pub mod part;
