//! Evaluation of a parsed selector against one message's properties.
//!
//! Evaluation uses SQL three-valued logic. Every expression produces a [`Val`]; a boolean
//! expression produces `Bool` or `Null`, where `Null` plays the part of UNKNOWN. A missing
//! property is `Null`, and so is the result of any operation whose operands have the
//! wrong types (a string ordered with `<`, a boolean added to a number), of division by
//! zero, and of a string that does not convert to a number where a number is needed.
//!
//! Strings are compared by borrowing them from the properties or from the parsed
//! literals, and numbers are passed by value, so evaluation never allocates.
//!
//! ActiveMQ stores STOMP selectors with `convert_string_expressions:`, so when a string
//! meets a number (in a comparison or in arithmetic) the string is converted with
//! [`parse_number`], and when a string meets a boolean in `=`/`<>` it is converted with
//! [`parse_bool`]. Two strings are never converted: `'10' = '10.0'` is false.

use std::cmp::Ordering;

use super::parser::{ArithOp, CmpOp, Expr, Literal};
use super::{Properties, Value};

/// A value during evaluation. `Null` is both SQL NULL and the UNKNOWN truth value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

impl<'a> From<Value<'a>> for Val<'a> {
    fn from(value: Value<'a>) -> Self {
        match value {
            Value::Str(s) => Val::Str(s),
            Value::Long(n) => Val::Long(n),
            Value::Double(f) => Val::Double(f),
            Value::Bool(b) => Val::Bool(b),
        }
    }
}

impl Val<'_> {
    /// The value as a truth value: TRUE, FALSE, or UNKNOWN (`None`) for NULL and for
    /// anything that is not a boolean.
    fn truth(self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a number, converting strings; `None` when that is impossible.
    fn number(self) -> Option<Num> {
        match self {
            Val::Long(n) => Some(Num::Long(n)),
            Val::Double(f) => Some(Num::Double(f)),
            Val::Str(s) => parse_number(s),
            Val::Null | Val::Bool(_) => None,
        }
    }
}

/// A truth value as a `Val`.
fn from_truth<'a>(truth: Option<bool>) -> Val<'a> {
    truth.map_or(Val::Null, Val::Bool)
}

/// A number, exact or approximate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Long(i64),
    Double(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            // Precision loss above 2^53 is accepted: this path is only taken when the
            // other operand is already approximate, or the exact result overflowed.
            Num::Long(n) => n as f64,
            Num::Double(f) => f,
        }
    }

    fn into_val<'a>(self) -> Val<'a> {
        match self {
            Num::Long(n) => Val::Long(n),
            Num::Double(f) => Val::Double(f),
        }
    }
}

/// Converts a string to a number the way a numeric comparison needs it: an optional sign,
/// then decimal digits with an optional fraction and exponent (`42`, `-7`, `+1.5`, `.5`,
/// `5.`, `1e3`, `2.5E-2`). No surrounding whitespace, no suffixes, no hex, no `NaN` or
/// `Infinity`. Integers that fit in an `i64` stay exact; everything else is a double.
pub(crate) fn parse_number(s: &str) -> Option<Num> {
    let bytes = s.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_digits = digits(i);
    i += int_digits;
    let mut integral = true;
    let mut mantissa_digits = int_digits;
    if bytes.get(i) == Some(&b'.') {
        integral = false;
        let frac_digits = digits(i + 1);
        mantissa_digits += frac_digits;
        i += 1 + frac_digits;
    }
    if mantissa_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        integral = false;
        i += 1;
        i += usize::from(matches!(bytes.get(i), Some(b'+' | b'-')));
        let exp_digits = digits(i);
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != bytes.len() {
        return None;
    }
    if integral {
        if let Ok(n) = s.parse::<i64>() {
            return Some(Num::Long(n));
        }
    }
    s.parse::<f64>().ok().map(Num::Double)
}

/// Converts a string to a boolean for comparison with a boolean: `true` or `false` in any
/// ASCII case; anything else does not convert.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// 2^63, the smallest double above every `i64` (exact: a power of two).
const TWO_63: f64 = (1u64 << 63) as f64;

/// Orders an exact integer against a double without rounding the integer; `None` for NaN.
fn cmp_long_double(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // `whole` is an integer in [-2^63, 2^63), so the cast is exact.
    let ordering = i.cmp(&(whole as i64)).then_with(|| {
        let frac = f - whole;
        if frac > 0.0 {
            Ordering::Less
        } else if frac < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    Some(ordering)
}

/// Orders two numbers; `None` when a NaN is involved.
fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Long(x), Num::Long(y)) => Some(x.cmp(&y)),
        (Num::Double(x), Num::Double(y)) => x.partial_cmp(&y),
        (Num::Long(x), Num::Double(y)) => cmp_long_double(x, y),
        (Num::Double(x), Num::Long(y)) => cmp_long_double(y, x).map(Ordering::reverse),
    }
}

/// Applies a comparison operator to an ordering.
fn holds(op: CmpOp, ordering: Ordering) -> bool {
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    }
}

/// Compares two values. UNKNOWN (`None`) when either is NULL or the types do not compare.
fn compare(op: CmpOp, lhs: Val<'_>, rhs: Val<'_>) -> Option<bool> {
    let equality = matches!(op, CmpOp::Eq | CmpOp::Ne);
    match (lhs, rhs) {
        (Val::Null, _) | (_, Val::Null) => None,
        // Strings and booleans only support = and <>.
        (Val::Str(a), Val::Str(b)) if equality => Some((a == b) == (op == CmpOp::Eq)),
        (Val::Bool(a), Val::Bool(b)) if equality => Some((a == b) == (op == CmpOp::Eq)),
        (Val::Bool(a), Val::Str(s)) | (Val::Str(s), Val::Bool(a)) if equality => {
            parse_bool(s).map(|b| (a == b) == (op == CmpOp::Eq))
        }
        (Val::Str(_) | Val::Bool(_), Val::Str(_) | Val::Bool(_)) => None,
        // A boolean never meets a number.
        (Val::Bool(_), _) | (_, Val::Bool(_)) => None,
        // What is left is number/number or string/number, and the string converts.
        _ => cmp_num(lhs.number()?, rhs.number()?).map(|ordering| holds(op, ordering)),
    }
}

/// Applies an arithmetic operator to two doubles. Division by zero and NaN results are
/// UNKNOWN.
fn arith_f64(op: ArithOp, x: f64, y: f64) -> Option<Num> {
    let result = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return None,
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    };
    (!result.is_nan()).then_some(Num::Double(result))
}

/// Applies an arithmetic operator. Integer arithmetic is exact; when it overflows the
/// operation is redone in doubles. Division by zero is UNKNOWN.
fn arith(op: ArithOp, a: Num, b: Num) -> Option<Num> {
    let (Num::Long(x), Num::Long(y)) = (a, b) else {
        return arith_f64(op, a.as_f64(), b.as_f64());
    };
    let exact = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div | ArithOp::Rem if y == 0 => return None,
        // Division truncates toward zero, as in Java.
        ArithOp::Div => x.checked_div(y),
        // The remainder takes the dividend's sign; i64::MIN % -1 is 0, not an overflow.
        ArithOp::Rem => Some(x.checked_rem(y).unwrap_or(0)),
    };
    match exact {
        Some(n) => Some(Num::Long(n)),
        None => arith_f64(op, x as f64, y as f64),
    }
}

/// Evaluates `expr` to TRUE, FALSE or UNKNOWN (`None`).
pub(crate) fn evaluate(expr: &Expr, props: &dyn Properties) -> Option<bool> {
    eval(expr, props).truth()
}

/// Evaluates `expr` to a value. Strings in the result borrow from `expr` or `props`.
fn eval<'a>(expr: &'a Expr, props: &'a dyn Properties) -> Val<'a> {
    match expr {
        Expr::Literal(literal) => match literal {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Long(n) => Val::Long(*n),
            Literal::Double(f) => Val::Double(*f),
            Literal::Str(s) => Val::Str(s),
        },
        Expr::Ident(name) => props.property(name).map_or(Val::Null, Val::from),
        Expr::Not(operand) => from_truth(eval(operand, props).truth().map(|b| !b)),
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, props).truth() {
                    Some(false) => return Val::Bool(false),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            if unknown { Val::Null } else { Val::Bool(true) }
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, props).truth() {
                    Some(true) => return Val::Bool(true),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            if unknown { Val::Null } else { Val::Bool(false) }
        }
        Expr::Compare { op, lhs, rhs } => {
            from_truth(compare(*op, eval(lhs, props), eval(rhs, props)))
        }
        Expr::Between {
            negated,
            value,
            low,
            high,
        } => {
            let v = eval(value, props);
            let above = compare(CmpOp::Ge, v, eval(low, props));
            let below = compare(CmpOp::Le, v, eval(high, props));
            // SQL AND of the two bounds: FALSE wins over UNKNOWN.
            let inside = match (above, below) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            from_truth(inside.map(|b| b != *negated))
        }
        Expr::Like {
            negated,
            value,
            pattern,
        } => match eval(value, props) {
            Val::Str(s) => match pattern.matches(s) {
                Some(matched) => Val::Bool(matched != *negated),
                None => Val::Null,
            },
            _ => Val::Null,
        },
        Expr::In {
            negated,
            ident,
            list,
        } => match props.property(ident) {
            Some(Value::Str(s)) => Val::Bool(list.iter().any(|item| item == s) != *negated),
            _ => Val::Null,
        },
        Expr::IsNull { negated, value } => Val::Bool((eval(value, props) == Val::Null) != *negated),
        Expr::Neg(operand) => match eval(operand, props).number() {
            Some(Num::Long(n)) => match n.checked_neg() {
                Some(m) => Val::Long(m),
                None => Val::Double(-(n as f64)),
            },
            Some(Num::Double(f)) => Val::Double(-f),
            None => Val::Null,
        },
        Expr::Pos(operand) => eval(operand, props)
            .number()
            .map_or(Val::Null, Num::into_val),
        Expr::Arith { first, rest } => {
            let Some(mut acc) = eval(first, props).number() else {
                return Val::Null;
            };
            for (op, operand) in rest {
                let Some(rhs) = eval(operand, props).number() else {
                    return Val::Null;
                };
                match arith(*op, acc, rhs) {
                    Some(n) => acc = n,
                    None => return Val::Null,
                }
            }
            acc.into_val()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_conversion() {
        let cases: &[(&str, Option<Num>)] = &[
            ("42", Some(Num::Long(42))),
            ("-7", Some(Num::Long(-7))),
            ("+7", Some(Num::Long(7))),
            ("007", Some(Num::Long(7))),
            ("9223372036854775807", Some(Num::Long(i64::MAX))),
            ("-9223372036854775808", Some(Num::Long(i64::MIN))),
            ("9223372036854775808", Some(Num::Double(TWO_63))),
            ("1.5", Some(Num::Double(1.5))),
            ("-.5", Some(Num::Double(-0.5))),
            ("5.", Some(Num::Double(5.0))),
            ("1e3", Some(Num::Double(1000.0))),
            ("2.5E-1", Some(Num::Double(0.25))),
            ("", None),
            ("-", None),
            (".", None),
            ("+.e1", None),
            ("1e", None),
            ("1e+", None),
            (" 1", None),
            ("1 ", None),
            ("0x10", None),
            ("1L", None),
            ("1.5d", None),
            ("NaN", None),
            ("inf", None),
            ("Infinity", None),
            ("1,5", None),
            ("node1", None),
            ("١", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn bool_conversion() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_bool(" true"), None);
    }

    #[test]
    fn exact_long_double_ordering() {
        use Ordering::*;
        let cases: &[(i64, f64, Option<Ordering>)] = &[
            (1, 1.0, Some(Equal)),
            (1, 1.5, Some(Less)),
            (2, 1.5, Some(Greater)),
            (-1, -1.5, Some(Greater)),
            (-2, -1.5, Some(Less)),
            (0, -0.0, Some(Equal)),
            // 2^53 + 1 is not representable as a double; rounding it would say Equal.
            ((1 << 53) + 1, 9_007_199_254_740_992.0, Some(Greater)),
            (i64::MAX, TWO_63, Some(Less)),
            (i64::MIN, -TWO_63, Some(Equal)),
            (i64::MIN, -1e19, Some(Greater)),
            (0, f64::INFINITY, Some(Less)),
            (0, f64::NEG_INFINITY, Some(Greater)),
            (0, f64::NAN, None),
        ];
        for &(i, f, expected) in cases {
            assert_eq!(cmp_long_double(i, f), expected, "{i} vs {f}");
            assert_eq!(
                cmp_num(Num::Double(f), Num::Long(i)),
                expected.map(Ordering::reverse),
                "{f} vs {i}"
            );
        }
    }

    #[test]
    fn arithmetic_edges() {
        use ArithOp::*;
        assert_eq!(arith(Add, Num::Long(2), Num::Long(3)), Some(Num::Long(5)));
        assert_eq!(arith(Div, Num::Long(7), Num::Long(2)), Some(Num::Long(3)));
        assert_eq!(arith(Div, Num::Long(-7), Num::Long(2)), Some(Num::Long(-3)));
        assert_eq!(arith(Rem, Num::Long(-7), Num::Long(2)), Some(Num::Long(-1)));
        assert_eq!(arith(Div, Num::Long(7), Num::Long(0)), None);
        assert_eq!(arith(Rem, Num::Long(7), Num::Long(0)), None);
        assert_eq!(arith(Div, Num::Double(7.0), Num::Long(0)), None);
        assert_eq!(arith(Div, Num::Long(7), Num::Double(-0.0)), None);
        assert_eq!(
            arith(Div, Num::Long(7), Num::Double(2.0)),
            Some(Num::Double(3.5))
        );
        // Overflow switches to doubles instead of wrapping or panicking.
        assert_eq!(
            arith(Add, Num::Long(i64::MAX), Num::Long(1)),
            Some(Num::Double(TWO_63))
        );
        assert_eq!(
            arith(Mul, Num::Long(i64::MIN), Num::Long(-1)),
            Some(Num::Double(TWO_63))
        );
        assert_eq!(
            arith(Div, Num::Long(i64::MIN), Num::Long(-1)),
            Some(Num::Double(TWO_63))
        );
        assert_eq!(
            arith(Rem, Num::Long(i64::MIN), Num::Long(-1)),
            Some(Num::Long(0))
        );
        // inf - inf is NaN, which is UNKNOWN.
        assert_eq!(
            arith(Sub, Num::Double(f64::INFINITY), Num::Double(f64::INFINITY)),
            None
        );
    }
}
