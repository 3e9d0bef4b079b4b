//! The PromQL syntax tree and its canonical printer (`Display`).

use std::fmt;
use std::sync::Arc;

use crate::functions::FunctionDef;
use crate::labels::{LabelMatcher, METRIC_NAME, MatchOp, quote};

/// The type of a PromQL expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A single number per evaluation step.
    Scalar,
    /// An instant vector.
    Vector,
    /// A range vector.
    Matrix,
    /// A string.
    String,
}

impl ValueType {
    /// The name Prometheus uses in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }
}

/// `@` modifier value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AtModifier {
    /// A fixed timestamp in milliseconds.
    Timestamp(i64),
    /// `start()`: the start of the query range.
    Start,
    /// `end()`: the end of the query range.
    End,
}

/// An instant vector selector: `name{matchers} offset d @ t`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name when written outside the braces (also present as a matcher).
    pub name: Option<String>,
    /// All matchers, including `__name__="name"` for a bare name.
    pub matchers: Vec<LabelMatcher>,
    /// Offset in milliseconds (negative looks forward).
    pub offset: i64,
    /// `@` modifier.
    pub at: Option<AtModifier>,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `atan2`
    Atan2,
    /// `==`
    Eql,
    /// `!=`
    Neq,
    /// `>`
    Gtr,
    /// `<`
    Lss,
    /// `>=`
    Gte,
    /// `<=`
    Lte,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
}

impl BinOp {
    /// Precedence: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Atan2 => 5,
            BinOp::Pow => 6,
        }
    }

    /// True for `^`, the only right-associative operator.
    pub fn right_assoc(self) -> bool {
        self == BinOp::Pow
    }

    /// True for the comparison operators.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }

    /// True for `and`, `or`, `unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eql => "==",
            BinOp::Neq => "!=",
            BinOp::Gtr => ">",
            BinOp::Lss => "<",
            BinOp::Gte => ">=",
            BinOp::Lte => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }
}

/// Which side of a vector match may have many series per match group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    /// Plain one-to-one matching.
    OneToOne,
    /// `group_left`
    ManyToOne,
    /// `group_right`
    OneToMany,
    /// Set operators.
    ManyToMany,
}

/// `on`/`ignoring` and `group_left`/`group_right` of a binary operation between vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    /// Matching cardinality.
    pub card: Cardinality,
    /// True for `on(...)`, false for `ignoring(...)` (or nothing written).
    pub on: bool,
    /// Labels listed in `on`/`ignoring`.
    pub labels: Vec<String>,
    /// Labels listed in `group_left(...)`/`group_right(...)`.
    pub include: Vec<String>,
    /// True when `on`/`ignoring` was written (so the printer reproduces it).
    pub explicit: bool,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
    /// `group`
    Group,
    /// `stddev`
    Stddev,
    /// `stdvar`
    Stdvar,
    /// `topk`
    Topk,
    /// `bottomk`
    Bottomk,
    /// `quantile`
    Quantile,
    /// `count_values`
    CountValues,
    /// `limitk`
    Limitk,
}

impl AggOp {
    /// Looks an aggregation up by name (case-insensitive, as Prometheus' keywords).
    pub fn from_name(s: &str) -> Option<AggOp> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "quantile" => AggOp::Quantile,
            "count_values" => AggOp::CountValues,
            "limitk" => AggOp::Limitk,
            _ => return None,
        })
    }

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::Quantile => "quantile",
            AggOp::CountValues => "count_values",
            AggOp::Limitk => "limitk",
        }
    }

    /// The type of the parameter, for the aggregations that take one.
    pub fn param_type(self) -> Option<ValueType> {
        match self {
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::Limitk => Some(ValueType::Scalar),
            AggOp::CountValues => Some(ValueType::String),
            _ => None,
        }
    }
}

/// A PromQL expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// A string literal.
    String(String),
    /// An instant vector selector.
    Vector(VectorSelector),
    /// A range vector selector `sel[range]`; offset and `@` live on the selector.
    Matrix {
        /// The selector.
        selector: VectorSelector,
        /// Range in milliseconds.
        range: i64,
    },
    /// A subquery `expr[range:step] offset d @ t`.
    Subquery {
        /// The inner expression (an instant vector).
        expr: Box<Expr>,
        /// Range in milliseconds.
        range: i64,
        /// Step in milliseconds; `None` uses the engine's default.
        step: Option<i64>,
        /// Offset in milliseconds.
        offset: i64,
        /// `@` modifier.
        at: Option<AtModifier>,
    },
    /// `( expr )`
    Paren(Box<Expr>),
    /// Unary minus (unary plus is dropped by the parser).
    Neg(Box<Expr>),
    /// A binary operation.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// `bool` modifier on a comparison.
        return_bool: bool,
        /// Vector matching; present when both sides are vectors.
        matching: Option<VectorMatching>,
    },
    /// A function call.
    Call {
        /// The function, resolved against the registry at parse time.
        func: Arc<FunctionDef>,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// An aggregation.
    Aggregate {
        /// Operator.
        op: AggOp,
        /// The aggregated expression.
        expr: Box<Expr>,
        /// Parameter (`k`, `q`, label name).
        param: Option<Box<Expr>>,
        /// Grouping labels.
        grouping: Vec<String>,
        /// True for `without`, false for `by`.
        without: bool,
    },
}

impl Expr {
    /// The static type of the expression.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::Vector(_) => ValueType::Vector,
            Expr::Matrix { .. } | Expr::Subquery { .. } => ValueType::Matrix,
            Expr::Paren(e) | Expr::Neg(e) => e.value_type(),
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Call { func, .. } => func.return_type,
            Expr::Aggregate { .. } => ValueType::Vector,
        }
    }
}

/// Formats a duration in milliseconds the way Prometheus does (`1h30m`, `5m`, `100ms`).
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (unit, len) in [
        ("y", 365 * 24 * 3600 * 1000i64),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

/// Formats a float for the printer: integers without a fraction, `Inf`, `NaN`.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn write_grouping(f: &mut fmt::Formatter<'_>, labels: &[String]) -> fmt::Result {
    write!(f, "({})", labels.join(", "))
}

fn write_modifiers(f: &mut fmt::Formatter<'_>, offset: i64, at: Option<AtModifier>) -> fmt::Result {
    if let Some(at) = at {
        match at {
            AtModifier::Timestamp(t) => write!(f, " @ {:.3}", t as f64 / 1000.0)?,
            AtModifier::Start => f.write_str(" @ start()")?,
            AtModifier::End => f.write_str(" @ end()")?,
        }
    }
    if offset != 0 {
        write!(f, " offset {}", format_duration(offset))?;
    }
    Ok(())
}

impl fmt::Display for VectorSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest: Vec<&LabelMatcher> = self
            .matchers
            .iter()
            .filter(|m| !(self.name.is_some() && m.name == METRIC_NAME && m.op == MatchOp::Equal))
            .collect();
        if let Some(n) = &self.name {
            f.write_str(n)?;
        }
        if !rest.is_empty() || self.name.is_none() {
            f.write_str("{")?;
            for (i, m) in rest.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{m}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(v) => f.write_str(&format_number(*v)),
            Expr::String(s) => f.write_str(&quote(s)),
            Expr::Vector(vs) => {
                write!(f, "{vs}")?;
                write_modifiers(f, vs.offset, vs.at)
            }
            Expr::Matrix { selector, range } => {
                write!(f, "{selector}[{}]", format_duration(*range))?;
                write_modifiers(f, selector.offset, selector.at)
            }
            Expr::Subquery {
                expr,
                range,
                step,
                offset,
                at,
            } => {
                write!(
                    f,
                    "{expr}[{}:{}]",
                    format_duration(*range),
                    step.map(format_duration).unwrap_or_default()
                )?;
                write_modifiers(f, *offset, *at)
            }
            Expr::Paren(e) => write!(f, "({e})"),
            Expr::Neg(e) => write!(f, "-{e}"),
            Expr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                write!(f, "{lhs} {}", op.as_str())?;
                if *return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(m) = matching {
                    if m.explicit || !m.include.is_empty() {
                        f.write_str(if m.on { " on" } else { " ignoring" })?;
                        write_grouping(f, &m.labels)?;
                    }
                    match m.card {
                        Cardinality::ManyToOne => {
                            f.write_str(" group_left")?;
                            write_grouping(f, &m.include)?;
                        }
                        Cardinality::OneToMany => {
                            f.write_str(" group_right")?;
                            write_grouping(f, &m.include)?;
                        }
                        _ => {}
                    }
                }
                write!(f, " {rhs}")
            }
            Expr::Call { func, args } => {
                write!(f, "{}(", func.name)?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Aggregate {
                op,
                expr,
                param,
                grouping,
                without,
            } => {
                f.write_str(op.as_str())?;
                if *without || !grouping.is_empty() {
                    f.write_str(if *without { " without " } else { " by " })?;
                    write_grouping(f, grouping)?;
                    f.write_str(" ")?;
                }
                f.write_str("(")?;
                if let Some(p) = param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{expr})")
            }
        }
    }
}
