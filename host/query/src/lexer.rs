//! The PromQL lexer: turns a query string into tokens with byte positions.

use crate::parser::ParseError;

/// Token kinds. Keywords are lexed as identifiers; the parser decides by context.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or keyword (`foo`, `sum`, `by`, `job:rate5m`).
    Ident(String),
    /// A number literal, including `Inf` and `NaN`.
    Number(f64),
    /// A duration literal in milliseconds (`5m`, `1h30m`).
    Duration(i64),
    /// A string literal with escapes resolved.
    Str(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `=`
    Assign,
    /// `==`
    Eql,
    /// `!=`
    Neq,
    /// `<`
    Lss,
    /// `>`
    Gtr,
    /// `<=`
    Lte,
    /// `>=`
    Gte,
    /// `=~`
    ReMatch,
    /// `!~`
    ReNoMatch,
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
    /// `@`
    At,
    /// End of input.
    Eof,
}

impl Tok {
    /// How Prometheus describes a token in "unexpected ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool" | "offset" => {
                    format!("<{}>", s.to_ascii_lowercase())
                }
                "and" | "or" | "unless" | "atan2" => format!("<op:{}>", s.to_ascii_lowercase()),
                _ => format!("identifier {s:?}"),
            },
            Tok::Number(_) => "number".to_string(),
            Tok::Duration(_) => "duration".to_string(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LParen => "left parenthesis \"(\"".to_string(),
            Tok::RParen => "right parenthesis \")\"".to_string(),
            Tok::LBrace => "\"{\"".to_string(),
            Tok::RBrace => "\"}\"".to_string(),
            Tok::LBracket => "left bracket \"[\"".to_string(),
            Tok::RBracket => "right bracket \"]\"".to_string(),
            Tok::Comma => "\",\"".to_string(),
            Tok::Colon => "\":\"".to_string(),
            Tok::Assign => "\"=\"".to_string(),
            Tok::Eql => "<op:==>".to_string(),
            Tok::Neq => "<op:!=>".to_string(),
            Tok::Lss => "<op:<>".to_string(),
            Tok::Gtr => "<op:>>".to_string(),
            Tok::Lte => "<op:<=>".to_string(),
            Tok::Gte => "<op:>=>".to_string(),
            Tok::ReMatch => "\"=~\"".to_string(),
            Tok::ReNoMatch => "\"!~\"".to_string(),
            Tok::Add => "<op:+>".to_string(),
            Tok::Sub => "<op:->".to_string(),
            Tok::Mul => "<op:*>".to_string(),
            Tok::Div => "<op:/>".to_string(),
            Tok::Mod => "<op:%>".to_string(),
            Tok::Pow => "<op:^>".to_string(),
            Tok::At => "<@>".to_string(),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

/// A token and its byte offset in the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub pos: usize,
}

/// Splits `input` into tokens; the last one is always `Tok::Eof`.
pub fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let b = input.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        let simple = |t: Tok, n: usize, out: &mut Vec<Token>, i: &mut usize| {
            out.push(Token { tok: t, pos: start });
            *i += n;
        };
        let next = b.get(i + 1).copied();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => simple(Tok::LParen, 1, &mut out, &mut i),
            b')' => simple(Tok::RParen, 1, &mut out, &mut i),
            b'{' => simple(Tok::LBrace, 1, &mut out, &mut i),
            b'}' => simple(Tok::RBrace, 1, &mut out, &mut i),
            b'[' => simple(Tok::LBracket, 1, &mut out, &mut i),
            b']' => simple(Tok::RBracket, 1, &mut out, &mut i),
            b',' => simple(Tok::Comma, 1, &mut out, &mut i),
            b':' => simple(Tok::Colon, 1, &mut out, &mut i),
            b'@' => simple(Tok::At, 1, &mut out, &mut i),
            b'+' => simple(Tok::Add, 1, &mut out, &mut i),
            b'-' => simple(Tok::Sub, 1, &mut out, &mut i),
            b'*' => simple(Tok::Mul, 1, &mut out, &mut i),
            b'/' => simple(Tok::Div, 1, &mut out, &mut i),
            b'%' => simple(Tok::Mod, 1, &mut out, &mut i),
            b'^' => simple(Tok::Pow, 1, &mut out, &mut i),
            b'=' => match next {
                Some(b'=') => simple(Tok::Eql, 2, &mut out, &mut i),
                Some(b'~') => simple(Tok::ReMatch, 2, &mut out, &mut i),
                _ => simple(Tok::Assign, 1, &mut out, &mut i),
            },
            b'!' => match next {
                Some(b'=') => simple(Tok::Neq, 2, &mut out, &mut i),
                Some(b'~') => simple(Tok::ReNoMatch, 2, &mut out, &mut i),
                _ => {
                    return Err(ParseError::at(
                        input,
                        start,
                        "unexpected character after '!': ".to_string()
                            + &next.map(|c| (c as char).to_string()).unwrap_or_default(),
                    ));
                }
            },
            b'<' => match next {
                Some(b'=') => simple(Tok::Lte, 2, &mut out, &mut i),
                _ => simple(Tok::Lss, 1, &mut out, &mut i),
            },
            b'>' => match next {
                Some(b'=') => simple(Tok::Gte, 2, &mut out, &mut i),
                _ => simple(Tok::Gtr, 1, &mut out, &mut i),
            },
            b'"' | b'\'' => {
                let (s, end) = lex_quoted(input, i)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: start,
                });
                i = end;
            }
            b'`' => {
                let rest = &input[i + 1..];
                match rest.find('`') {
                    Some(n) => {
                        out.push(Token {
                            tok: Tok::Str(rest[..n].to_string()),
                            pos: start,
                        });
                        i += n + 2;
                    }
                    None => return Err(ParseError::at(input, start, "unterminated raw string")),
                }
            }
            b'0'..=b'9' | b'.' => {
                let (tok, end) = lex_number_or_duration(input, i)?;
                out.push(Token { tok, pos: start });
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
                    j += 1;
                }
                let word = &input[i..j];
                let tok = match word.to_ascii_lowercase().as_str() {
                    "inf" => Tok::Number(f64::INFINITY),
                    "nan" => Tok::Number(f64::NAN),
                    _ => Tok::Ident(word.to_string()),
                };
                out.push(Token { tok, pos: start });
                i = j;
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(input, start, format!("unexpected character: {ch:?}")));
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: input.len(),
    });
    Ok(out)
}

/// Lexes a `"` or `'` string starting at `start`; returns the value and the offset after it.
fn lex_quoted(input: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = input.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = input[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let here = start + 1 + off;
        match c {
            c if c == quote => return Ok((out, here + 1)),
            '\n' => return Err(ParseError::at(input, here, "unterminated quoted string")),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' | '\'' if e == quote => out.push(e),
                    'x' | 'u' | 'U' | '0'..='7' => {
                        let (n, radix) = match e {
                            'x' => (2, 16),
                            'u' => (4, 16),
                            'U' => (8, 16),
                            _ => (2, 8),
                        };
                        let mut digits = String::new();
                        if radix == 8 {
                            digits.push(e);
                        }
                        for _ in 0..n {
                            match chars.next() {
                                Some((_, d)) => digits.push(d),
                                None => break,
                            }
                        }
                        let code = u32::from_str_radix(&digits, radix).ok();
                        let ch = code.and_then(|c| {
                            if radix == 16 && e == 'x' || radix == 8 {
                                // \x and octal escapes are bytes; only ASCII is representable here.
                                (c < 0x80).then(|| char::from_u32(c)).flatten()
                            } else {
                                char::from_u32(c)
                            }
                        });
                        match ch {
                            Some(ch) => out.push(ch),
                            None => {
                                return Err(ParseError::at(
                                    input,
                                    here,
                                    format!("invalid escape sequence \\{e}{}", &digits),
                                ));
                            }
                        }
                    }
                    other => {
                        return Err(ParseError::at(
                            input,
                            here,
                            format!("unknown escape sequence '{other}'"),
                        ));
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(ParseError::at(input, start, "unterminated quoted string"))
}

/// Duration units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

fn lex_number_or_duration(input: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let b = input.as_bytes();
    // Hexadecimal integers.
    if b[start] == b'0' && matches!(b.get(start + 1), Some(b'x' | b'X')) {
        let mut j = start + 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        let v = u64::from_str_radix(&input[start + 2..j], 16)
            .map_err(|_| ParseError::at(input, start, "bad number or duration syntax: \"0x\""))?;
        return Ok((Tok::Number(v as f64), j));
    }
    // A duration is digits followed by a unit letter; try that first.
    if b[start].is_ascii_digit() {
        let mut j = start;
        let mut total: i64 = 0;
        let mut last_unit = None::<usize>;
        loop {
            let ds = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if ds == j {
                break;
            }
            let n: i64 = match input[ds..j].parse() {
                Ok(n) => n,
                Err(_) => break,
            };
            let unit = UNITS.iter().enumerate().find(|(_, (u, _))| {
                input[j..].starts_with(u)
                    && !input[j + u.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() && !input[j..].starts_with("ms"))
            });
            // "ms" must win over "m" followed by "s".
            let unit = if input[j..].starts_with("ms") {
                Some((6, &UNITS[6]))
            } else {
                unit
            };
            match unit {
                Some((idx, (u, mult))) => {
                    if last_unit.is_some_and(|l| idx <= l) {
                        return Err(ParseError::at(
                            input,
                            start,
                            format!("bad duration syntax: {:?}", &input[start..j + u.len()]),
                        ));
                    }
                    total = total.saturating_add(n.saturating_mul(*mult));
                    last_unit = Some(idx);
                    j += u.len();
                }
                None => {
                    j = ds;
                    break;
                }
            }
        }
        if last_unit.is_some() {
            if j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                return Err(bad_number(input, start));
            }
            return Ok((Tok::Duration(total), j));
        }
    }
    // A float: digits, optional fraction, optional exponent.
    let mut j = start;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j < b.len() && b[j] == b'.' {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        let mut k = j + 1;
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        if k < b.len() && b[k].is_ascii_digit() {
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    if j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
        return Err(bad_number(input, start));
    }
    match input[start..j].parse::<f64>() {
        Ok(v) => Ok((Tok::Number(v), j)),
        Err(_) => Err(bad_number(input, start)),
    }
}

fn bad_number(input: &str, start: usize) -> ParseError {
    let end = input[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .map(|n| start + n)
        .unwrap_or(input.len());
    ParseError::at(
        input,
        start,
        format!("bad number or duration syntax: {:?}", &input[start..end]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_and_durations() {
        let t = toks("0x1F 1e3 .5 1h30m 5m 10ms inf NaN 1.5e-3");
        assert_eq!(
            &t[..7],
            &[
                Tok::Number(31.0),
                Tok::Number(1000.0),
                Tok::Number(0.5),
                Tok::Duration(5_400_000),
                Tok::Duration(300_000),
                Tok::Duration(10),
                Tok::Number(f64::INFINITY),
            ]
        );
        assert!(matches!(t[7], Tok::Number(n) if n.is_nan()));
        assert_eq!(t[8], Tok::Number(0.0015));
        assert!(lex("1m1h").is_err());
        assert!(lex("1x").is_err());
    }

    #[test]
    fn strings_and_comments() {
        assert_eq!(
            toks(r#""a\"b\n" 'c\'d' `e\n` # comment"#),
            vec![
                Tok::Str("a\"b\n".into()),
                Tok::Str("c'd".into()),
                Tok::Str("e\\n".into()),
                Tok::Eof
            ]
        );
        assert_eq!(toks(r#""\u00e9\x41""#), vec![Tok::Str("éA".into()), Tok::Eof]);
        assert!(lex("\"abc").is_err());
        assert!(lex(r#""\q""#).is_err());
    }
}
