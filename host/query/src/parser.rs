//! Recursive-descent / Pratt parser for PromQL with type checking.

use std::fmt;

use crate::ast::{AggOp, AtModifier, BinOp, Cardinality, Expr, ValueType, VectorMatching, VectorSelector};
use crate::functions::FunctionRegistry;
use crate::labels::{LabelMatcher, METRIC_NAME, MatchOp};
use crate::lexer::{Tok, Token, lex};
use crate::regex_limits::RegexLimits;

/// A parse error with a 1-based line and column, printed as Prometheus does:
/// `1:5: parse error: unexpected ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (bytes).
    pub col: usize,
    /// The message without the position.
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: parse error: {}", self.line, self.col, self.msg)
    }
}

impl ParseError {
    /// An error at byte offset `pos` of `input`.
    pub fn at(input: &str, pos: usize, msg: impl Into<String>) -> Self {
        let pos = pos.min(input.len());
        let before = &input.as_bytes()[..pos];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map(|p| p + 1).unwrap_or(0);
        ParseError {
            line,
            col: pos - line_start + 1,
            msg: msg.into(),
        }
    }
}

/// Parses a PromQL expression, resolving function calls against `reg`; matcher regexes must
/// fit the default [`RegexLimits`].
pub fn parse(input: &str, reg: &FunctionRegistry) -> Result<Expr, ParseError> {
    parse_with_limits(input, reg, RegexLimits::default())
}

/// [`parse`] with the regex caps of a query (or of its tenant): a too long or too large matcher
/// regex is a parse error naming the limit.
pub fn parse_with_limits(input: &str, reg: &FunctionRegistry, regex: RegexLimits) -> Result<Expr, ParseError> {
    let toks = lex(input)?;
    if toks.len() == 1 {
        return Err(ParseError::at(input, 0, "no expression found in input"));
    }
    let mut p = Parser {
        depth: 0,
        input,
        toks,
        i: 0,
        reg,
        regex,
    };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected(""));
    }
    Ok(e)
}

/// Words that are operators or modifiers and can never start a selector.
const RESERVED: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
];

/// Deepest nesting of sub-expressions accepted.
const MAX_DEPTH: usize = 200;

struct Parser<'a> {
    depth: usize,
    input: &'a str,
    toks: Vec<Token>,
    i: usize,
    reg: &'a FunctionRegistry,
    regex: RegexLimits,
}

type PResult<T> = Result<T, ParseError>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].tok.clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.input, pos, msg)
    }

    fn unexpected(&self, context: &str) -> ParseError {
        let mut msg = format!("unexpected {}", self.peek().describe());
        if !context.is_empty() {
            msg.push(' ');
            msg.push_str(context);
        }
        self.err(self.pos(), msg)
    }

    fn expect(&mut self, t: Tok, context: &str) -> PResult<()> {
        if *self.peek() == t {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(context))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(w))
    }

    fn peek_binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Add => BinOp::Add,
            Tok::Sub => BinOp::Sub,
            Tok::Mul => BinOp::Mul,
            Tok::Div => BinOp::Div,
            Tok::Mod => BinOp::Mod,
            Tok::Pow => BinOp::Pow,
            Tok::Eql => BinOp::Eql,
            Tok::Neq => BinOp::Neq,
            Tok::Gtr => BinOp::Gtr,
            Tok::Lss => BinOp::Lss,
            Tok::Gte => BinOp::Gte,
            Tok::Lte => BinOp::Lte,
            Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                "atan2" => BinOp::Atan2,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn expr(&mut self, min_prec: u8) -> PResult<Expr> {
        // Recursion is bounded so that hostile input cannot overflow the stack.
        if self.depth >= MAX_DEPTH {
            return Err(self.err(self.pos(), "expression nesting is too deep"));
        }
        self.depth += 1;
        let r = self.expr_inner(min_prec);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek_binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos();
            self.bump();
            let mut return_bool = false;
            if self.is_word("bool") {
                self.bump();
                return_bool = true;
            }
            let mut matching = None;
            if self.is_word("on") || self.is_word("ignoring") {
                let on = self.is_word("on");
                self.bump();
                let labels = self.grouping_labels()?;
                matching = Some(VectorMatching {
                    card: Cardinality::OneToOne,
                    on,
                    labels,
                    include: vec![],
                    explicit: true,
                });
            }
            if self.is_word("group_left") || self.is_word("group_right") {
                let card = if self.is_word("group_left") {
                    Cardinality::ManyToOne
                } else {
                    Cardinality::OneToMany
                };
                let gpos = self.pos();
                self.bump();
                let include = if *self.peek() == Tok::LParen {
                    self.grouping_labels()?
                } else {
                    vec![]
                };
                let m = matching.get_or_insert(VectorMatching {
                    card,
                    on: false,
                    labels: vec![],
                    include: vec![],
                    explicit: false,
                });
                m.card = card;
                m.include = include;
                if op.is_set() {
                    return Err(self.err(gpos, format!("no grouping allowed for \"{}\" operation", op.as_str())));
                }
                if m.on
                    && let Some(l) = m.include.iter().find(|l| m.labels.contains(l))
                {
                    return Err(self.err(
                        gpos,
                        format!("label \"{l}\" must not occur in ON and GROUP clause at once"),
                    ));
                }
            }
            let next_min = if op.right_assoc() { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(op, op_pos, lhs, rhs, return_bool, matching)?;
        }
        Ok(lhs)
    }

    fn binary(
        &self,
        op: BinOp,
        pos: usize,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        matching: Option<VectorMatching>,
    ) -> PResult<Expr> {
        let (lt, rt) = (lhs.value_type(), rhs.value_type());
        let ok = |t| matches!(t, ValueType::Scalar | ValueType::Vector);
        if !ok(lt) || !ok(rt) {
            return Err(self.err(
                pos,
                "binary expression must contain only scalar and instant vector types",
            ));
        }
        if return_bool && !op.is_comparison() {
            return Err(self.err(pos, "bool modifier can only be used on comparison operators"));
        }
        if op.is_comparison() && !return_bool && lt == ValueType::Scalar && rt == ValueType::Scalar {
            return Err(self.err(pos, "comparisons between scalars must use BOOL modifier"));
        }
        let both_vectors = lt == ValueType::Vector && rt == ValueType::Vector;
        if op.is_set() && !both_vectors {
            return Err(self.err(
                pos,
                format!(
                    "set operator \"{}\" not allowed in binary scalar expression",
                    op.as_str()
                ),
            ));
        }
        if matching.is_some() && !both_vectors {
            return Err(self.err(pos, "vector matching only allowed between instant vectors"));
        }
        let matching = if both_vectors {
            let mut m = matching.unwrap_or(VectorMatching {
                card: Cardinality::OneToOne,
                on: false,
                labels: vec![],
                include: vec![],
                explicit: false,
            });
            if op.is_set() {
                m.card = Cardinality::ManyToMany;
            }
            Some(m)
        } else {
            None
        };
        Ok(Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            return_bool,
            matching,
        })
    }

    fn unary(&mut self) -> PResult<Expr> {
        match self.peek() {
            Tok::Add | Tok::Sub => {
                let neg = *self.peek() == Tok::Sub;
                let pos = self.pos();
                self.bump();
                // Only `^` binds tighter than a unary sign.
                let e = self.expr(BinOp::Pow.precedence())?;
                match e.value_type() {
                    ValueType::Scalar | ValueType::Vector => {}
                    t => {
                        return Err(self.err(
                            pos,
                            format!(
                                "unary expression only allowed on expressions of type scalar or instant vector, got \"{}\"",
                                t.name()
                            ),
                        ));
                    }
                }
                Ok(match (neg, e) {
                    (true, Expr::Number(v)) => Expr::Number(-v),
                    (true, e) => Expr::Neg(Box::new(e)),
                    (false, e) => e,
                })
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Tok::LBracket => e = self.range_or_subquery(e)?,
                Tok::At => e = self.at_modifier(e)?,
                Tok::Ident(s) if s.eq_ignore_ascii_case("offset") => e = self.offset(e)?,
                _ => return Ok(e),
            }
        }
    }

    fn duration(&mut self, context: &str) -> PResult<i64> {
        match self.peek() {
            Tok::Duration(d) => {
                let d = *d;
                self.bump();
                Ok(d)
            }
            _ => Err(self.unexpected(context)),
        }
    }

    fn range_or_subquery(&mut self, e: Expr) -> PResult<Expr> {
        let pos = self.pos();
        self.bump();
        let range = self.duration("in subquery or range selector, expected duration")?;
        if range <= 0 {
            return Err(self.err(pos, "range must be positive"));
        }
        if *self.peek() == Tok::Colon {
            self.bump();
            let step = if let Tok::Duration(_) = self.peek() {
                let s = self.duration("")?;
                if s <= 0 {
                    return Err(self.err(pos, "subquery step must be positive"));
                }
                Some(s)
            } else {
                None
            };
            self.expect(Tok::RBracket, "in subquery, expected \"]\"")?;
            if e.value_type() != ValueType::Vector {
                return Err(self.err(
                    pos,
                    format!(
                        "subquery is only allowed on instant vector, got {}",
                        e.value_type().name()
                    ),
                ));
            }
            return Ok(Expr::Subquery {
                expr: Box::new(e),
                range,
                step,
                offset: 0,
                at: None,
            });
        }
        self.expect(Tok::RBracket, "in range selector, expected \"]\"")?;
        match e {
            Expr::Vector(vs) if vs.offset == 0 && vs.at.is_none() => Ok(Expr::Matrix { selector: vs, range }),
            Expr::Vector(_) => Err(self.err(pos, "no offset or @ modifiers allowed before range")),
            _ => Err(self.err(pos, "ranges only allowed for vector selectors")),
        }
    }

    fn offset(&mut self, mut e: Expr) -> PResult<Expr> {
        let pos = self.pos();
        self.bump();
        let neg = if *self.peek() == Tok::Sub {
            self.bump();
            true
        } else {
            false
        };
        let d = self.duration("in offset, expected duration")?;
        let d = if neg { -d } else { d };
        let slot = match &mut e {
            Expr::Vector(vs) => &mut vs.offset,
            Expr::Matrix { selector, .. } => &mut selector.offset,
            Expr::Subquery { offset, .. } => offset,
            _ => {
                return Err(self.err(
                    pos,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                ));
            }
        };
        if *slot != 0 {
            return Err(self.err(pos, "offset may not be set multiple times"));
        }
        *slot = d;
        Ok(e)
    }

    fn at_modifier(&mut self, mut e: Expr) -> PResult<Expr> {
        let pos = self.pos();
        self.bump();
        let at = match self.peek().clone() {
            Tok::Ident(s) if (s == "start" || s == "end") && *self.peek_at(1) == Tok::LParen => {
                self.bump();
                self.bump();
                self.expect(Tok::RParen, "in @, expected \")\"")?;
                if s == "start" {
                    AtModifier::Start
                } else {
                    AtModifier::End
                }
            }
            Tok::Number(_) | Tok::Add | Tok::Sub => {
                let neg = *self.peek() == Tok::Sub;
                if matches!(self.peek(), Tok::Add | Tok::Sub) {
                    self.bump();
                }
                let Tok::Number(v) = self.peek().clone() else {
                    return Err(self.unexpected("in @, expected timestamp"));
                };
                self.bump();
                let v = if neg { -v } else { v };
                let ms = v * 1000.0;
                if !ms.is_finite() || ms.abs() > i64::MAX as f64 {
                    return Err(self.err(pos, "timestamp out of bounds for @ modifier"));
                }
                AtModifier::Timestamp(ms.round() as i64)
            }
            _ => return Err(self.unexpected("in @, expected timestamp")),
        };
        let slot = match &mut e {
            Expr::Vector(vs) => &mut vs.at,
            Expr::Matrix { selector, .. } => &mut selector.at,
            Expr::Subquery { at, .. } => at,
            _ => {
                return Err(self.err(
                    pos,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                ));
            }
        };
        if slot.is_some() {
            return Err(self.err(pos, "@ <timestamp> may not be set multiple times"));
        }
        *slot = Some(at);
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Number(v) => {
                self.bump();
                Ok(Expr::Number(v))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::String(s))
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr(0)?;
                self.expect(Tok::RParen, "")?;
                Ok(Expr::Paren(Box::new(e)))
            }
            Tok::LBrace => self.selector(None, pos),
            Tok::Ident(name) => {
                let next = self.peek_at(1).clone();
                if let Some(op) = AggOp::from_name(&name)
                    && (next == Tok::LParen
                        || matches!(&next, Tok::Ident(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without")))
                {
                    self.bump();
                    return self.aggregate(op, pos);
                }
                if next == Tok::LParen {
                    self.bump();
                    return self.call(&name, pos);
                }
                if RESERVED.iter().any(|w| name.eq_ignore_ascii_case(w)) {
                    return Err(self.unexpected(""));
                }
                self.bump();
                self.selector(Some(name), pos)
            }
            _ => Err(self.unexpected("")),
        }
    }

    fn label_name(&mut self, context: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(s)
            }
            // Prometheus 3 allows quoted label names; accept them too.
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.unexpected(context)),
        }
    }

    fn grouping_labels(&mut self) -> PResult<Vec<String>> {
        self.expect(Tok::LParen, "in grouping opts, expected \"(\"")?;
        let mut out = Vec::new();
        loop {
            if *self.peek() == Tok::RParen {
                self.bump();
                return Ok(out);
            }
            let l = self.label_name("in grouping opts, expected label")?;
            if l.contains(':') {
                return Err(self.err(self.pos(), format!("invalid label name {l:?}")));
            }
            out.push(l);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected("in grouping opts, expected \",\" or \")\"")),
            }
        }
    }

    fn selector(&mut self, name: Option<String>, pos: usize) -> PResult<Expr> {
        let mut matchers = Vec::new();
        if let Some(n) = &name {
            matchers.push(LabelMatcher::new(MatchOp::Equal, METRIC_NAME, n).map_err(|e| self.err(pos, e.to_string()))?);
        }
        if *self.peek() == Tok::LBrace {
            self.bump();
            loop {
                if *self.peek() == Tok::RBrace {
                    self.bump();
                    break;
                }
                let lpos = self.pos();
                let lname = self.label_name("in label matching, expected label or \"}\"")?;
                let op = match self.peek() {
                    Tok::Assign => MatchOp::Equal,
                    Tok::Neq => MatchOp::NotEqual,
                    Tok::ReMatch => MatchOp::RegexMatch,
                    Tok::ReNoMatch => MatchOp::RegexNoMatch,
                    _ => {
                        return Err(self.unexpected("in label matching, expected label matching operator"));
                    }
                };
                self.bump();
                let Tok::Str(value) = self.peek().clone() else {
                    return Err(self.unexpected("in label matching, expected string"));
                };
                self.bump();
                if lname == METRIC_NAME
                    && name.is_some()
                    && op == MatchOp::Equal
                    && let Some(n) = &name
                {
                    return Err(self.err(lpos, format!("metric name must not be set twice: {n:?} or {value:?}")));
                }
                matchers.push(
                    LabelMatcher::with_limits(op, &lname, &value, self.regex)
                        .map_err(|e| self.err(lpos, e.to_string()))?,
                );
                match self.peek() {
                    Tok::Comma => {
                        self.bump();
                    }
                    Tok::RBrace => {}
                    _ => return Err(self.unexpected("in label matching, expected \",\" or \"}\"")),
                }
            }
        }
        if !matchers.iter().any(|m| !m.matches_empty()) {
            return Err(self.err(pos, "vector selector must contain at least one non-empty matcher"));
        }
        Ok(Expr::Vector(VectorSelector {
            name,
            matchers,
            offset: 0,
            at: None,
        }))
    }

    fn call(&mut self, name: &str, pos: usize) -> PResult<Expr> {
        let Some(func) = self.reg.get(name).cloned() else {
            return Err(self.err(pos, format!("unknown function with name {name:?}")));
        };
        self.expect(Tok::LParen, "")?;
        let mut args = Vec::new();
        loop {
            if *self.peek() == Tok::RParen {
                self.bump();
                break;
            }
            args.push(self.expr(0)?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected("in call to function, expected \",\" or \")\"")),
            }
        }
        let n = func.arg_types.len();
        let got = args.len();
        let count_err = match func.variadic {
            0 if got != n => Some(format!("expected {n} argument(s) in call to {name:?}, got {got}")),
            v if v > 0 && (got > n || got < n - v as usize) => Some(format!(
                "expected at most {n} argument(s) and at least {} in call to {name:?}, got {got}",
                n - v as usize
            )),
            -1 if got + 1 < n => Some(format!(
                "expected at least {} argument(s) in call to {name:?}, got {got}",
                n - 1
            )),
            _ => None,
        };
        if let Some(msg) = count_err {
            return Err(self.err(pos, msg));
        }
        for (i, a) in args.iter().enumerate() {
            let want = func
                .arg_types
                .get(i)
                .or(func.arg_types.last())
                .copied()
                .unwrap_or(ValueType::Vector);
            let got = a.value_type();
            if got != want {
                return Err(self.err(
                    pos,
                    format!(
                        "expected type {} in call to function {name:?}, got {}",
                        want.name(),
                        got.name()
                    ),
                ));
            }
        }
        Ok(Expr::Call { func, args })
    }

    fn aggregate(&mut self, op: AggOp, pos: usize) -> PResult<Expr> {
        let mut grouping = None;
        if self.is_word("by") || self.is_word("without") {
            let without = self.is_word("without");
            self.bump();
            grouping = Some((self.grouping_labels()?, without));
        }
        self.expect(Tok::LParen, "in aggregation, expected \"(\"")?;
        let mut args = Vec::new();
        loop {
            if *self.peek() == Tok::RParen {
                self.bump();
                break;
            }
            args.push(self.expr(0)?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected("in aggregation, expected \",\" or \")\"")),
            }
        }
        if grouping.is_none() && (self.is_word("by") || self.is_word("without")) {
            let without = self.is_word("without");
            self.bump();
            grouping = Some((self.grouping_labels()?, without));
        }
        let want = if op.param_type().is_some() { 2 } else { 1 };
        if args.len() != want {
            return Err(self.err(
                pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            ));
        }
        let expr = args.pop().unwrap_or(Expr::Number(0.0));
        if expr.value_type() != ValueType::Vector {
            return Err(self.err(
                pos,
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    expr.value_type().name()
                ),
            ));
        }
        let param = args.pop();
        if let (Some(p), Some(t)) = (&param, op.param_type())
            && p.value_type() != t
        {
            return Err(self.err(
                pos,
                format!(
                    "expected type {} in aggregation parameter, got {}",
                    t.name(),
                    p.value_type().name()
                ),
            ));
        }
        let (grouping, without) = grouping.unwrap_or_default();
        Ok(Expr::Aggregate {
            op,
            expr: Box::new(expr),
            param: param.map(Box::new),
            grouping,
            without,
        })
    }
}
