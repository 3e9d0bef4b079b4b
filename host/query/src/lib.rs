//! PromQL for Strata: a lexer and parser with positions, a canonical printer, a run-time
//! function registry, and an evaluator with Prometheus semantics over a `SeriesSource` trait.
//!
//! Entry points: [`parse`] (with a [`FunctionRegistry`]) and [`Engine`]
//! ([`Engine::instant_query`], [`Engine::range_query`]).

pub mod ast;
pub mod functions;
pub mod labels;
pub mod lexer;
pub mod parser;
#[cfg(test)]
mod parser_tests;

pub use ast::{Expr, ValueType};
pub use functions::{FunctionDef, FunctionRegistry};
pub use labels::{Label, LabelMatcher, Labels, MatchOp};
pub use parser::{ParseError, parse};
