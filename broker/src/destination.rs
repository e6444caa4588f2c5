//! Destination names and ActiveMQ-style wildcard patterns.
//!
//! A STOMP destination string such as `/queue/mcollective.nodes` names a [`Kind`] and a
//! `.`-separated name. Patterns use `*` for exactly one segment and `>` for all remaining
//! segments (zero or more, so `a.>` also matches `a`, as ActiveMQ's prefix filter does).

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// The four destination kinds a STOMP client can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/queue/…`: each message goes to one consumer.
    Queue,
    /// `/topic/…`: each message goes to every matching subscription.
    Topic,
    /// `/temp-queue/…`: a queue private to the connection that created it.
    TempQueue,
    /// `/temp-topic/…`: a topic private to the connection that created it.
    TempTopic,
}

impl Kind {
    /// Whether messages are consumed once (queues) rather than fanned out (topics).
    pub fn is_queue(self) -> bool {
        matches!(self, Kind::Queue | Kind::TempQueue)
    }

    /// Whether the destination is connection-scoped.
    pub fn is_temporary(self) -> bool {
        matches!(self, Kind::TempQueue | Kind::TempTopic)
    }

    /// The prefix clients use for this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Queue => "/queue/",
            Kind::Topic => "/topic/",
            Kind::TempQueue => "/temp-queue/",
            Kind::TempTopic => "/temp-topic/",
        }
    }

    /// The prefix by which other connections address a temporary destination.
    pub fn remote_prefix(self) -> &'static str {
        match self {
            Kind::TempQueue => "/remote-temp-queue/",
            Kind::TempTopic => "/remote-temp-topic/",
            other => other.prefix(),
        }
    }
}

/// A parsed destination string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    /// Queue, topic or temporary.
    pub kind: Kind,
    /// The name after the prefix.
    pub name: Arc<str>,
    /// For temporary kinds: `true` when addressed with the `/remote-temp-…/` prefix, so the
    /// name is already the broker-wide one rather than the connection-local one.
    pub remote: bool,
}

/// Why a destination string was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DestinationError {
    /// The string was empty or had an empty name after its prefix.
    #[error("destination is empty")]
    Empty,
    /// A comma-separated composite destination; not supported.
    #[error("composite destinations (comma-separated) are not supported: {0}")]
    Composite(String),
    /// A wildcard where only a concrete name is allowed (SEND).
    #[error("cannot send to a wildcard destination: {0}")]
    Wildcard(String),
    /// An empty segment such as `a..b` or a trailing dot.
    #[error("destination has an empty segment: {0}")]
    EmptySegment(String),
}

impl Destination {
    /// Parses a destination as a client wrote it. A string without a known prefix is a
    /// queue, as in ActiveMQ.
    pub fn parse(text: &str) -> Result<Destination, DestinationError> {
        let (kind, remote, name) = if let Some(n) = text.strip_prefix("/queue/") {
            (Kind::Queue, false, n)
        } else if let Some(n) = text.strip_prefix("/topic/") {
            (Kind::Topic, false, n)
        } else if let Some(n) = text.strip_prefix("/temp-queue/") {
            (Kind::TempQueue, false, n)
        } else if let Some(n) = text.strip_prefix("/temp-topic/") {
            (Kind::TempTopic, false, n)
        } else if let Some(n) = text.strip_prefix("/remote-temp-queue/") {
            (Kind::TempQueue, true, n)
        } else if let Some(n) = text.strip_prefix("/remote-temp-topic/") {
            (Kind::TempTopic, true, n)
        } else {
            (Kind::Queue, false, text)
        };
        if name.is_empty() {
            return Err(DestinationError::Empty);
        }
        if name.contains(',') {
            return Err(DestinationError::Composite(text.to_owned()));
        }
        if name.split('.').any(str::is_empty) {
            return Err(DestinationError::EmptySegment(text.to_owned()));
        }
        Ok(Destination {
            kind,
            name: Arc::from(name),
            remote,
        })
    }

    /// A destination of `kind` called `name` (already validated by the caller).
    pub fn new(kind: Kind, name: impl Into<Arc<str>>) -> Destination {
        Destination {
            kind,
            name: name.into(),
            remote: false,
        }
    }

    /// Whether the name contains `*` or `>` segments.
    pub fn is_wildcard(&self) -> bool {
        is_wildcard(&self.name)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.remote {
            self.kind.remote_prefix()
        } else {
            self.kind.prefix()
        };
        write!(f, "{prefix}{}", self.name)
    }
}

/// Whether a `.`-separated name uses wildcard segments.
pub fn is_wildcard(name: &str) -> bool {
    name.split('.').any(|s| s == "*" || s == ">")
}

/// A compiled wildcard pattern over `.`-separated names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    segments: Vec<Segment>,
    text: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// `>`: the rest, zero or more segments; anything after it is ignored.
    Rest,
    /// AMQP's `#` (RabbitMQ topic exchanges): zero or more segments, anywhere in the
    /// pattern. Only [`Pattern::from_words`] makes it; ActiveMQ-style text never does.
    Words,
}

/// One word of a pattern built by [`Pattern::from_words`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Word {
    /// Matches exactly this segment.
    Literal(String),
    /// Matches exactly one segment (AMQP's and ActiveMQ's `*`).
    One,
    /// Matches zero or more segments, anywhere (AMQP's `#`).
    Any,
}

impl Pattern {
    /// Compiles `text`. Any string is a valid pattern; a name without wildcards matches
    /// only itself.
    pub fn new(text: &str) -> Pattern {
        let mut segments = Vec::new();
        for s in text.split('.') {
            match s {
                "*" => segments.push(Segment::One),
                ">" => {
                    segments.push(Segment::Rest);
                    break;
                }
                lit => segments.push(Segment::Literal(lit.into())),
            }
        }
        Pattern {
            segments,
            text: Arc::from(text),
        }
    }

    /// A pattern from words already split and classified (RabbitMQ conventions, see
    /// `crate::vhost`); `text` is how it is shown.
    pub fn from_words(words: impl IntoIterator<Item = Word>, text: &str) -> Pattern {
        let segments = words
            .into_iter()
            .map(|w| match w {
                Word::Literal(l) => Segment::Literal(l.into()),
                Word::One => Segment::One,
                Word::Any => Segment::Words,
            })
            .collect();
        Pattern {
            segments,
            text: Arc::from(text),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard segments.
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        if self.segments.contains(&Segment::Words) {
            return self.matches_words(name);
        }
        let mut parts = name.split('.');
        for seg in &self.segments {
            match seg {
                // `Words` never gets here (see above).
                Segment::Rest | Segment::Words => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => match parts.next() {
                    Some(p) if p == &**lit => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }
}

impl Pattern {
    /// Matching with AMQP's `#` anywhere: which pattern prefixes can match which name
    /// prefixes, one row per name segment (time and memory linear in pattern × name).
    fn matches_words(&self, name: &str) -> bool {
        let n = self.segments.len();
        // `row[j]`: the first `j` pattern segments match the segments read so far.
        let mut row = vec![false; n + 1];
        row[0] = true;
        close_over_words(&self.segments, &mut row);
        for part in name.split('.') {
            let mut next = vec![false; n + 1];
            for (j, seg) in self.segments.iter().enumerate() {
                if !row[j] {
                    continue;
                }
                match seg {
                    Segment::Literal(lit) if &**lit == part => next[j + 1] = true,
                    Segment::Literal(_) => {}
                    Segment::One => next[j + 1] = true,
                    // `#` (and `>`, always last) takes this segment and may take more.
                    Segment::Words | Segment::Rest => next[j] = true,
                }
            }
            close_over_words(&self.segments, &mut next);
            row = next;
        }
        row[n]
    }
}

/// A `#` may match nothing: wherever `row[j]` holds before a `#`, `row[j + 1]` does too.
fn close_over_words(segments: &[Segment], row: &mut [bool]) {
    for (j, seg) in segments.iter().enumerate() {
        if row[j] && matches!(seg, Segment::Words | Segment::Rest) {
            row[j + 1] = true;
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_and_falls_back_to_queue() {
        let d = Destination::parse("/queue/mcollective.nodes").unwrap();
        assert_eq!((d.kind, &*d.name), (Kind::Queue, "mcollective.nodes"));
        let d = Destination::parse("/topic/a.b").unwrap();
        assert_eq!(d.kind, Kind::Topic);
        let d = Destination::parse("plain").unwrap();
        assert_eq!((d.kind, &*d.name), (Kind::Queue, "plain"));
        let d = Destination::parse("/remote-temp-queue/x").unwrap();
        assert!(d.remote && d.kind == Kind::TempQueue);
        assert_eq!(d.to_string(), "/remote-temp-queue/x");
        assert_eq!(Destination::parse("/queue/"), Err(DestinationError::Empty));
        assert!(matches!(
            Destination::parse("/queue/a,b"),
            Err(DestinationError::Composite(_))
        ));
        assert!(matches!(
            Destination::parse("/queue/a..b"),
            Err(DestinationError::EmptySegment(_))
        ));
    }

    #[test]
    fn wildcards_match_like_activemq() {
        let p = Pattern::new("mcollective.*.agent");
        assert!(p.matches("mcollective.discovery.agent"));
        assert!(!p.matches("mcollective.agent"));
        assert!(!p.matches("mcollective.a.b.agent"));
        let p = Pattern::new("mcollective.>");
        assert!(p.matches("mcollective"));
        assert!(p.matches("mcollective.reply.x_1.2"));
        assert!(!p.matches("other.reply"));
        let p = Pattern::new(">");
        assert!(p.matches("anything.at.all"));
        let p = Pattern::new("a.b");
        assert!(p.is_literal() && p.matches("a.b") && !p.matches("a.b.c") && !p.matches("a"));
        let p = Pattern::new("*.reply.>");
        assert!(p.matches("mc.reply.a") && !p.matches("mc.nodes"));
    }
}
