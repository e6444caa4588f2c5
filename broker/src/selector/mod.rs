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
//! - `like.rs`: LIKE patterns, compiled when parsed and matched when evaluated.
//! - `eval.rs`: three-valued evaluation and numeric conversion.

mod eval;
mod lexer;
mod like;
mod parser;

use std::borrow::Borrow;
use std::collections::BTreeMap;
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
// Callers' maps are only looked up here, never iterated, so their order cannot leak out.
#[allow(clippy::disallowed_types)]
impl<K, V, S> Properties for std::collections::HashMap<K, V, S>
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

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Properties backed by a list of name/value pairs.
    #[derive(Clone, Debug, Default)]
    struct Props(Vec<(String, Value<'static>)>);

    impl Props {
        fn new(pairs: &[(&str, Value<'static>)]) -> Props {
            Props(pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect())
        }
    }

    impl Properties for Props {
        fn property(&self, name: &str) -> Option<Value<'_>> {
            self.0.iter().find(|(k, _)| k == name).map(|&(_, v)| v)
        }
    }

    /// Properties whose string values are owned, for randomly generated strings.
    #[derive(Clone, Debug, Default)]
    struct OwnedProps(Vec<(String, OwnedValue)>);

    #[derive(Clone, Debug)]
    enum OwnedValue {
        Str(String),
        Long(i64),
        Double(f64),
        Bool(bool),
    }

    impl Properties for OwnedProps {
        fn property(&self, name: &str) -> Option<Value<'_>> {
            self.0
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| match v {
                    OwnedValue::Str(s) => Value::Str(s),
                    OwnedValue::Long(n) => Value::Long(*n),
                    OwnedValue::Double(f) => Value::Double(*f),
                    OwnedValue::Bool(b) => Value::Bool(*b),
                })
        }
    }

    fn sel(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const U: Option<bool> = None;

    /// The property set most table cases run against.
    fn standard_props() -> Props {
        Props::new(&[
            ("s", Value::Str("abc")),
            ("word", Value::Str("node1")),
            ("n", Value::Str("42")),
            ("f", Value::Str("2.5")),
            ("neg", Value::Str("-3")),
            ("l", Value::Long(10)),
            ("d", Value::Double(1.5)),
            ("zero", Value::Long(0)),
            ("big", Value::Long(i64::MAX)),
            ("b", Value::Bool(true)),
            ("bf", Value::Bool(false)),
            ("tstr", Value::Str("true")),
            ("empty", Value::Str("")),
            ("q", Value::Str("it's")),
            ("uni", Value::Str("café😀")),
            ("pct", Value::Str("10%")),
            ("JMSPriority", Value::Long(4)),
            ("JMSType", Value::Str("car")),
            ("mc_identity", Value::Str("node1.example-com")),
        ])
    }

    #[test]
    fn table() {
        let cases: &[(&str, Option<bool>)] = &[
            // String equality.
            ("s = 'abc'", T),
            ("s = 'ABC'", F),
            ("s <> 'abc'", F),
            ("s <> 'x'", T),
            ("'abc' = s", T),
            ("s = s", T),
            ("s = word", F),
            ("missing = 'abc'", U),
            ("missing <> 'abc'", U),
            ("q = 'it''s'", T),
            ("empty = ''", T),
            ("uni = 'café😀'", T),
            // Strings do not order.
            ("s < word", U),
            ("s >= s", U),
            ("NOT s > word", U),
            // String/number conversion.
            ("n = 42", T),
            ("n = 42.0", T),
            ("42 = n", T),
            ("n > 41", T),
            ("n >= 42", T),
            ("n < 41.5", F),
            ("n <> 42", F),
            ("f > 2", T),
            ("f = 2.5", T),
            ("f < 3", T),
            ("neg < 0", T),
            ("l = '10'", T),
            ("l = '10.0'", T),
            ("d = '1.5'", T),
            ("JMSPriority = '4'", T),
            ("s = 1", U),
            ("s <> 1", U),
            ("NOT s = 1", U),
            ("l = 'ten'", U),
            ("empty = 0", U),
            // Two strings are compared as strings even when both look numeric.
            ("n = '42'", T),
            ("n = '42.0'", F),
            // Numbers.
            ("l = 10", T),
            ("l = 10.0", T),
            ("l <> 10", F),
            ("l > 9.5", T),
            ("l < 10.5", T),
            ("l <= 10", T),
            ("l >= 11", F),
            ("d > 1", T),
            ("d = 1.5", T),
            ("big = 9223372036854775807", T),
            ("big > 9223372036854775806", T),
            ("big < 9.3e18", T),
            ("big = 9223372036854775807.0", F),
            ("zero = -0.0", T),
            ("l = 012", T),
            ("l = 0xA", T),
            ("l = 0Xa", T),
            ("l = 10L", T),
            ("d = 1.5d", T),
            ("d = 1.5F", T),
            ("d = 15e-1", T),
            ("d = .15E1", T),
            ("zero = -9223372036854775808 + 9223372036854775807 + 1", T),
            // Booleans.
            ("b", T),
            ("bf", F),
            ("(b)", T),
            ("NOT b", F),
            ("TRUE", T),
            ("FALSE", F),
            ("NOT FALSE", T),
            ("b = TRUE", T),
            ("b <> FALSE", T),
            ("bf = FALSE", T),
            ("b = bf", F),
            ("b = 'TRUE'", T),
            ("tstr = TRUE", T),
            ("tstr = FALSE", F),
            ("tstr <> FALSE", T),
            ("s = TRUE", U),
            ("l = b", U),
            ("b < bf", U),
            ("(l = 10) = TRUE", T),
            ("(l = 11) = FALSE", T),
            ("(l > 5) = 'true'", T),
            ("l > 5 = TRUE", T),
            // Non-booleans and NULL as conditions are UNKNOWN.
            ("s", U),
            ("l", U),
            ("tstr", U),
            ("missing", U),
            ("NOT missing", U),
            ("NULL", U),
            ("NOT NULL", U),
            // Arithmetic.
            ("l + 5 = 15", T),
            ("l - 15 = -5", T),
            ("l * 2 = 20", T),
            ("l / 4 = 2", T),
            ("l / 4.0 = 2.5", T),
            ("-l / 4 = -2", T),
            ("l % 3 = 1", T),
            ("-l % 3 = -1", T),
            ("1 + 2 * 3 = 7", T),
            ("(1 + 2) * 3 = 9", T),
            ("10 - 2 - 3 = 5", T),
            ("100 / 10 / 5 = 2", T),
            ("2 * 3 % 4 = 2", T),
            ("-2 * 3 + 1 = -5", T),
            ("2 * -3 = -6", T),
            ("1 - -1 = 2", T),
            ("-l = -10", T),
            ("- -l = 10", T),
            ("+l = 10", T),
            ("+n = 42", T),
            ("-n = -42", T),
            ("n + 1 = 43", T),
            ("n * f = 105", T),
            ("f * 2 = 5", T),
            ("s + 1 = 1", U),
            ("-s = 1", U),
            ("+s = 1", U),
            ("b + 1 = 2", U),
            ("missing + 1 = 1", U),
            ("l / 0 = 0", U),
            ("l / zero > 0", U),
            ("l % 0 = 0", U),
            ("d / 0.0 = 1", U),
            ("NOT (l / 0 = 0)", U),
            ("(l / 0) IS NULL", T),
            ("big + 1 > big", T),
            ("big * big > 0", T),
            ("-big - 2 < -big", T),
            // IS [NOT] NULL.
            ("missing IS NULL", T),
            ("missing IS NOT NULL", F),
            ("s IS NULL", F),
            ("s IS NOT NULL", T),
            ("empty IS NULL", F),
            ("(missing = 1) IS NULL", T),
            ("NOT missing IS NULL", F),
            // BETWEEN.
            ("l BETWEEN 5 AND 15", T),
            ("l BETWEEN 10 AND 10", T),
            ("l BETWEEN 11 AND 20", F),
            ("l BETWEEN 15 AND 5", F),
            ("l NOT BETWEEN 11 AND 20", T),
            ("l NOT BETWEEN 5 AND 15", F),
            ("n BETWEEN 40 AND 50", T),
            ("f BETWEEN 2 AND 3", T),
            ("d BETWEEN 1 AND 2", T),
            ("l + 1 BETWEEN 2 * 5 AND 11", T),
            ("s BETWEEN 1 AND 2", U),
            ("missing BETWEEN 1 AND 2", U),
            ("missing NOT BETWEEN 1 AND 2", U),
            ("l BETWEEN missing AND 5", F),
            ("l BETWEEN missing AND 15", U),
            ("l NOT BETWEEN missing AND 5", T),
            // LIKE.
            ("s LIKE 'a%'", T),
            ("s LIKE '_b_'", T),
            ("s LIKE 'b%'", F),
            ("s LIKE 'A%'", F),
            ("s NOT LIKE 'b%'", T),
            ("s NOT LIKE 'a%'", F),
            ("pct LIKE '10!%' ESCAPE '!'", T),
            ("pct LIKE '10\\%' ESCAPE '\\'", T),
            ("s LIKE '10!%' ESCAPE '!'", F),
            ("n LIKE '1!%' ESCAPE '!'", F),
            ("uni LIKE 'caf__'", T),
            ("uni LIKE 'caf_'", F),
            ("uni LIKE '%😀'", T),
            ("q LIKE 'it''%'", T),
            ("n LIKE '4_'", T),
            ("mc_identity LIKE 'node_.%'", T),
            ("missing LIKE '%'", U),
            ("missing NOT LIKE '%'", U),
            ("l LIKE '1%'", U),
            ("b NOT LIKE '%'", U),
            // IN.
            ("s IN ('x', 'abc')", T),
            ("s IN ('x', 'y')", F),
            ("s IN ('ABC')", F),
            ("s NOT IN ('x', 'y')", T),
            ("s NOT IN ('abc')", F),
            ("NOT s IN ('abc')", F),
            ("q IN ('it''s')", T),
            ("missing IN ('a')", U),
            ("missing NOT IN ('a')", U),
            ("l IN ('10')", U),
            ("l NOT IN ('10')", U),
            // Keywords in any case.
            ("s = 'abc' and l = 10", T),
            ("s = 'x' Or l = 10", T),
            ("NoT s = 'x'", T),
            ("l between 1 AND 20", T),
            ("l nOt BeTwEeN 1 and 5", T),
            ("missing is null", T),
            ("s iS nOt NuLl", T),
            ("b = true", T),
            ("s in ('abc')", T),
            ("s not like 'x%' escape 'x'", T),
            // Comments and whitespace.
            ("s = 'abc' -- trailing comment", T),
            ("/* c */ s /* = 'x' */ = 'abc'", T),
            ("s = 'abc'\n-- line\nAND l = 10", T),
            ("s = 'abc' -- AND l = 11", T),
            ("\t\r\n\x0cs\n=\n'abc'\n", T),
            // JMS headers.
            ("JMSPriority > 3 AND JMSType = 'car'", T),
            ("JMSPriority BETWEEN 0 AND 4", T),
            // Precedence of the logic operators.
            ("s = 'x' AND l = 10 OR b", T),
            ("s = 'x' AND (l = 10 OR b)", F),
            ("NOT s = 'x' AND bf", F),
            ("NOT (s = 'x' AND bf)", T),
            ("b OR bf AND missing", T),
            ("(b OR bf) AND missing", U),
            ("NOT NOT b", T),
            ("NOT NOT NOT b", F),
            // MCollective.
            ("mc_identity = 'node1.example-com'", T),
            ("mc_identity = 'node1'", F),
            ("mc_identity <> 'node1.example-com'", F),
            (
                "mc_identity = 'node2' OR mc_identity = 'node1.example-com'",
                T,
            ),
            ("mc_identity IN ('node1.example-com', 'node2')", T),
        ];
        let props = standard_props();
        let mut failures = Vec::new();
        for &(text, expected) in cases {
            let selector = sel(text);
            let got = selector.evaluate(&props);
            if got != expected || selector.matches(&props) != (expected == T) {
                failures.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn three_valued_truth_tables() {
        // t is TRUE, f is FALSE, and u is missing, hence UNKNOWN.
        let props = Props::new(&[("t", Value::Bool(true)), ("f", Value::Bool(false))]);
        let and = [
            ("t", "t", T),
            ("t", "f", F),
            ("t", "u", U),
            ("f", "t", F),
            ("f", "f", F),
            ("f", "u", F),
            ("u", "t", U),
            ("u", "f", F),
            ("u", "u", U),
        ];
        let or = [
            ("t", "t", T),
            ("t", "f", T),
            ("t", "u", T),
            ("f", "t", T),
            ("f", "f", F),
            ("f", "u", U),
            ("u", "t", T),
            ("u", "f", U),
            ("u", "u", U),
        ];
        for (x, y, expected) in and {
            assert_eq!(
                sel(&format!("{x} AND {y}")).evaluate(&props),
                expected,
                "{x} AND {y}"
            );
            // The same through comparisons, where UNKNOWN comes from comparing NULL.
            let text = format!("({x} = TRUE) AND ({y} = TRUE)");
            assert_eq!(sel(&text).evaluate(&props), expected, "{text}");
        }
        for (x, y, expected) in or {
            assert_eq!(
                sel(&format!("{x} OR {y}")).evaluate(&props),
                expected,
                "{x} OR {y}"
            );
            let text = format!("({x} = TRUE) OR ({y} = TRUE)");
            assert_eq!(sel(&text).evaluate(&props), expected, "{text}");
        }
        for (x, expected) in [("t", F), ("f", T), ("u", U)] {
            assert_eq!(
                sel(&format!("NOT {x}")).evaluate(&props),
                expected,
                "NOT {x}"
            );
        }
        // Three-way chains short-circuit correctly in both directions.
        assert_eq!(sel("u AND t AND f").evaluate(&props), F);
        assert_eq!(sel("u OR f OR t").evaluate(&props), T);
        assert_eq!(sel("u AND t AND t").evaluate(&props), U);
        assert_eq!(sel("u OR f OR f").evaluate(&props), U);
    }

    #[test]
    // The std map is the type under test; it is only looked up.
    #[allow(clippy::disallowed_types)]
    fn header_maps_are_properties() {
        let mut headers = std::collections::HashMap::new();
        headers.insert("mc_identity".to_owned(), "node1".to_owned());
        headers.insert("price".to_owned(), "9.5".to_owned());
        assert!(sel("mc_identity = 'node1' AND price < 10").matches(&headers));
        assert!(!sel("mc_identity = 'node2'").matches(&headers));
        let tree: BTreeMap<&str, &str> = [("JMSType", "car")].into_iter().collect();
        assert!(sel("JMSType = 'car'").matches(&tree));
        assert!(!sel("JMSType IS NULL").matches(&tree));
    }

    #[test]
    fn as_str_keeps_the_text() {
        let text = " mc_identity = 'node1' -- comment";
        assert_eq!(sel(text).as_str(), text);
    }

    #[test]
    fn errors_are_single_line() {
        let e = Selector::parse("a = 'x' AND\n(b = 'y'\n").unwrap_err();
        assert_eq!(e.offset, 21);
        assert_eq!(
            e.to_string(),
            "invalid selector at byte 21: expected ')', found end of selector"
        );
        for text in ["a = 'x\ny", "a = \u{7}", "(\n\n", "a = 1 \n\n b"] {
            let e = Selector::parse(text).unwrap_err();
            assert!(!e.to_string().contains(['\n', '\r']), "{text:?}: {e}");
        }
    }

    #[test]
    fn equality_shapes() {
        let some: &[(&str, (&str, &str))] = &[
            ("mc_identity = 'node1'", ("mc_identity", "node1")),
            ("'node1' = mc_identity", ("mc_identity", "node1")),
            (
                "((mc_identity = 'node1.example-com'))",
                ("mc_identity", "node1.example-com"),
            ),
            (
                "/* c */ mc_identity\n=\t'node-2' -- x",
                ("mc_identity", "node-2"),
            ),
            ("(mc_identity) = ('node_3')", ("mc_identity", "node_3")),
            ("mc_identity = ''", ("mc_identity", "")),
            ("x = 'it''s'", ("x", "it's")),
            ("x = 'café'", ("x", "café")),
            ("x = '5x'", ("x", "5x")),
            ("x = ' 5'", ("x", " 5")),
            ("x = 'yes'", ("x", "yes")),
            ("jms_like = 'x'", ("jms_like", "x")),
        ];
        for &(text, pair) in some {
            assert_eq!(sel(text).equality(), Some(pair), "{text:?}");
        }
        let none = [
            "JMSType = 'car'",
            "JMSXGroupID = 'g'",
            "x = '5'",
            "x = '-1.5'",
            "x = '1e3'",
            "x = 'true'",
            "x = 'FALSE'",
            "x <> 'a'",
            "NOT x = 'a'",
            "x = 'a' AND y = 'b'",
            "x = 'a' OR FALSE",
            "x = y",
            "'a' = 'a'",
            "x = 5",
            "x IN ('a')",
            "x LIKE 'a'",
            "(x = 'a') = TRUE",
            "x = 'a' = TRUE",
        ];
        for text in none {
            assert_eq!(sel(text).equality(), None, "{text:?}");
        }
    }

    /// Some values for the indexed property, chosen to probe every conversion rule.
    fn probe_values(literal: &str) -> Vec<Option<OwnedValue>> {
        vec![
            None,
            Some(OwnedValue::Str(literal.to_owned())),
            Some(OwnedValue::Str(format!("{literal}x"))),
            Some(OwnedValue::Str(format!(" {literal}"))),
            Some(OwnedValue::Str(literal.to_uppercase())),
            Some(OwnedValue::Str(String::new())),
            Some(OwnedValue::Str("5".to_owned())),
            Some(OwnedValue::Str("true".to_owned())),
            Some(OwnedValue::Long(5)),
            Some(OwnedValue::Long(0)),
            Some(OwnedValue::Double(5.0)),
            Some(OwnedValue::Double(f64::NAN)),
            Some(OwnedValue::Bool(true)),
            Some(OwnedValue::Bool(false)),
        ]
    }

    /// Asserts the `equality()` contract for `selector` on `props`.
    fn assert_equivalent(selector: &Selector, props: &dyn Properties) {
        let Some((ident, literal)) = selector.equality() else {
            return;
        };
        let indexed = props.property(ident) == Some(Value::Str(literal));
        assert_eq!(
            selector.matches(props),
            indexed,
            "{:?} with {ident} = {:?}",
            selector.as_str(),
            props.property(ident)
        );
    }

    #[test]
    fn equality_is_equivalent_to_matches() {
        let texts = [
            "mc_identity = 'node1'",
            "'node1.example-com' = mc_identity",
            "((mc_identity = 'web-01.dc2.example.net'))",
            "x = ''",
            "x = 'it''s'",
            "x = ' 5'",
            "x = '5 '",
            "x = '0x10'",
            "x = 'NaN'",
            "x = 'Infinity'",
            "x = 'yes'",
            "x = 'TRUE '",
            "x = '1,5'",
            "x = '10L'",
            "x = 'ü'",
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        for text in texts {
            let selector = sel(text);
            let (ident, literal) = selector
                .equality()
                .unwrap_or_else(|| panic!("{text:?} should be indexable"));
            let mut values = probe_values(literal);
            for _ in 0..50 {
                values.push(Some(random_value(&mut rng)));
            }
            for value in values {
                let mut props = OwnedProps::default();
                // Unrelated properties must not matter.
                props
                    .0
                    .push(("other".to_owned(), OwnedValue::Str(literal.to_owned())));
                if let Some(value) = value {
                    props.0.push((ident.to_owned(), value));
                }
                assert_equivalent(&selector, &props);
            }
        }
        // The index and the evaluator agree on the standard properties, too.
        let selector = sel("mc_identity = 'node1.example-com'");
        assert!(selector.matches(&standard_props()));
        assert_eq!(
            selector.equality(),
            Some(("mc_identity", "node1.example-com"))
        );
    }

    #[test]
    fn long_flat_selectors_evaluate() {
        // A 4096-byte OR list is parsed into one flat node and evaluated without deep
        // recursion.
        let mut text = String::from("mc_identity = 'n0'");
        let mut i = 1;
        loop {
            let next = format!(" OR mc_identity = 'n{i}'");
            if text.len() + next.len() > MAX_LENGTH {
                break;
            }
            text.push_str(&next);
            i += 1;
        }
        let selector = sel(&text);
        let last = format!("n{}", i - 1);
        assert!(selector.matches(&Props::new(&[("mc_identity", Value::Str("n0"))])));
        let owned = OwnedProps(vec![("mc_identity".to_owned(), OwnedValue::Str(last))]);
        assert!(selector.matches(&owned));
        assert!(!selector.matches(&Props::new(&[("mc_identity", Value::Str("m"))])));

        // A long arithmetic chain is one flat node too.
        let terms = (MAX_LENGTH - "x = 0".len()) / 2;
        let sum = format!("x = 0{}", "+1".repeat(terms));
        assert!(sum.len() <= MAX_LENGTH);
        let count = i64::try_from(terms).unwrap();
        assert!(sel(&sum).matches(&Props::new(&[("x", Value::Long(count))])));
        assert!(!sel(&sum).matches(&Props::new(&[("x", Value::Long(count - 1))])));
    }

    #[test]
    fn deep_selectors_evaluate() {
        let depth = MAX_DEPTH;
        let props = Props::new(&[("b", Value::Bool(true)), ("x", Value::Long(1))]);
        let nested_not = format!("{}b", "NOT ".repeat(depth));
        assert_eq!(sel(&nested_not).evaluate(&props), Some(depth % 2 == 0));
        let nested_arith = format!("{}x{} = 64", "(1 + ".repeat(63), ")".repeat(63));
        assert!(sel(&nested_arith).matches(&props));
        let nested_cmp = format!("{}TRUE{}", "(b = ".repeat(depth), ")".repeat(depth));
        assert!(sel(&nested_cmp).matches(&props));
    }

    /// Selectors at the nesting limit whose every level costs as much stack as possible.
    fn worst_case_selectors() -> Vec<String> {
        // Each level passes through every precedence level of the grammar.
        let mut ladder = String::from("x");
        for _ in 0..MAX_DEPTH / 3 {
            ladder = format!("(a = 1 OR b AND x = (c < 1 + 2 * ({ladder})))");
        }
        vec![
            format!("{}x = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
            ladder,
            format!(
                "{}b{}",
                "(a = 1 OR NOT ".repeat(MAX_DEPTH / 2),
                ")".repeat(MAX_DEPTH / 2)
            ),
            format!(
                "x = {}1{}",
                "-(1 * ".repeat(MAX_DEPTH / 2),
                ")".repeat(MAX_DEPTH / 2)
            ),
            format!("b{}", " = TRUE".repeat(MAX_DEPTH + 1)),
        ]
    }

    #[test]
    fn worst_case_nesting_fits_in_a_small_stack() {
        // Measured: these need at most about 512 KiB in a debug build and 128 KiB in a
        // release build, for parsing and evaluation alike. 1 MiB is half the default
        // stack of a spawned thread (and of a tokio worker).
        let run = || {
            let props = Props::new(&[
                ("a", Value::Long(2)),
                ("b", Value::Bool(true)),
                ("c", Value::Long(0)),
                ("x", Value::Long(1)),
            ]);
            for text in worst_case_selectors() {
                let selector = sel(&text);
                // Evaluation must reach the innermost level; it is not short-circuited.
                selector.evaluate(&props);
                drop(selector);
            }
        };
        // A thread only for its small, known stack; the test runs outside any simulation.
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(run)
            .unwrap();
        assert!(thread.join().is_ok());
    }

    /// A random property value, biased towards values that look like numbers and booleans.
    fn random_value(rng: &mut SmallRng) -> OwnedValue {
        const STRINGS: &[&str] = &[
            "",
            "node1",
            "abc",
            "a%b",
            "_",
            "5",
            "-5",
            "5.0",
            "1e3",
            "true",
            "FALSE",
            "x'y",
            "café",
            "9223372036854775808",
            " 5",
            "NaN",
        ];
        match rng.random_range(0..6) {
            0 => OwnedValue::Str(STRINGS[rng.random_range(0..STRINGS.len())].to_owned()),
            1 => OwnedValue::Str(random_text(rng, "ab5.%_-e'é", 6)),
            2 => OwnedValue::Long(match rng.random_range(0..4) {
                0 => i64::MAX,
                1 => i64::MIN,
                _ => rng.random_range(-10..10),
            }),
            3 => OwnedValue::Double(match rng.random_range(0..5) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -0.0,
                _ => f64::from(rng.random_range(-20..20)) / 4.0,
            }),
            _ => OwnedValue::Bool(rng.random()),
        }
    }

    /// A random string of up to `max_len` characters from `alphabet`.
    fn random_text(rng: &mut SmallRng, alphabet: &str, max_len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let len = rng.random_range(0..=max_len);
        (0..len)
            .map(|_| chars[rng.random_range(0..chars.len())])
            .collect()
    }

    /// Random properties over the identifiers the fuzzers use.
    fn random_props(rng: &mut SmallRng) -> OwnedProps {
        let mut props = OwnedProps::default();
        for name in ["a", "b", "c", "mc_identity", "JMSPriority"] {
            if rng.random_bool(0.8) {
                props.0.push((name.to_owned(), random_value(rng)));
            }
        }
        props
    }

    /// Parses `text` and, if it parses, evaluates it and checks the invariants that must
    /// hold for every selector. Returns whether it parsed.
    fn exercise(text: &str, rng: &mut SmallRng) -> bool {
        match Selector::parse(text) {
            Ok(selector) => {
                assert_eq!(selector.as_str(), text);
                for _ in 0..3 {
                    let props = random_props(rng);
                    let truth = selector.evaluate(&props);
                    assert_eq!(selector.matches(&props), truth == Some(true), "{text:?}");
                    assert_equivalent(&selector, &props);
                }
                true
            }
            Err(e) => {
                assert!(e.offset <= text.len(), "{text:?}: {e}");
                assert!(text.is_char_boundary(e.offset), "{text:?}: {e}");
                assert!(!e.message.is_empty() && !e.message.contains('\n'), "{e}");
                false
            }
        }
    }

    #[test]
    fn random_strings_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x5e1ec7);
        let alphabet = "abcxyzINOTRULEVS_$0123456789 '()=<>+-*/%,.!\n\té😀\u{0}";
        for _ in 0..5000 {
            let text = random_text(&mut rng, alphabet, 48);
            exercise(&text, &mut rng);
        }
        // Arbitrary bytes that happen to be UTF-8, including multi-byte characters.
        for _ in 0..2000 {
            let len = rng.random_range(0..32);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Ok(text) = String::from_utf8(bytes) {
                exercise(&text, &mut rng);
            }
        }
    }

    #[test]
    fn token_soup_never_panics() {
        const TOKENS: &[&str] = &[
            "a",
            "b",
            "c",
            "mc_identity",
            "JMSPriority",
            "'x'",
            "'node1'",
            "'5'",
            "''",
            "'%_'",
            "'!'",
            "1",
            "0",
            "2.5",
            "0x1F",
            "017",
            "9223372036854775807",
            "1e308",
            "TRUE",
            "FALSE",
            "NULL",
            "NOT",
            "AND",
            "OR",
            "BETWEEN",
            "LIKE",
            "ESCAPE",
            "IN",
            "IS",
            "(",
            ")",
            "(",
            ")",
            ",",
            "=",
            "<>",
            "<",
            ">",
            "<=",
            ">=",
            "+",
            "-",
            "*",
            "/",
            "%",
            "/* c */",
            "-- c\n",
        ];
        let mut rng = SmallRng::seed_from_u64(42);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(1..12);
            let text: Vec<&str> = (0..len)
                .map(|_| TOKENS[rng.random_range(0..TOKENS.len())])
                .collect();
            if exercise(&text.join(" "), &mut rng) {
                parsed += 1;
            }
        }
        // The soup must reach the evaluator often enough to be a real test of it.
        assert!(parsed > 200, "only {parsed} token soups parsed");
    }

    /// A random well-formed boolean selector.
    fn gen_bool(rng: &mut SmallRng, depth: u32) -> String {
        let leaf = depth == 0 || rng.random_bool(0.3);
        if leaf {
            return match rng.random_range(0..8) {
                0 => format!(
                    "{} {} {}",
                    gen_value(rng, 1, true),
                    gen_cmp(rng),
                    gen_value(rng, 1, true)
                ),
                1 => format!("{} IS NOT NULL", gen_ident(rng)),
                2 => format!("{} IS NULL", gen_ident(rng)),
                3 => format!(
                    "{} LIKE '{}' ESCAPE '!'",
                    gen_ident(rng),
                    random_text(rng, "ab5%_!", 4)
                ),
                4 => format!("{} NOT IN ('a', '5', 'true')", gen_ident(rng)),
                5 => format!(
                    "{} BETWEEN {} AND {}",
                    gen_value(rng, 1, false),
                    gen_value(rng, 1, false),
                    gen_value(rng, 1, false)
                ),
                6 => gen_ident(rng),
                _ => ["TRUE", "FALSE", "NULL"][rng.random_range(0..3)].to_owned(),
            };
        }
        match rng.random_range(0..3) {
            0 => format!(
                "({}) AND ({})",
                gen_bool(rng, depth - 1),
                gen_bool(rng, depth - 1)
            ),
            1 => format!(
                "({}) OR ({})",
                gen_bool(rng, depth - 1),
                gen_bool(rng, depth - 1)
            ),
            _ => format!("NOT ({})", gen_bool(rng, depth - 1)),
        }
    }

    fn gen_ident(rng: &mut SmallRng) -> String {
        ["a", "b", "c", "mc_identity"][rng.random_range(0..4)].to_owned()
    }

    fn gen_cmp(rng: &mut SmallRng) -> &'static str {
        ["=", "<>"][rng.random_range(0..2)]
    }

    /// A random value expression; string literals only when `strings` is set.
    fn gen_value(rng: &mut SmallRng, depth: u32, strings: bool) -> String {
        if depth > 0 && rng.random_bool(0.3) {
            let op = ["+", "-", "*", "/", "%"][rng.random_range(0..5)];
            let lhs = gen_value(rng, depth - 1, strings);
            let rhs = gen_value(rng, depth - 1, strings);
            return format!("({lhs} {op} {rhs})");
        }
        match rng.random_range(0..if strings { 5 } else { 4 }) {
            0 | 1 => gen_ident(rng),
            2 => rng.random_range(-3..10).to_string(),
            3 => "2.5".to_owned(),
            _ => ["'5'", "'a'", "'true'"][rng.random_range(0..3)].to_owned(),
        }
    }

    #[test]
    fn generated_selectors_obey_logic_laws() {
        let mut rng = SmallRng::seed_from_u64(2024);
        let mut skipped = 0;
        for _ in 0..3000 {
            let e = gen_bool(&mut rng, 3);
            let Ok(selector) = Selector::parse(&e) else {
                // Some random comparisons are refused on sight (a boolean compared with a
                // number, say); they are rare.
                skipped += 1;
                continue;
            };
            let negated = sel(&format!("NOT ({e})"));
            let excluded_middle = sel(&format!("({e}) OR NOT ({e})"));
            let contradiction = sel(&format!("({e}) AND NOT ({e})"));
            let double_negation = sel(&format!("NOT NOT ({e})"));
            let other = gen_bool(&mut rng, 2);
            let (Ok(other_selector), Ok(de_morgan)) = (
                Selector::parse(&other),
                Selector::parse(&format!("NOT (({e}) AND ({other}))")),
            ) else {
                skipped += 1;
                continue;
            };
            let de_morgan_rhs = sel(&format!("NOT ({e}) OR NOT ({other})"));
            for _ in 0..4 {
                let props = random_props(&mut rng);
                let truth = selector.evaluate(&props);
                assert_eq!(negated.evaluate(&props), truth.map(|b| !b), "{e}");
                // Under three-valued logic, these are UNKNOWN exactly when `e` is.
                assert_eq!(excluded_middle.evaluate(&props), truth.map(|_| true), "{e}");
                assert_eq!(contradiction.evaluate(&props), truth.map(|_| false), "{e}");
                assert_eq!(double_negation.evaluate(&props), truth, "{e}");
                assert_eq!(
                    de_morgan.evaluate(&props),
                    de_morgan_rhs.evaluate(&props),
                    "{e} / {other}"
                );
                // The AND of `e` and `other` follows the SQL table.
                let both = sel(&format!("({e}) AND ({other})")).evaluate(&props);
                let expected = match (truth, other_selector.evaluate(&props)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                assert_eq!(both, expected, "{e} / {other}");
            }
        }
        assert!(skipped < 300, "{skipped} generated selectors were refused");
    }
}
