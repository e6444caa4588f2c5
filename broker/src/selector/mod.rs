//! JMS message selectors as ActiveMQ evaluates them (SQL-92 subset over message headers).
//!
//! A [`Selector`] is parsed once from the text of a SUBSCRIBE `selector` header and then
//! evaluated against each message through the [`Properties`] trait. Every STOMP SEND
//! header becomes a string property, so the broker hands headers to the selector as
//! [`Value::Str`]; JMS headers such as `JMSPriority` may be supplied as numbers.
//!
//! # Semantics
//!
//! - Grammar: JMS 1.1 selectors, with ActiveMQ's additions `%` (remainder), hex and octal
//!   literals, and `/* */` comments. `parser.rs` has the precise grammar and precedence:
//!   OR < AND < NOT < `=`/`<>`/`IS NULL` < `<`/`>`/`BETWEEN`/`LIKE`/`IN` < `+`/`-` <
//!   `*`/`/`/`%` < unary `+`/`-`.
//! - Three-valued logic: a missing property is NULL; comparisons, arithmetic, LIKE, IN and
//!   BETWEEN involving NULL are UNKNOWN; `NOT UNKNOWN` is UNKNOWN; AND and OR follow the
//!   SQL truth tables. A message is selected only when the whole selector is TRUE.
//! - Types: strings support only `=` and `<>` against strings; booleans only `=` and `<>`.
//!   Any other combination is UNKNOWN rather than an error, except that (as with
//!   ActiveMQ's `convert_string_expressions:` prefix, which it applies to every STOMP
//!   selector) a string meeting a number is converted to a number, and a string meeting a
//!   boolean in `=`/`<>` is converted from `true`/`false`. Integers are exact `i64`s;
//!   overflowing arithmetic continues in `f64`; division by zero is UNKNOWN.
//! - Limits: selectors longer than [`MAX_LENGTH`] bytes or nested deeper than
//!   [`MAX_DEPTH`] levels (parentheses, `NOT`, unary signs and `a = b = c` chains) are
//!   refused, so neither parsing nor evaluation can exhaust the stack. Nothing in this
//!   module panics on any input.
//!
//! # Layout
//!
//! - `lexer.rs`: text to tokens, with comments and literals.
//! - `parser.rs`: tokens to the expression tree, with ActiveMQ's parse-time type checks.
//! - `eval.rs`: three-valued evaluation, numeric conversion and LIKE matching.

mod eval;
mod lexer;
mod parser;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use thiserror::Error;

use self::eval::{parse_bool, parse_number};
use self::parser::{CmpOp, Expr, Literal};

/// The longest selector accepted, in bytes.
pub const MAX_LENGTH: usize = 4096;

/// The deepest nesting of parentheses, `NOT` and unary `+`/`-` accepted.
pub const MAX_DEPTH: usize = 64;

/// A property value as a selector sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// A string property (every STOMP header is one).
    Str(&'a str),
    /// An integer (JMSPriority, JMSTimestamp, numeric literals).
    Long(i64),
    /// A floating-point number.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// Where a selector reads message properties from.
pub trait Properties {
    /// The value of property `name`, or `None` when the message has no such property.
    fn property(&self, name: &str) -> Option<Value<'_>>;
}

/// A map of header names to header values, as STOMP frames carry them.
impl<K, V, S> Properties for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn property(&self, name: &str) -> Option<Value<'_>> {
        self.get(name).map(|v| Value::Str(v.as_ref()))
    }
}

/// A map of header names to header values, as STOMP frames carry them.
impl<K, V> Properties for BTreeMap<K, V>
where
    K: Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn property(&self, name: &str) -> Option<Value<'_>> {
        self.get(name).map(|v| Value::Str(v.as_ref()))
    }
}

/// Why a selector string was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid selector at byte {offset}: {message}")]
pub struct SelectorError {
    /// Byte offset into the selector text.
    pub offset: usize,
    /// What was wrong, in one line.
    pub message: String,
}

/// A compiled selector.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
    expr: Expr,
}

impl Selector {
    /// Parses selector text.
    ///
    /// Fails on syntax errors, on expressions ActiveMQ also rejects when parsing (such as
    /// `x = NULL`, `x < 'abc'` or a bare `5`), on an empty selector, and on selectors
    /// beyond [`MAX_LENGTH`] or [`MAX_DEPTH`].
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let expr = parser::parse(text)?;
        Ok(Selector {
            text: text.to_owned(),
            expr,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message with these properties is selected: the selector is TRUE.
    pub fn matches(&self, props: &dyn Properties) -> bool {
        self.evaluate(props) == Some(true)
    }

    /// The selector's truth value for these properties: `Some(true)`, `Some(false)`, or
    /// `None` for UNKNOWN (which does not select the message).
    pub fn evaluate(&self, props: &dyn Properties) -> Option<bool> {
        eval::evaluate(&self.expr, props)
    }

    /// For a selector of the exact form `ident = 'literal'` (either side, parentheses and
    /// comments allowed), the pair, so that consumers can be indexed by it.
    ///
    /// When this returns `Some((ident, literal))`, `matches(p)` is true exactly when
    /// `p.property(ident) == Some(Value::Str(literal))`. To keep that promise, `None` is
    /// returned when the identifier starts with `JMS` (JMS headers may be numeric) and
    /// when the literal would convert to a number or a boolean (such as `'5'` or
    /// `'true'`), because then a numeric or boolean property could also match it.
    pub fn equality(&self) -> Option<(&str, &str)> {
        let Expr::Compare {
            op: CmpOp::Eq,
            lhs,
            rhs,
        } = &self.expr
        else {
            return None;
        };
        let (ident, literal) = match (&**lhs, &**rhs) {
            (Expr::Ident(ident), Expr::Literal(Literal::Str(literal)))
            | (Expr::Literal(Literal::Str(literal)), Expr::Ident(ident)) => (ident, literal),
            _ => return None,
        };
        if ident.starts_with("JMS")
            || parse_number(literal).is_some()
            || parse_bool(literal).is_some()
        {
            return None;
        }
        Some((ident, literal))
    }
}
