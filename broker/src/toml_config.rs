//! The project's TOML toolkit: errors that name file, line and key.
//!
//! Loading a TOML file happens in three steps, each of which reports the file, the 1-based
//! line and the dotted key path (`core.limits.frame_bytes_max`, `security.users[1].groups`,
//! with 0-based array indices) of the first problem:
//!
//! 1. TOML syntax, with the position the TOML parser reports.
//! 2. Deserialization (unknown keys, wrong types, out-of-range numbers), with the key path
//!    tracked by `serde_path_to_error` and the position of the offending value.
//! 3. Semantic validation (a `validate` function given to [`parse_toml`]), whose errors
//!    carry a [`KeyPath`] that is looked up in a spanned parse of the document to find its
//!    line.
//!
//! This module is a leaf: it imports nothing else from the crate, so every part of the
//! crate (and the simulator's scenario files) can validate its own section with it.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use thiserror::Error;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A configuration error, located in its file.
///
/// Displayed as `file:line: key: message`; the key is left out when the problem is not
/// tied to one (some syntax errors), and the line when the file could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that was read.
    pub file: String,
    /// 1-based line of the offending key (0 when the file could not be read).
    pub line: usize,
    /// Dotted path of the offending key (empty when unknown).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySegment {
    /// A key of a table.
    Key(String),
    /// A 0-based index into an array (or array of tables).
    Index(usize),
}

/// The path of a key in the configuration document, displayed dotted:
/// `security.users[1].groups`. Keys that are not bare TOML keys are shown quoted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath {
    segments: Vec<KeySegment>,
}

impl KeyPath {
    /// The document itself.
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// This path extended by the table key `key`.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.segments.push(KeySegment::Key(key.to_owned()));
        path
    }

    /// This path extended by the array index `index`.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.segments.push(KeySegment::Index(index));
        path
    }

    /// `self` placed under the table `key` (used to place the errors of a sub-table).
    pub fn within(mut self, key: &str) -> KeyPath {
        self.segments.insert(0, KeySegment::Key(key.to_owned()));
        self
    }

    /// `rest` appended to this path (used to place the errors of an array element).
    pub fn join(&self, rest: &KeyPath) -> KeyPath {
        let mut path = self.clone();
        path.segments.extend(rest.segments.iter().cloned());
        path
    }

    /// The steps from the document root.
    pub fn segments(&self) -> &[KeySegment] {
        &self.segments
    }

    /// Converts the path `serde_path_to_error` tracked during deserialization.
    fn from_serde(path: &serde_path_to_error::Path) -> KeyPath {
        use serde_path_to_error::Segment;
        let segments = path
            .iter()
            .filter_map(|segment| match segment {
                Segment::Seq { index } => Some(KeySegment::Index(*index)),
                Segment::Map { key } => Some(KeySegment::Key(key.clone())),
                Segment::Enum { variant } => Some(KeySegment::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect();
        KeyPath { segments }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                KeySegment::Index(index) => write!(f, "[{index}]")?,
                KeySegment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A setting that deserialized but makes no sense, with the path of its key.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct InvalidSetting {
    /// Where the setting is.
    pub path: KeyPath,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidSetting {
    /// An error about the key at `path`.
    pub fn new(path: KeyPath, message: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            path,
            message: message.into(),
        }
    }

    /// The same error with its path placed under the table `key`.
    pub fn within(self, key: &str) -> InvalidSetting {
        InvalidSetting {
            path: self.path.within(key),
            message: self.message,
        }
    }
}

/// Reads the TOML file at `path` into `T` and validates it, with [`parse_toml`]'s errors;
/// a file that cannot be read is reported with line 0.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), InvalidSetting>,
) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        key: String::new(),
        message: e.to_string(),
    })?;
    parse_toml(&text, &file, validate)
}

/// Parses TOML text into `T` and validates it, locating every error (syntax, unknown
/// key, wrong type, or a [`InvalidSetting`] from `validate`) by file, line and key path.
/// Other TOML files of the project (simulator scenarios) use it too.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    validate: impl FnOnce(&T) -> Result<(), InvalidSetting>,
) -> Result<T, ConfigError> {
    let error = |line: usize, key: &KeyPath, message: String| ConfigError {
        file: file.to_owned(),
        line,
        key: key.to_string(),
        message,
    };
    let document = DeTable::parse(text).map_err(|e| {
        let (line, key, message) = syntax_error(text, &e);
        error(line, &key, message)
    })?;
    let value: T =
        serde_path_to_error::deserialize(toml::Deserializer::from(document)).map_err(|e| {
            let key = KeyPath::from_serde(e.path());
            let inner = e.into_inner();
            let line = match inner.span() {
                Some(span) => line_of(text, span.start),
                None => locate(text, &key),
            };
            error(line, &key, inner.message().to_owned())
        })?;
    validate(&value)
        .map_err(|invalid| error(locate(text, &invalid.path), &invalid.path, invalid.message))?;
    Ok(value)
}

/// Refuses zero for the key `key` of the table being validated, with the message every
/// size, count and duration limit uses.
pub fn positive<T: Default + PartialEq>(value: T, key: &str) -> Result<(), InvalidSetting> {
    if value == T::default() {
        Err(InvalidSetting::new(
            KeyPath::root().key(key),
            "must be greater than zero",
        ))
    } else {
        Ok(())
    }
}

/// The 1-based line that byte `offset` of `text` is on.
fn line_of(text: &str, offset: usize) -> usize {
    // Clamped to the text's length, so the slice below cannot panic.
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the key at `path`, or of its nearest ancestor that is in the document
/// (line 1 when none is, e.g. for a problem with a default value).
fn locate(text: &str, path: &KeyPath) -> usize {
    let Ok(document) = DeTable::parse(text) else {
        return 1;
    };
    let mut span: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for segment in path.segments() {
        let found = match segment {
            KeySegment::Key(key) => table
                .and_then(|t| t.get_key_value(key.as_str()))
                .map(|(k, v)| (k.span(), v)),
            KeySegment::Index(index) => array.and_then(|a| a.get(*index)).map(|v| (v.span(), v)),
        };
        let Some((at, value)) = found else {
            break;
        };
        span = Some(at);
        table = value.get_ref().as_table();
        array = value.get_ref().as_array().map(|a| &a[..]);
    }
    span.map_or(1, |s| line_of(text, s.start))
}

/// Line, best-effort key and message of a TOML syntax error.
fn syntax_error(text: &str, error: &toml::de::Error) -> (usize, KeyPath, String) {
    let mut message = error.message().to_owned();
    let Some(span) = error.span() else {
        return (1, KeyPath::root(), message);
    };
    if message == "duplicate key" {
        if let Some(key) = text.get(span.clone()).filter(|k| !k.is_empty()) {
            message = format!("duplicate key `{key}`");
        }
    }
    let line = line_of(text, span.start);
    (line, syntax_error_key(text, span.start, line), message)
}

/// How well an entry of a partially parsed document explains an error position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    /// A table whose header (or key) comes before the error.
    Enclosing,
    /// A key on the error's line.
    SameLine,
    /// A key or value whose text ends at the error position (a value cut short).
    EndingAt,
    /// A key or value whose text contains the error position.
    Containing,
}

/// The key a syntax error at `offset` (on `line`) most likely belongs to, found in the
/// parser's best-effort recovery of the document.
fn syntax_error_key(text: &str, offset: usize, line: usize) -> KeyPath {
    let (document, _) = DeTable::parse_recoverable(text);
    let mut best: Option<((Fit, usize, usize), KeyPath)> = None;
    let mut consider = |rank: (Fit, usize, usize), path: &KeyPath| {
        if best.as_ref().is_none_or(|(r, _)| rank >= *r) {
            best = Some((rank, path.clone()));
        }
    };
    let mut visit = |path: &KeyPath, key: Option<Range<usize>>, value: &Spanned<DeValue<'_>>| {
        let depth = path.segments().len();
        let contains = |s: &Range<usize>| s.start <= offset && offset < s.end;
        let ends_at = |s: &Range<usize>| s.end == offset;
        let span = value.span();
        if key.as_ref().is_some_and(contains) || contains(&span) {
            consider((Fit::Containing, depth, span.start), path);
        } else if key.as_ref().is_some_and(ends_at) || ends_at(&span) {
            // The outermost value cut short is the one left unclosed.
            consider((Fit::EndingAt, usize::MAX - depth, span.start), path);
        } else if key.as_ref().is_some_and(|k| line_of(text, k.start) == line) {
            consider((Fit::SameLine, depth, span.start), path);
        } else if value.get_ref().is_table() && span.start <= offset {
            // The latest header wins; its span ends after those of its implicit parents.
            consider((Fit::Enclosing, span.end, depth), path);
        }
    };
    walk(document.get_ref(), &KeyPath::root(), &mut visit);
    best.map(|(_, path)| path).unwrap_or_default()
}

/// Calls `visit` with the path, key span and value of every entry below `table`.
fn walk(
    table: &DeTable<'_>,
    at: &KeyPath,
    visit: &mut impl FnMut(&KeyPath, Option<Range<usize>>, &Spanned<DeValue<'_>>),
) {
    for (key, value) in table.iter() {
        let path = at.key(key.get_ref());
        visit(&path, Some(key.span()), value);
        walk_value(value, &path, visit);
    }
}

/// [`walk`] for a value: descends into tables and arrays.
fn walk_value(
    value: &Spanned<DeValue<'_>>,
    at: &KeyPath,
    visit: &mut impl FnMut(&KeyPath, Option<Range<usize>>, &Spanned<DeValue<'_>>),
) {
    match value.get_ref() {
        DeValue::Table(table) => walk(table, at, visit),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let path = at.index(i);
                visit(&path, None, element);
                walk_value(element, &path, visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_display_dotted_and_quoted() {
        let path = KeyPath::root()
            .key("security")
            .key("users")
            .index(1)
            .key("groups");
        assert_eq!(path.to_string(), "security.users[1].groups");
        assert_eq!(KeyPath::root().key("a b").key("c").to_string(), "\"a b\".c");
        assert_eq!(
            KeyPath::root().key("x").within("core").to_string(),
            "core.x"
        );
        let element = KeyPath::root().key("connectors").index(2);
        assert_eq!(
            element.join(&KeyPath::root().key("uri")).to_string(),
            "connectors[2].uri"
        );
    }

    #[test]
    fn locate_falls_back_to_the_nearest_ancestor() {
        let text = "[core]\nbroker_name = 'b'\n";
        assert_eq!(locate(text, &KeyPath::root().key("core").key("limits")), 1);
        assert_eq!(
            locate(text, &KeyPath::root().key("core").key("broker_name")),
            2
        );
        assert_eq!(locate(text, &KeyPath::root().key("server")), 1);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb\r\nc", 5), 3);
        assert_eq!(line_of("a\n", 100), 2);
    }
}
