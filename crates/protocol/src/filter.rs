//! RocketMQ's SQL92 property filter (tag expressions live in `message::tag`).
//!
//! SQL92 follows the grammar RocketMQ documents for `MessageSelector.bySql`: numeric comparison
//! (`> >= < <= = <> BETWEEN`), string comparison (`= <> IN`), `IS [NOT] NULL`, `AND OR NOT`,
//! constants (numbers, `'strings'`, `TRUE`, `FALSE`, `NULL`) and 5.x's `CONTAINS`, `STARTSWITH`,
//! `ENDSWITH`. Property values are strings; a string compared with a number is read as a number,
//! as RocketMQ does. Logic is three-valued like JMS selectors: a comparison with a missing
//! property is unknown, and unknown filters the message out.

use std::fmt;

/// A filter that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter expression at {position}: {reason}")]
pub struct FilterParseError {
    pub position: usize,
    pub reason: String,
}

/// A parsed SQL92 filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    root: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Property(String),
    Literal(Literal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Operand, CmpOp, Operand),
    Between {
        value: Operand,
        low: Operand,
        high: Operand,
        negated: bool,
    },
    In {
        value: Operand,
        list: Vec<Literal>,
        negated: bool,
    },
    IsNull {
        value: Operand,
        negated: bool,
    },
    Str {
        value: Operand,
        op: StrOp,
        pattern: String,
        negated: bool,
    },
    Bool(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Long(i64),
    Double(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "`{s}`"),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Long(v) => write!(f, "{v}"),
            Token::Double(v) => write!(f, "{v}"),
            Token::Op(o) => write!(f, "`{o}`"),
            Token::LParen => f.write_str("`(`"),
            Token::RParen => f.write_str("`)`"),
            Token::Comma => f.write_str("`,`"),
        }
    }
}

fn err(position: usize, reason: impl Into<String>) -> FilterParseError {
    FilterParseError {
        position,
        reason: reason.into(),
    }
}

fn lex(input: &str) -> Result<Vec<(usize, Token)>, FilterParseError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push((start, Token::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Token::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Token::Comma));
                i += 1;
            }
            b'=' => {
                out.push((start, Token::Op("=")));
                i += 1;
            }
            b'<' | b'>' | b'!' => {
                let two = bytes.get(i + 1).copied();
                let op = match (c, two) {
                    (b'<', Some(b'>')) => "<>",
                    (b'<', Some(b'=')) => "<=",
                    (b'>', Some(b'=')) => ">=",
                    (b'!', Some(b'=')) => "<>",
                    (b'<', _) => "<",
                    (b'>', _) => ">",
                    _ => return Err(err(start, "unexpected `!`")),
                };
                i += if op.len() == 2 || c == b'!' { 2 } else { 1 };
                out.push((start, Token::Op(op)));
            }
            b'\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match input[i..].find('\'') {
                        None => return Err(err(start, "unterminated string")),
                        Some(rel) => {
                            s.push_str(&input[i..i + rel]);
                            i += rel + 1;
                            // '' inside a string is an escaped quote.
                            if bytes.get(i) == Some(&b'\'') {
                                s.push('\'');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                out.push((start, Token::Str(s)));
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                i += 1;
                while i < bytes.len()
                    && matches!(
                        bytes[i],
                        b'0'..=b'9' | b'.' | b'e' | b'E' | b'L' | b'l' | b'd' | b'D' | b'f' | b'F'
                    )
                {
                    i += 1;
                }
                let text = input[start..i].trim_end_matches(['L', 'l', 'd', 'D', 'f', 'F']);
                let tok = if let Ok(v) = text.parse::<i64>() {
                    Token::Long(v)
                } else if let Ok(v) = text.parse::<f64>() {
                    Token::Double(v)
                } else {
                    return Err(err(start, format!("invalid number `{}`", &input[start..i])));
                };
                out.push((start, tok));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'$' | b'.'))
                {
                    i += 1;
                }
                out.push((start, Token::Ident(input[start..i].to_owned())));
            }
            _ => {
                let ch = input[start..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character `{ch}`")));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(p, _)| *p)
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), FilterParseError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(err(self.position(), format!("expected {kw}")))
        }
    }

    fn expect(&mut self, tok: Token) -> Result<(), FilterParseError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(err(self.position(), format!("expected {tok}")))
        }
    }

    fn or(&mut self) -> Result<Expr, FilterParseError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterParseError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, FilterParseError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.predicate()
    }

    fn operand(&mut self) -> Result<Operand, FilterParseError> {
        let position = self.position();
        let tok = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        Ok(match tok {
            Some(Token::Str(s)) => Operand::Literal(Literal::Str(s)),
            Some(Token::Long(v)) => Operand::Literal(Literal::Long(v)),
            Some(Token::Double(v)) => Operand::Literal(Literal::Double(v)),
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("TRUE") => {
                Operand::Literal(Literal::Bool(true))
            }
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("FALSE") => {
                Operand::Literal(Literal::Bool(false))
            }
            Some(Token::Ident(s)) if s.eq_ignore_ascii_case("NULL") => {
                Operand::Literal(Literal::Null)
            }
            Some(Token::Ident(s)) if is_reserved(&s) => {
                return Err(err(position, format!("unexpected keyword {s}")))
            }
            Some(Token::Ident(s)) => Operand::Property(s),
            Some(other) => return Err(err(position, format!("unexpected {other}"))),
            None => return Err(err(position, "unexpected end of expression")),
        })
    }

    fn literal(&mut self) -> Result<Literal, FilterParseError> {
        let position = self.position();
        match self.operand()? {
            Operand::Literal(l) => Ok(l),
            Operand::Property(p) => Err(err(position, format!("expected a constant, found `{p}`"))),
        }
    }

    fn string_literal(&mut self) -> Result<String, FilterParseError> {
        let position = self.position();
        match self.literal()? {
            Literal::Str(s) => Ok(s),
            _ => Err(err(position, "expected a string constant")),
        }
    }

    fn predicate(&mut self) -> Result<Expr, FilterParseError> {
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(inner);
        }
        let value = self.operand()?;
        if let Some(Token::Op(op)) = self.peek() {
            let op = match *op {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::Ne,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                _ => CmpOp::Le,
            };
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Compare(value, op, right));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            self.expect_keyword("NULL")?;
            return Ok(Expr::IsNull { value, negated });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("BETWEEN") {
            let low = self.operand()?;
            self.expect_keyword("AND")?;
            let high = self.operand()?;
            return Ok(Expr::Between {
                value,
                low,
                high,
                negated,
            });
        }
        if self.eat_keyword("IN") {
            self.expect(Token::LParen)?;
            let mut list = vec![self.literal()?];
            while self.peek() == Some(&Token::Comma) {
                self.pos += 1;
                list.push(self.literal()?);
            }
            self.expect(Token::RParen)?;
            return Ok(Expr::In {
                value,
                list,
                negated,
            });
        }
        for (kw, op) in [
            ("CONTAINS", StrOp::Contains),
            ("STARTSWITH", StrOp::StartsWith),
            ("ENDSWITH", StrOp::EndsWith),
        ] {
            if self.eat_keyword(kw) {
                let pattern = self.string_literal()?;
                return Ok(Expr::Str {
                    value,
                    op,
                    pattern,
                    negated,
                });
            }
        }
        if negated {
            return Err(err(
                self.position(),
                "expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH after NOT",
            ));
        }
        Ok(Expr::Bool(value))
    }
}

fn is_reserved(s: &str) -> bool {
    [
        "AND",
        "OR",
        "NOT",
        "BETWEEN",
        "IN",
        "IS",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
    ]
    .iter()
    .any(|k| s.eq_ignore_ascii_case(k))
}

impl SqlFilter {
    /// Parses a SQL92 filter expression.
    pub fn parse(expression: &str) -> Result<SqlFilter, FilterParseError> {
        let tokens = lex(expression)?;
        if tokens.is_empty() {
            return Err(err(0, "empty expression"));
        }
        let mut parser = Parser {
            tokens,
            pos: 0,
            end: expression.len(),
        };
        let root = parser.or()?;
        if parser.pos < parser.tokens.len() {
            return Err(err(
                parser.position(),
                "unexpected text after the expression",
            ));
        }
        Ok(SqlFilter { root })
    }

    /// Whether a message whose properties are given by `property` passes.
    pub fn matches<'p>(&self, property: impl Fn(&str) -> Option<&'p str>) -> bool {
        eval(&self.root, &|k| property(k)) == Some(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(std::borrow::Cow<'a, str>),
}

/// Looks up a property; values borrow from the message or from the expression.
type Lookup<'v> = dyn Fn(&str) -> Option<&'v str> + 'v;

fn resolve<'v>(op: &'v Operand, property: &Lookup<'v>) -> Option<Value<'v>> {
    match op {
        Operand::Property(name) => property(name).map(|s| Value::Str(s.into())),
        Operand::Literal(l) => literal_value(l),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Long(x) => Some(*x as f64),
        Value::Double(x) => Some(*x),
        Value::Str(s) => s.trim().parse().ok(),
        Value::Bool(_) => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering = match (l, r) {
        (Value::Str(a), Value::Str(b)) => match op {
            CmpOp::Eq => return Some(a == b),
            CmpOp::Ne => return Some(a != b),
            // Ordering comparisons are numeric only; try the strings as numbers.
            _ => as_number(l)?.partial_cmp(&as_number(r)?)?,
        },
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (a, b) = (as_bool(l)?, as_bool(r)?);
            return match op {
                CmpOp::Eq => Some(a == b),
                CmpOp::Ne => Some(a != b),
                _ => None,
            };
        }
        _ => as_number(l)?.partial_cmp(&as_number(r)?)?,
    };
    Some(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
    })
}

fn literal_value(l: &Literal) -> Option<Value<'_>> {
    match l {
        Literal::Null => None,
        Literal::Bool(b) => Some(Value::Bool(*b)),
        Literal::Long(v) => Some(Value::Long(*v)),
        Literal::Double(v) => Some(Value::Double(*v)),
        Literal::Str(s) => Some(Value::Str(s.as_str().into())),
    }
}

fn eval<'v>(e: &'v Expr, property: &Lookup<'v>) -> Option<bool> {
    match e {
        Expr::And(a, b) => match (eval(a, property), eval(b, property)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, property), eval(b, property)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, property).map(|v| !v),
        Expr::Compare(l, op, r) => compare(&resolve(l, property)?, *op, &resolve(r, property)?),
        Expr::Between {
            value,
            low,
            high,
            negated,
        } => {
            let v = as_number(&resolve(value, property)?)?;
            let lo = as_number(&resolve(low, property)?)?;
            let hi = as_number(&resolve(high, property)?)?;
            Some((lo <= v && v <= hi) != *negated)
        }
        Expr::In {
            value,
            list,
            negated,
        } => {
            let v = resolve(value, property)?;
            let found = list
                .iter()
                .filter_map(literal_value)
                .any(|item| compare(&v, CmpOp::Eq, &item) == Some(true));
            Some(found != *negated)
        }
        Expr::IsNull { value, negated } => Some(resolve(value, property).is_none() != *negated),
        Expr::Str {
            value,
            op,
            pattern,
            negated,
        } => {
            let v = match resolve(value, property)? {
                Value::Str(s) => s,
                _ => return None,
            };
            let hit = match op {
                StrOp::Contains => v.contains(pattern.as_str()),
                StrOp::StartsWith => v.starts_with(pattern.as_str()),
                StrOp::EndsWith => v.ends_with(pattern.as_str()),
            };
            Some(hit != *negated)
        }
        Expr::Bool(op) => as_bool(&resolve(op, property)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(expr: &str, props: &[(&str, &str)]) -> bool {
        let map: HashMap<&str, &str> = props.iter().copied().collect();
        SqlFilter::parse(expr)
            .unwrap()
            .matches(|k| map.get(k).copied())
    }

    #[test]
    fn numeric_and_string_comparisons() {
        assert!(check("a > 5", &[("a", "10")]));
        assert!(!check("a > 5", &[("a", "3")]));
        assert!(check("a between 0 and 3", &[("a", "3")]));
        assert!(!check("a not between 0 and 3", &[("a", "3")]));
        assert!(check("a = 3.0", &[("a", "3")]));
        assert!(check("TAGS = 'TagA'", &[("TAGS", "TagA")]));
        assert!(check("TAGS <> 'TagA'", &[("TAGS", "TagB")]));
        assert!(check("region IN ('hz', 'sh')", &[("region", "sh")]));
        assert!(check("region NOT IN ('hz', 'sh')", &[("region", "bj")]));
        assert!(check("name = 'it''s'", &[("name", "it's")]));
    }

    #[test]
    fn null_logic_is_three_valued() {
        assert!(!check("a > 5", &[]));
        assert!(!check("NOT (a > 5)", &[]));
        assert!(check("a IS NULL", &[]));
        assert!(check("a IS NOT NULL", &[("a", "")]));
        assert!(check("a > 5 OR b = 'x'", &[("b", "x")]));
        assert!(!check("a > 5 AND b = 'x'", &[("b", "x")]));
        assert!(check(
            "(a > 5 OR a < 0) AND NOT b = 'y'",
            &[("a", "-1"), ("b", "x")]
        ));
    }

    #[test]
    fn string_functions_and_booleans() {
        assert!(check("s CONTAINS 'bc'", &[("s", "abcd")]));
        assert!(check("s STARTSWITH 'ab'", &[("s", "abcd")]));
        assert!(check("s NOT ENDSWITH 'x'", &[("s", "abcd")]));
        assert!(check("flag = TRUE", &[("flag", "true")]));
        assert!(check("flag", &[("flag", "TRUE")]));
        assert!(check("TRUE", &[]));
    }

    #[test]
    fn bad_expressions_are_errors() {
        for bad in [
            "",
            "a >",
            "a = 'x",
            "a BETWEEN 1",
            "(a = 1",
            "a = 1 b",
            "a ! 1",
            "a IN ()",
            "a NOT 3",
        ] {
            assert!(SqlFilter::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            if let Ok(f) = SqlFilter::parse(&s) {
                let _ = f.matches(|_| Some("1"));
            }
        }
    }
}
