//! The grid: `--vary KEY=RANGE` values and the points they span.

use std::fmt::Write as _;

use crate::overrides::{Key, Override, parse_value, split_key_value, value_text};

use super::SweepError;

/// Most values one `--vary` may have (a typo like `1..1000000` is refused, not run).
pub const VALUES_MAX: usize = 10_000;

/// One `--vary KEY=RANGE`: a scenario key and the values it takes, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Vary {
    /// The key (see [`crate::overrides`] for the syntax).
    pub key: Key,
    /// The values.
    pub values: Vec<toml::Value>,
}

impl Vary {
    /// Whether every value is a number (the load key must be one).
    pub fn numeric(&self) -> bool {
        self.values.iter().all(|v| number(v).is_some())
    }

    /// Whether every value is an integer (bisection then stops at neighbouring integers).
    pub fn integer(&self) -> bool {
        self.values
            .iter()
            .all(|v| matches!(v, toml::Value::Integer(_)))
    }
}

/// A value as a number, when it is one.
pub fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl std::str::FromStr for Vary {
    type Err = SweepError;

    /// `KEY=A..B:STEP` (both ends included; `:STEP` defaults to 1), `KEY=A..B` or
    /// `KEY=V1,V2,…` (numbers, or any TOML value, or bare words).
    fn from_str(s: &str) -> Result<Vary, SweepError> {
        let bad = |key: &str, message: String| SweepError::Vary {
            arg: s.to_owned(),
            key: key.to_owned(),
            message,
        };
        let (key_text, range) =
            split_key_value(s).ok_or_else(|| bad("", "expected KEY=RANGE".into()))?;
        let key: Key = key_text.parse().map_err(|m| bad(key_text, m))?;
        let range = range.trim();
        if range.is_empty() {
            return Err(bad(key_text, "empty range".into()));
        }
        let values = if let Some((a, rest)) = range.split_once("..") {
            let (b, step) = match rest.split_once(':') {
                Some((b, step)) => (b, Some(step)),
                None => (rest, None),
            };
            range_values(a.trim(), b.trim(), step.map(str::trim))
                .map_err(|m| bad(key_text, format!("`{range}`: {m}")))?
        } else {
            let items: Vec<&str> = split_list(range);
            if items.iter().any(|i| i.trim().is_empty()) {
                return Err(bad(
                    key_text,
                    format!("`{range}`: an empty item in the list"),
                ));
            }
            let mut values: Vec<toml::Value> = Vec::new();
            for i in items {
                let v = parse_value(i);
                if values.contains(&v) {
                    return Err(bad(
                        key_text,
                        format!("`{range}`: {} given twice", i.trim()),
                    ));
                }
                values.push(v);
            }
            values
        };
        if values.is_empty() {
            return Err(bad(key_text, format!("`{range}` is empty")));
        }
        Ok(Vary { key, values })
    }
}

/// Splits a list at commas outside brackets, braces and quotes.
fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The values of `A..B[:STEP]`, both ends included; integers when all three are.
fn range_values(a: &str, b: &str, step: Option<&str>) -> Result<Vec<toml::Value>, String> {
    let ints = (
        a.parse::<i64>(),
        b.parse::<i64>(),
        step.map_or(Ok(1), str::parse::<i64>),
    );
    if let (Ok(a), Ok(b), Ok(step)) = ints {
        if step <= 0 {
            return Err("the step must be greater than 0".into());
        }
        if a > b {
            return Err(format!("empty: {a} is greater than {b}"));
        }
        let n = (b - a) / step + 1;
        if n as u128 > VALUES_MAX as u128 {
            return Err(format!("{n} values, more than {VALUES_MAX}"));
        }
        return Ok((0..n).map(|i| toml::Value::Integer(a + i * step)).collect());
    }
    let num = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{s}` is not a number"))
    };
    let (a, b) = (num(a)?, num(b)?);
    let step = match step {
        Some(s) => num(s)?,
        None => 1.0,
    };
    if step <= 0.0 {
        return Err("the step must be greater than 0".into());
    }
    if a > b {
        return Err(format!("empty: {a} is greater than {b}"));
    }
    let n = ((b - a) / step + 1e-9).floor() as usize + 1;
    if n > VALUES_MAX {
        return Err(format!("{n} values, more than {VALUES_MAX}"));
    }
    // Computed from the index, not by adding steps, so that no rounding accumulates.
    Ok((0..n)
        .map(|i| toml::Value::Float(round_decimals(a + i as f64 * step)))
        .collect())
}

/// Rounds away binary noise (`0.30000000000000004` → `0.3`).
pub fn round_decimals(v: f64) -> f64 {
    let r = (v * 1e9).round() / 1e9;
    if r.is_finite() { r } else { v }
}

/// One grid point: a value per `--vary`, in the order the keys were given.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The values.
    pub values: Vec<toml::Value>,
}

impl Point {
    /// The point's overrides (after any fixed `--set`s of the sweep).
    pub fn overrides(&self, varies: &[Vary]) -> Vec<Override> {
        varies
            .iter()
            .zip(&self.values)
            .map(|(v, value)| Override::new(v.key.clone(), value.clone()))
            .collect()
    }

    /// The value of the first (load) key as a number.
    pub fn x(&self) -> f64 {
        self.values.first().and_then(number).unwrap_or(f64::NAN)
    }

    /// The values of the other keys: the point's series.
    pub fn others(&self) -> &[toml::Value] {
        self.values.get(1..).unwrap_or(&[])
    }

    /// The directory name of the point: `KEY=VALUE` joined by `,`, with characters
    /// other than letters, digits and `._=,+-` replaced by `_`.
    pub fn dir_name(&self, varies: &[Vary]) -> String {
        let mut s = String::new();
        for (i, (v, value)) in varies.iter().zip(&self.values).enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}={}", v.key, value_text(value));
        }
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// A series' label: the other keys' values (`brokers=2, racks.policy=jittered`), or
/// `all` when only one key varies.
pub fn series_label(varies: &[Vary], others: &[toml::Value]) -> String {
    if others.is_empty() {
        return "all".to_owned();
    }
    varies
        .iter()
        .skip(1)
        .zip(others)
        .map(|(v, value)| format!("{}={}", v.key, value_text(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every point of the grid: the first key varies fastest, so the points of one series
/// are together, in the order given.
pub fn points(varies: &[Vary]) -> Vec<Point> {
    let mut out = vec![Point { values: Vec::new() }];
    for v in varies.iter().rev() {
        let mut next = Vec::with_capacity(out.len() * v.values.len());
        for p in &out {
            for value in &v.values {
                let mut values = vec![value.clone()];
                values.extend(p.values.iter().cloned());
                next.push(Point { values });
            }
        }
        out = next;
    }
    // Ordered by the other keys (as given), then by the first key.
    out.sort_by(|a, b| {
        let key = |p: &Point| -> Vec<usize> {
            let mut idx: Vec<usize> = varies
                .iter()
                .zip(&p.values)
                .map(|(v, x)| v.values.iter().position(|y| y == x).unwrap_or(0))
                .collect();
            idx.rotate_left(1);
            idx
        };
        key(a).cmp(&key(b))
    });
    out
}
