//! JMS message selectors as ActiveMQ evaluates them (SQL-92 subset over message headers).
//!
//! Placeholder: the parser and evaluator are being written.

// The parser, the only user of the lexer, comes in the next commit.
#[allow(dead_code)]
mod lexer;

use thiserror::Error;

/// A property value as a selector sees it.
#[derive(Clone, Debug, PartialEq)]
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

/// Why a selector string was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid selector at byte {offset}: {message}")]
pub struct SelectorError {
    /// Byte offset into the selector text.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

/// A compiled selector.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
}

impl Selector {
    /// Parses selector text.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Ok(Selector {
            text: text.to_owned(),
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message with these properties is selected.
    pub fn matches(&self, _props: &dyn Properties) -> bool {
        unimplemented!("selector evaluation")
    }

    /// For a selector of the exact form `ident = 'literal'` (either side), the pair, so
    /// that consumers can be indexed by it.
    pub fn equality(&self) -> Option<(&str, &str)> {
        None
    }
}
