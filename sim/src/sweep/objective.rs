//! The objective: which runs are good enough.
//!
//! ```text
//! expr  := or
//! or    := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | side OP side
//! side  := METRIC | NUMBER
//! OP    := "<" | "<=" | ">" | ">=" | "==" | "!="
//! ```
//!
//! `mco_p99_ms < 2000 and mco_reply_ratio >= 0.999`. Metric names are those of
//! [`super::metrics::METRICS`]; numbers are decimal (`0.999`, `2e3`, `1_000`). `&&`,
//! `||` and `!` are accepted for `and`, `or` and `not`.
//!
//! A comparison with a metric that has no data in a run (no MCollective requests, an
//! empty histogram) is *unknown*, and logic is three-valued as in SQL and JMS selectors:
//! a run meets the objective only when it is true, so no data is never success.

use std::fmt;

use super::SweepError;
use super::metrics::{self, Metrics};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Side {
    /// A metric by name.
    Metric(String),
    /// A number.
    Number(f64),
}

/// A parsed objective.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `a OP b`
    Cmp(Side, Op, Side),
    /// `not e`
    Not(Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Side::Metric(m) => f.write_str(m),
            Side::Number(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp(a, op, b) => write!(f, "{a} {} {b}", op.text()),
            Expr::Not(e) => write!(f, "not ({e})"),
            Expr::And(a, b) => write!(f, "({a}) and ({b})"),
            Expr::Or(a, b) => write!(f, "({a}) or ({b})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Num(f64),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        let at = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = s.get(i..i + 2).unwrap_or("");
        let tok = match (c, two) {
            (_, "<=") => Some((Tok::Op(Op::Le), 2)),
            (_, ">=") => Some((Tok::Op(Op::Ge), 2)),
            (_, "==") => Some((Tok::Op(Op::Eq), 2)),
            (_, "!=") => Some((Tok::Op(Op::Ne), 2)),
            (_, "&&") => Some((Tok::And, 2)),
            (_, "||") => Some((Tok::Or, 2)),
            ('<', _) => Some((Tok::Op(Op::Lt), 1)),
            ('>', _) => Some((Tok::Op(Op::Gt), 1)),
            ('=', _) => Some((Tok::Op(Op::Eq), 1)),
            ('!', _) => Some((Tok::Not, 1)),
            ('(', _) => Some((Tok::Open, 1)),
            (')', _) => Some((Tok::Close, 1)),
            _ => None,
        };
        if let Some((t, n)) = tok {
            out.push((at, t));
            i += n;
            continue;
        }
        if c.is_ascii_digit() || c == '.' || c == '-' {
            let mut j = i + 1;
            while j < b.len() {
                let d = b[j] as char;
                let exp_sign = (d == '-' || d == '+') && matches!(b[j - 1], b'e' | b'E');
                if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exp_sign {
                    j += 1;
                } else {
                    break;
                }
            }
            let text = &s[i..j];
            let n: f64 = text
                .replace('_', "")
                .parse()
                .map_err(|_| format!("`{text}` at {} is not a number", i + 1))?;
            out.push((at, Tok::Num(n)));
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i + 1;
            while j < b.len() && ((b[j] as char).is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let w = &s[i..j];
            out.push((
                at,
                match w {
                    "and" | "AND" => Tok::And,
                    "or" | "OR" => Tok::Or,
                    "not" | "NOT" => Tok::Not,
                    _ => Tok::Word(w.to_owned()),
                },
            ));
            i = j;
            continue;
        }
        return Err(format!("unexpected `{c}` at {}", i + 1));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn here(&self) -> String {
        match self.toks.get(self.pos) {
            Some((at, _)) => format!("at {}", at + 1),
            None => format!("at the end ({})", self.len + 1),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(format!("expected `)` {}", self.here()));
                }
                self.pos += 1;
                Ok(e)
            }
            _ => {
                let a = self.side()?;
                let op = match self.peek() {
                    Some(Tok::Op(op)) => *op,
                    _ => {
                        return Err(format!(
                            "expected a comparison (<, <=, >, >=, ==, !=) {}",
                            self.here()
                        ));
                    }
                };
                self.pos += 1;
                let b = self.side()?;
                Ok(Expr::Cmp(a, op, b))
            }
        }
    }

    fn side(&mut self) -> Result<Side, String> {
        let here = self.here();
        match self.toks.get(self.pos).map(|t| t.1.clone()) {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Side::Number(n))
            }
            Some(Tok::Word(w)) => {
                if metrics::def(&w).is_none() {
                    return Err(format!(
                        "unknown metric `{w}` {here}; the metrics are: {}",
                        metrics::names()
                    ));
                }
                self.pos += 1;
                Ok(Side::Metric(w))
            }
            _ => Err(format!("expected a metric or a number {here}")),
        }
    }
}

impl std::str::FromStr for Expr {
    type Err = SweepError;

    fn from_str(s: &str) -> Result<Expr, SweepError> {
        let err = |message: String| SweepError::Objective {
            text: s.to_owned(),
            message,
        };
        let toks = tokens(s).map_err(err)?;
        if toks.is_empty() {
            return Err(err("empty objective".into()));
        }
        let mut p = Parser {
            toks,
            pos: 0,
            len: s.len(),
        };
        let e = p.or().map_err(err)?;
        if p.pos < p.toks.len() {
            return Err(err(format!("unexpected text {}", p.here())));
        }
        Ok(e)
    }
}

impl Expr {
    /// The value: `Some(true)`, `Some(false)`, or `None` (unknown: a metric without data).
    pub fn eval(&self, m: &Metrics) -> Option<bool> {
        match self {
            Expr::Cmp(a, op, b) => {
                let v = |s: &Side| match s {
                    Side::Number(n) => Some(*n),
                    Side::Metric(name) => m.get(name),
                };
                Some(op.holds(v(a)?, v(b)?))
            }
            Expr::Not(e) => e.eval(m).map(|v| !v),
            Expr::And(a, b) => match (a.eval(m), b.eval(m)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (a.eval(m), b.eval(m)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        }
    }

    /// Whether a run with metrics `m` meets the objective (true, not unknown).
    pub fn holds(&self, m: &Metrics) -> bool {
        self.eval(m) == Some(true)
    }

    /// The metrics the objective names, in order of appearance, without repeats.
    pub fn metrics(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        match self {
            Expr::Cmp(a, _, b) => {
                for s in [a, b] {
                    if let Side::Metric(n) = s
                        && !out.contains(n)
                    {
                        out.push(n.clone());
                    }
                }
            }
            Expr::Not(e) => e.collect(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }
}
