//! PromQL for Strata: a lexer and parser with positions, a canonical printer, a run-time
//! function registry, and an evaluator with Prometheus semantics over a `SeriesSource` trait.
//!
//! Entry points: [`parse`] (with a [`FunctionRegistry`]) and [`Engine`]
//! ([`Engine::instant_query`], [`Engine::range_query`]). Storage plugs in by implementing
//! [`SeriesSource`]; [`MemSource`] is the in-memory reference implementation.

pub mod ast;
mod eval;
pub mod functions;
pub mod labels;
pub mod lexer;
pub mod parser;
#[cfg(test)]
mod parser_tests;
pub mod promqltest;
pub mod source;

pub use ast::{Expr, ValueType};
pub use eval::{Engine, QueryError, QueryOptions, QueryResult, QueryStats, QueryValue, RangeSeries, Sample};
pub use functions::{FunctionDef, FunctionRegistry};
pub use labels::{Label, LabelMatcher, Labels, MatchOp};
pub use parser::{ParseError, parse};
pub use source::{MemSource, Series, SeriesSource, SourceError, is_stale_nan, stale_nan};
