//! PromQL: the parser and the evaluator over a `SeriesSource` trait (DESIGN.md §2).
//!
//! Not built yet: the query issue fills this crate.
