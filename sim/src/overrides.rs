//! `--set KEY=VALUE`: changing a scenario from the command line.
//!
//! An override edits the scenario's TOML *document* before it is deserialized and
//! validated, so every key a scenario file can hold can be set, including keys the file
//! leaves at their default and entries of arrays of tables, and the scenario's own
//! checks judge the result.
//!
//! # Key syntax
//!
//! A key is a dotted path through the document, as the file would write it:
//!
//! - `duration_s`, `network.latency_ms`, `workload.mcollective.discovery_interval_s`:
//!   tables by name; missing tables and keys are created (and then refused by the
//!   scenario's strict model when they do not exist there);
//! - `brokers.0.profile`, `racks.1.nodes`: a number selects one entry (0-based) of an
//!   array (`[[brokers]]`, `[[racks]]`, an inline array); it must exist;
//! - `racks.nodes` or `racks.*.nodes`: a name (or `*`) after an array applies to *every*
//!   entry, so `racks.nodes=400` gives every rack 400 nodes;
//! - a key holding a dot or other characters is written in double quotes:
//!   `brokers.0.core."some.key"`.
//!
//! The value is read as a TOML value (`400`, `2.5`, `true`, `"stomp-gem"`,
//! `["broker-1", "broker-2"]`, `{ name = "mco", servers = ["broker-1"] }`); text that is
//! not one is taken as a string, so `racks.policy=jittered` needs no quotes.
//!
//! Errors name the `--set` argument and the key: an index past the end of an array, a
//! path through a value, a key the scenario model does not have, a value it refuses.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::scenario::Scenario;

/// The file written next to a report by `stampede run --set …`: the overrides, one
/// `KEY=VALUE` per line, so that a report directory says which grid point it is.
pub const OVERRIDES_FILE: &str = "overrides.txt";

/// Why an override could not be read or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    /// Not `KEY=VALUE`, or a malformed key.
    #[error("--set {arg}: {message}")]
    Syntax {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// The key does not fit the document (index out of range, path through a value).
    #[error("--set {arg}: {key}: {message}")]
    Path {
        /// The argument as given.
        arg: String,
        /// The key, up to the step that failed.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The scenario file itself (with its line), unreadable or invalid without overrides.
    #[error("{0}")]
    File(String),
    /// The scenario refused the overridden document.
    #[error("{sets}: {error}")]
    Invalid {
        /// The overrides, as `--set A=1 --set B=2`.
        sets: String,
        /// The scenario's error (key and message).
        error: String,
    },
}

/// One step of a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A table key.
    Key(String),
    /// One array entry (0-based).
    Index(usize),
    /// Every array entry (`*`).
    All,
}

/// A dotted key: `racks.0.nodes`, `racks.nodes`, `brokers.0.core."a.b"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The key as written.
    pub text: String,
    /// Its steps.
    pub steps: Vec<Step>,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Key {
    type Err = String;

    fn from_str(s: &str) -> Result<Key, String> {
        let text = s.trim();
        let mut steps = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(format!("unterminated quote in key `{text}`")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*') {
                        return Err(format!(
                            "bad character `{c}` in key `{text}` (quote keys that hold it)"
                        ));
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() && !quoted {
                return Err(format!("empty part in key `{text}`"));
            }
            steps.push(if quoted {
                Step::Key(part)
            } else if part == "*" {
                Step::All
            } else if let Ok(i) = part.parse::<usize>() {
                Step::Index(i)
            } else {
                Step::Key(part)
            });
            match chars.next() {
                None => break,
                Some('.') => {}
                Some(c) => return Err(format!("expected `.` after a quoted part, got `{c}`")),
            }
        }
        if matches!(steps.first(), Some(Step::Index(_) | Step::All)) {
            return Err(format!("key `{text}` must start with a table key"));
        }
        Ok(Key {
            text: text.to_owned(),
            steps,
        })
    }
}

/// Reads a value as TOML (`400`, `"a"`, `[1, 2]`, `{ a = 1 }`, `true`), or as a string
/// when it is not one.
pub fn parse_value(s: &str) -> toml::Value {
    let s = s.trim();
    match format!("v = {s}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(s.to_owned())),
        Err(_) => toml::Value::String(s.to_owned()),
    }
}

/// Writes a value back as `--set` reads it (strings without quotes when they read back
/// as the same string).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if parse_value(s) == *v => s.clone(),
        toml::Value::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        other => other.to_string(),
    }
}

/// One `--set KEY=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: toml::Value,
}

impl Override {
    /// An override of `key` with `value`.
    pub fn new(key: Key, value: toml::Value) -> Override {
        Override { key, value }
    }

    /// `KEY=VALUE` as `--set` reads it back.
    pub fn arg(&self) -> String {
        format!("{}={}", self.key, value_text(&self.value))
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arg())
    }
}

impl FromStr for Override {
    type Err = OverrideError;

    fn from_str(s: &str) -> Result<Override, OverrideError> {
        let syntax = |message: String| OverrideError::Syntax {
            arg: s.to_owned(),
            message,
        };
        let (key, value) = split_key_value(s).ok_or_else(|| syntax("expected KEY=VALUE".into()))?;
        let key: Key = key.parse().map_err(syntax)?;
        Ok(Override {
            key,
            value: parse_value(value),
        })
    }
}

/// Splits `KEY=VALUE` at the first `=` outside double quotes.
pub fn split_key_value(s: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '=' if !quoted => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Applies `o` to the document `doc`.
pub fn apply(doc: &mut toml::Table, o: &Override) -> Result<(), OverrideError> {
    let mut root = toml::Value::Table(std::mem::take(doc));
    let result = set(&mut root, &o.key.steps, &o.value, 0, o);
    if let toml::Value::Table(t) = root {
        *doc = t;
    }
    result
}

/// The key up to and including step `upto`, for errors.
fn prefix(o: &Override, upto: usize) -> String {
    let mut s = String::new();
    for (i, step) in o.key.steps.iter().take(upto + 1).enumerate() {
        if i > 0 {
            s.push('.');
        }
        match step {
            Step::Key(k) => s.push_str(k),
            Step::Index(n) => s.push_str(&n.to_string()),
            Step::All => s.push('*'),
        }
    }
    s
}

fn set(
    at: &mut toml::Value,
    steps: &[Step],
    value: &toml::Value,
    depth: usize,
    o: &Override,
) -> Result<(), OverrideError> {
    let err = |upto: usize, message: String| OverrideError::Path {
        arg: o.arg(),
        key: prefix(o, upto),
        message,
    };
    let Some((step, rest)) = steps.split_first() else {
        *at = value.clone();
        return Ok(());
    };
    match (at, step) {
        (toml::Value::Table(t), Step::Key(k)) => {
            if rest.is_empty() {
                t.insert(k.clone(), value.clone());
                return Ok(());
            }
            if !t.contains_key(k) {
                if matches!(rest[0], Step::Index(_) | Step::All) {
                    return Err(err(
                        depth,
                        "not in the scenario, so it has no entries".into(),
                    ));
                }
                t.insert(k.clone(), toml::Value::Table(toml::Table::new()));
            }
            let child = t.get_mut(k).ok_or_else(|| err(depth, "missing".into()))?;
            set(child, rest, value, depth + 1, o)
        }
        (toml::Value::Table(_), Step::Index(_) | Step::All) => Err(err(
            depth.saturating_sub(1),
            "is a table, not an array: name one of its keys".into(),
        )),
        (toml::Value::Array(a), Step::Index(i)) => {
            let n = a.len();
            let child = a.get_mut(*i).ok_or_else(|| {
                err(
                    depth,
                    format!("no such entry: the array has {n} (numbered from 0)"),
                )
            })?;
            set(child, rest, value, depth + 1, o)
        }
        (toml::Value::Array(a), Step::All | Step::Key(_)) => {
            if a.is_empty() {
                return Err(err(depth.saturating_sub(1), "the array is empty".into()));
            }
            // `*` consumes its step; a key applies to each entry as the next step.
            let (each, d) = match step {
                Step::All => (rest, depth + 1),
                _ => (steps, depth),
            };
            for entry in a.iter_mut() {
                set(entry, each, value, d, o)?;
            }
            Ok(())
        }
        (_, _) => Err(err(
            depth.saturating_sub(1),
            "is a value, not a table or array".into(),
        )),
    }
}

/// Reads the scenario at `path` with `overrides` applied (in order) and validates it.
/// Without overrides this is [`Scenario::load`].
pub fn load(path: &Path, overrides: &[Override]) -> Result<Scenario, OverrideError> {
    let file_err = |e: &dyn fmt::Display| OverrideError::File(e.to_string());
    if overrides.is_empty() {
        return Scenario::load(path).map_err(|e| file_err(&e));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| OverrideError::File(format!("{}: {e}", path.display())))?;
    let file = path.display().to_string();
    let mut doc: toml::Table = match text.parse() {
        Ok(d) => d,
        // A syntax error: the scenario's own reader says where.
        Err(_) => {
            return Err(Scenario::parse(&text, &file).map_or_else(
                |e| file_err(&e),
                |_| OverrideError::File(format!("{file}: not a TOML table")),
            ));
        }
    };
    for o in overrides {
        apply(&mut doc, o)?;
    }
    let edited = toml::to_string(&doc).map_err(|e| OverrideError::File(format!("{file}: {e}")))?;
    let sets = overrides
        .iter()
        .map(|o| format!("--set {o}"))
        .collect::<Vec<_>>()
        .join(" ");
    Scenario::parse(&edited, &file).map_err(|e| {
        // The same problem without the overrides is the file's own: report it with its
        // line. Otherwise the overrides made it, and lines of the edited text mean nothing.
        match Scenario::parse(&text, &file) {
            Err(orig) if orig.key == e.key && orig.message == e.message => file_err(&orig),
            _ => OverrideError::Invalid {
                sets,
                error: if e.key.is_empty() {
                    e.message
                } else {
                    format!("{}: {}", e.key, e.message)
                },
            },
        }
    })
}

/// The overrides as the lines of [`OVERRIDES_FILE`].
pub fn overrides_file(overrides: &[Override]) -> String {
    overrides.iter().map(|o| format!("{o}\n")).collect()
}

/// Reads [`OVERRIDES_FILE`] back.
pub fn read_overrides_file(text: &str) -> Result<Vec<Override>, OverrideError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::parse)
        .collect()
}
