//! PromQL for Strata: a lexer and parser with positions, a canonical printer, a run-time
//! function registry, and an evaluator with Prometheus semantics over a `SeriesSource` trait.
//!
//! Entry points: [`parse`] (with a [`FunctionRegistry`]) and [`Engine`]
//! ([`Engine::instant_query`], [`Engine::range_query`]). Storage plugs in by implementing
//! [`SeriesSource`]; [`MemSource`] is the in-memory reference implementation.
//!
//! # Contracts
//! - [`SeriesSource::select`] gets all matchers of one selector (AND-ed; `=~`/`!~` are fully
//!   anchored, a missing label reads as `""`) and an inclusive `[start_ms, end_ms]`; it returns
//!   every matching series once, labels sorted with `__name__` included, samples ascending,
//!   stale markers ([`stale_nan`], bits `0x7ff0000000000002`) kept as values.
//! - The engine reads each selector once per query over `[start - lookback (or range), end]`
//!   and computes every step from that one read; limits ([`QueryOptions`]) turn into
//!   [`QueryError`] variants with Prometheus' wording.
//! - Semantics follow Prometheus 2.42: closed `[t - range, t]` windows, extrapolated
//!   `rate`/`increase`/`delta`, 5m lookback, `__name__` dropped by arithmetic and most functions.
//! - Functions are looked up in a [`FunctionRegistry`]; [`FunctionRegistry::register`] adds a
//!   [`functions::CustomFunction`] with its signature, and the parser type-checks calls to it.
//!
//! # Tests
//! `testdata/*.test` are scripts in the [`promqltest`] format, all run by `tests/scripts.rs`;
//! a new case is one more block in a file.

pub mod ast;
mod eval;
pub mod functions;
pub mod labels;
pub mod lexer;
pub mod parser;
#[cfg(test)]
mod parser_tests;
pub mod promqltest;
pub mod regex_limits;
pub mod source;

pub use ast::{Expr, ValueType};
pub use eval::{Engine, QueryError, QueryOptions, QueryResult, QueryStats, QueryValue, RangeSeries, Sample};
pub use functions::{FunctionDef, FunctionRegistry};
pub use labels::{Label, LabelMatcher, Labels, MatchOp};
pub use parser::{ParseError, parse, parse_with_limits};
pub use regex_limits::RegexLimits;
pub use source::{MemSource, SelectShard, Series, SeriesSource, SourceError, is_stale_nan, stale_nan};
