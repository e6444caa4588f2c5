//! Virtual hosts: isolated namespaces that a client chooses with CONNECT's `host` header,
//! each with its naming convention, ActiveMQ's or RabbitMQ's (rabbitmq_stomp 3.x).
//!
//! Without `[[core.vhosts]]` nothing here is used and names mean what ActiveMQ makes of
//! them. With vhosts, every destination a client names is translated into an internal,
//! ActiveMQ-style name whose first segment is the vhost's (so the same name in two vhosts
//! is two destinations, and wildcards never reach across vhosts), and the core routes the
//! internal names as it always does:
//!
//! | convention | client writes | internal name |
//! |---|---|---|
//! | activemq | `/queue/a.b`, `/topic/a.*`, `a.b` | `/queue/<vh>.a.b`, `/topic/<vh>.a.*`, `/queue/<vh>.a.b` |
//! | rabbitmq | `/exchange/X/k1.k2` (SEND) | `/topic/<vh>.<X>.k1.k2` |
//! | rabbitmq | `/exchange/X/pattern` (SUBSCRIBE) | a subscription to `/topic/<vh>.<X>.…` with the exchange's matching (topic `*`/`#`, direct exact, fanout all) |
//! | rabbitmq | `/topic/key` | as `/exchange/amq.topic/key` |
//! | rabbitmq | `/queue/N`, `/amq/queue/N` | `/queue/<vh>.<N>` (`/amq/queue/` only when it was declared) |
//! | rabbitmq | `/reply-queue/T` | `/remote-temp-queue/T` |
//! | both | `/temp-queue/x`, `/temp-topic/x`, `/remote-temp-…` | unchanged (they belong to a connection) |
//!
//! Names are escaped word by word (`%`, `.`, `*`, `>`, `,` as `%XX`; an empty word as
//! `%`), so any RabbitMQ name or routing key is one valid internal name, and RabbitMQ
//! queue and exchange names (which may hold dots) stay one segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::destination::{Pattern, Word};
use crate::toml_config::{InvalidSetting, KeyPath};

/// How a vhost names destinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// ActiveMQ's: `/queue/`, `/topic/` with `*` and `>` wildcards, temporary destinations.
    #[default]
    ActiveMq,
    /// RabbitMQ's STOMP plugin: `/exchange/`, `/queue/`, `/amq/queue/`, `/topic/`,
    /// `/temp-queue/` with `/reply-queue/`.
    RabbitMq,
}

/// The exchange types RabbitMQ's STOMP clients route through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Routing key matched against binding patterns of `.`-separated words, `*` one
    /// word, `#` zero or more.
    Topic,
    /// Routing key equal to the binding key.
    Direct,
    /// Every binding, whatever the key.
    Fanout,
}

/// `[[core.vhosts.exchanges]]`: an exchange declared in a RabbitMQ-convention vhost.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The exchange's name, as `/exchange/<name>/…` spells it.
    pub name: String,
    /// `topic`, `direct` or `fanout`.
    #[serde(rename = "type")]
    pub kind: ExchangeType,
}

/// `[[core.vhosts]]`: one virtual host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VhostConfig {
    /// What CONNECT's `host` header says to choose it (RabbitMQ's `/`, `/mcollective`).
    pub name: String,
    /// `activemq` (the default) or `rabbitmq`.
    pub convention: Convention,
    /// Exchanges (RabbitMQ convention only). `amq.topic`, `amq.direct` and `amq.fanout`
    /// exist in every RabbitMQ-convention vhost without being declared.
    pub exchanges: Vec<ExchangeConfig>,
    /// Queues that exist from the start (RabbitMQ convention only), so that
    /// `/amq/queue/<name>` finds them before anyone used `/queue/<name>`.
    pub queues: Vec<String>,
}

/// The exchanges RabbitMQ declares in every vhost.
const BUILTIN_EXCHANGES: &[(&str, ExchangeType)] = &[
    ("amq.topic", ExchangeType::Topic),
    ("amq.direct", ExchangeType::Direct),
    ("amq.fanout", ExchangeType::Fanout),
];

/// Checks `[[core.vhosts]]` and `default_vhost`: names present and unique, exchanges only
/// where the convention has them, no redeclared `amq.` exchange, a default that exists.
/// Paths in errors are relative to `[core]`.
pub fn validate(vhosts: &[VhostConfig], default: Option<&str>) -> Result<(), InvalidSetting> {
    let mut names = BTreeSet::new();
    for (i, v) in vhosts.iter().enumerate() {
        let at = || KeyPath::root().key("vhosts").index(i);
        if v.name.is_empty() {
            return Err(InvalidSetting::new(
                at().key("name"),
                "the vhost name is empty",
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(InvalidSetting::new(
                at().key("name"),
                format!("vhost {:?} is declared twice", v.name),
            ));
        }
        if v.convention == Convention::ActiveMq && (!v.exchanges.is_empty() || !v.queues.is_empty())
        {
            let key = if v.exchanges.is_empty() {
                "queues"
            } else {
                "exchanges"
            };
            return Err(InvalidSetting::new(
                at().key(key),
                format!(
                    "vhost {:?} uses the activemq convention, which has no declared exchanges \
                     or queues (set convention = \"rabbitmq\")",
                    v.name
                ),
            ));
        }
        let mut exchanges = BTreeSet::new();
        for (j, e) in v.exchanges.iter().enumerate() {
            let key = || at().key("exchanges").index(j).key("name");
            if e.name.is_empty() || e.name.contains('/') {
                return Err(InvalidSetting::new(
                    key(),
                    format!("{:?} is not an exchange name (empty, or holds `/`)", e.name),
                ));
            }
            if e.name.starts_with("amq.") {
                return Err(InvalidSetting::new(
                    key(),
                    format!(
                        "{:?}: names starting with `amq.` are reserved (amq.topic, amq.direct \
                         and amq.fanout exist already)",
                        e.name
                    ),
                ));
            }
            if !exchanges.insert(e.name.as_str()) {
                return Err(InvalidSetting::new(
                    key(),
                    format!(
                        "exchange {:?} is declared twice in vhost {:?}",
                        e.name, v.name
                    ),
                ));
            }
        }
        for (j, q) in v.queues.iter().enumerate() {
            if q.is_empty() {
                return Err(InvalidSetting::new(
                    at().key("queues").index(j),
                    "the queue name is empty",
                ));
            }
        }
    }
    if let Some(d) = default {
        if vhosts.is_empty() {
            return Err(InvalidSetting::new(
                KeyPath::root().key("default_vhost"),
                format!("{d:?} names a vhost, but no [[core.vhosts]] are declared"),
            ));
        }
        if !names.contains(d) {
            return Err(InvalidSetting::new(
                KeyPath::root().key("default_vhost"),
                format!(
                    "{d:?} is not one of the declared vhosts ({})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A vhost, by its place in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VhostId(pub usize);

/// One vhost as the core uses it.
#[derive(Clone, Debug)]
pub struct Vhost {
    /// Its name (what `host` says).
    pub name: String,
    /// The first segment of every internal name in it.
    pub segment: String,
    /// Its naming convention.
    pub convention: Convention,
    exchanges: BTreeMap<String, ExchangeType>,
    /// Queues declared in the configuration.
    pub queues: Vec<String>,
}

/// Every vhost, and which one a CONNECT without `host` gets.
#[derive(Clone, Debug, Default)]
pub struct Vhosts {
    hosts: Vec<Vhost>,
    default: Option<VhostId>,
}

/// What a client frame does with a destination (they translate differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// SEND's `destination`.
    Send,
    /// SUBSCRIBE's or UNSUBSCRIBE's `destination`.
    Subscribe,
}

/// A RabbitMQ queue a translated name needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueUse {
    /// `/queue/<name>`: declared by its use.
    Declare(String),
    /// `/amq/queue/<name>`: must have been declared.
    Existing(String),
}

/// The RabbitMQ resource a destination names, which permissions are checked on (see
/// [`crate::permissions`]; the core works out which access each frame needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `/exchange/<X>/…`, or `/topic/…` (exchange `amq.topic`): a SEND publishes to the
    /// exchange; a SUBSCRIBE declares a subscription queue and binds it to the exchange.
    Exchange(String),
    /// `/queue/<N>`, `/amq/queue/<N>` or a name without prefix: a queue, which a SEND
    /// reaches through the default exchange (`amq.default`).
    Queue(String),
    /// `/reply-queue/<T>`: another connection's reply queue, through the default exchange.
    ReplyQueue(String),
    /// `/temp-queue/<x>` and the other temporary names: this connection's own queue `x`.
    Temporary(String),
    /// A destination of an ActiveMQ-convention vhost: no RabbitMQ resource.
    None,
}

/// A client's destination, translated.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The ActiveMQ-style destination the core routes.
    pub internal: String,
    /// The destination as MESSAGE frames show it to clients of this vhost.
    pub display: String,
    /// For a RabbitMQ subscription with wildcards (or a fanout exchange): how it
    /// matches internal names.
    pub pattern: Option<Pattern>,
    /// The queue it declares or needs, if any.
    pub queue: Option<QueueUse>,
    /// The RabbitMQ resource it names.
    pub resource: Resource,
}

impl Vhosts {
    /// The vhosts of a configuration checked by [`validate`] (a `default` that names no
    /// vhost is ignored rather than trusted).
    pub fn new(configs: &[VhostConfig], default: Option<&str>) -> Vhosts {
        let hosts: Vec<Vhost> = configs
            .iter()
            .map(|c| {
                let mut exchanges: BTreeMap<String, ExchangeType> = BUILTIN_EXCHANGES
                    .iter()
                    .map(|(n, t)| ((*n).to_owned(), *t))
                    .collect();
                if c.convention == Convention::ActiveMq {
                    exchanges.clear();
                }
                for e in &c.exchanges {
                    exchanges.insert(e.name.clone(), e.kind);
                }
                Vhost {
                    name: c.name.clone(),
                    segment: escape_word(&c.name),
                    convention: c.convention,
                    exchanges,
                    queues: c.queues.clone(),
                }
            })
            .collect();
        let default = default.and_then(|d| hosts.iter().position(|h| h.name == d).map(VhostId));
        Vhosts { hosts, default }
    }

    /// Whether no vhost is configured (then names are not translated at all).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The vhost `id`.
    pub fn get(&self, id: VhostId) -> &Vhost {
        &self.hosts[id.0]
    }

    /// Every vhost with its id.
    pub fn iter(&self) -> impl Iterator<Item = (VhostId, &Vhost)> {
        self.hosts.iter().enumerate().map(|(i, h)| (VhostId(i), h))
    }

    /// The vhost whose internal names start with `name`'s first segment.
    pub fn owning(&self, name: &str) -> Option<&Vhost> {
        let first = name.split('.').next()?;
        self.hosts.iter().find(|h| h.segment == first)
    }

    /// The vhost a CONNECT with this `host` header gets: `Ok(None)` when no vhost is
    /// configured. A named vhost wins; no `host` (or an empty one) gets `default_vhost`;
    /// an unknown `host` gets the default vhost when that one follows ActiveMQ's
    /// convention (ActiveMQ ignores `host`, and clients such as stomp.py send the server's
    /// host name), and is refused otherwise, as RabbitMQ refuses it.
    pub fn select(&self, host: Option<&str>) -> Result<Option<VhostId>, String> {
        if self.hosts.is_empty() {
            return Ok(None);
        }
        let host = host.filter(|h| !h.is_empty());
        if let Some(h) = host
            && let Some(i) = self.hosts.iter().position(|v| v.name == h)
        {
            return Ok(Some(VhostId(i)));
        }
        match (host, self.default) {
            (None, Some(d)) => Ok(Some(d)),
            (None, None) => Err(format!(
                "no virtual host chosen: CONNECT needs a host header naming one of {}",
                self.names()
            )),
            (Some(_), Some(d)) if self.get(d).convention == Convention::ActiveMq => Ok(Some(d)),
            (Some(h), _) => Err(format!(
                "Virtual host '{h}' access denied: no such vhost (the broker has {})",
                self.names()
            )),
        }
    }

    fn names(&self) -> String {
        self.hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Vhost {
    /// Translates a destination a client of this vhost wrote.
    pub fn translate(&self, text: &str, use_: Use) -> Result<Translated, String> {
        for p in [
            "/temp-queue/",
            "/temp-topic/",
            "/remote-temp-queue/",
            "/remote-temp-topic/",
        ] {
            if let Some(local) = text.strip_prefix(p) {
                let mut t = self.same(text, text.to_owned(), None);
                if self.convention == Convention::RabbitMq {
                    t.resource = Resource::Temporary(local.to_owned());
                }
                return Ok(t);
            }
        }
        match self.convention {
            Convention::ActiveMq => self.translate_activemq(text),
            Convention::RabbitMq => self.translate_rabbitmq(text, use_),
        }
    }

    fn same(&self, text: &str, internal: String, queue: Option<QueueUse>) -> Translated {
        Translated {
            internal,
            display: text.to_owned(),
            pattern: None,
            queue,
            resource: Resource::None,
        }
    }

    fn translate_activemq(&self, text: &str) -> Result<Translated, String> {
        let (prefix, name) = if let Some(n) = text.strip_prefix("/queue/") {
            ("/queue/", n)
        } else if let Some(n) = text.strip_prefix("/topic/") {
            ("/topic/", n)
        } else {
            ("/queue/", text)
        };
        if name.is_empty() {
            return Err("destination is empty".to_owned());
        }
        Ok(self.same(text, format!("{prefix}{}.{name}", self.segment), None))
    }

    fn translate_rabbitmq(&self, text: &str, use_: Use) -> Result<Translated, String> {
        if let Some(rest) = text.strip_prefix("/exchange/") {
            let (exchange, key) = match rest.split_once('/') {
                Some((x, k)) => (x, k),
                None => (rest, ""),
            };
            if exchange.is_empty() {
                return Err(format!("{text}: the exchange name is empty"));
            }
            return self.exchange(text, exchange, key, use_);
        }
        if let Some(key) = text.strip_prefix("/topic/") {
            return self.exchange(text, "amq.topic", key, use_);
        }
        if let Some(name) = text.strip_prefix("/queue/") {
            return self.queue(name, QueueUse::Declare(name.to_owned()));
        }
        if let Some(name) = text.strip_prefix("/amq/queue/") {
            return self.queue(name, QueueUse::Existing(name.to_owned()));
        }
        if let Some(name) = text.strip_prefix("/reply-queue/") {
            if name.is_empty() {
                return Err("destination is empty".to_owned());
            }
            // Shown as RabbitMQ shows its reply queues: a queue of the default exchange.
            let mut t = self.same(
                &format!("/queue/{name}"),
                format!("/remote-temp-queue/{name}"),
                None,
            );
            t.resource = Resource::ReplyQueue(name.to_owned());
            return Ok(t);
        }
        if text.starts_with('/') {
            return Err(format!(
                "'{text}' is not a valid destination in vhost '{}' (RabbitMQ conventions: \
                 /exchange/, /queue/, /amq/queue/, /topic/, /temp-queue/, /reply-queue/)",
                self.name
            ));
        }
        // RabbitMQ 3.10 takes a name without prefix as a queue's.
        self.queue(text, QueueUse::Declare(text.to_owned()))
    }

    /// A queue, shown as RabbitMQ shows a message from the default exchange: `/queue/<name>`.
    fn queue(&self, name: &str, use_: QueueUse) -> Result<Translated, String> {
        if name.is_empty() {
            return Err("destination is empty".to_owned());
        }
        let mut t = self.same(
            &format!("/queue/{name}"),
            format!("/queue/{}.{}", self.segment, escape_word(name)),
            Some(use_),
        );
        t.resource = Resource::Queue(name.to_owned());
        Ok(t)
    }

    fn exchange(
        &self,
        text: &str,
        exchange: &str,
        key: &str,
        use_: Use,
    ) -> Result<Translated, String> {
        let Some(kind) = self.exchanges.get(exchange).copied() else {
            return Err(format!(
                "NOT_FOUND - no exchange '{exchange}' in vhost '{}'",
                self.name
            ));
        };
        if key.contains('/') {
            return Err(format!("'{text}' is not a valid exchange destination"));
        }
        // As RabbitMQ shows it on MESSAGE frames: amq.topic as `/topic/<key>`.
        let shown = if exchange == "amq.topic" {
            format!("/topic/{key}")
        } else {
            text.to_owned()
        };
        let text = shown.as_str();
        let base = format!("{}.{}", self.segment, escape_word(exchange));
        let literal_name = || {
            let mut name = base.clone();
            for w in key.split('.') {
                name.push('.');
                name.push_str(&escape_word(w));
            }
            name
        };
        let resource = Resource::Exchange(exchange.to_owned());
        let literal = |internal: String| Translated {
            resource: resource.clone(),
            ..self.same(text, internal, None)
        };
        let words: Vec<Word> = match (use_, kind) {
            (Use::Send, _) | (Use::Subscribe, ExchangeType::Direct) => {
                return Ok(literal(format!("/topic/{}", literal_name())));
            }
            (Use::Subscribe, ExchangeType::Fanout) => vec![Word::Any],
            (Use::Subscribe, ExchangeType::Topic) => key
                .split('.')
                .map(|w| match w {
                    "*" => Word::One,
                    "#" => Word::Any,
                    lit => Word::Literal(escape_word(lit)),
                })
                .collect(),
        };
        if words.iter().all(|w| matches!(w, Word::Literal(_))) {
            return Ok(literal(format!("/topic/{}", literal_name())));
        }
        // The internal text only needs to read as a wildcard (`*`, `>`) to the core; the
        // pattern decides what matches.
        let mut internal = format!("/topic/{base}");
        let mut full = vec![
            Word::Literal(self.segment.clone()),
            Word::Literal(escape_word(exchange)),
        ];
        for w in &words {
            internal.push('.');
            match w {
                Word::Literal(l) => internal.push_str(l),
                Word::One => internal.push('*'),
                Word::Any => internal.push('>'),
            }
        }
        full.extend(words);
        let pattern = Pattern::from_words(full, &internal["/topic/".len()..]);
        Ok(Translated {
            internal,
            display: text.to_owned(),
            pattern: Some(pattern),
            queue: None,
            resource,
        })
    }
}

/// The AMQP pattern a RabbitMQ-convention subscription's internal topic name spells
/// (without `/topic/`): literal words are escaped, so a `*` segment can only be AMQP's `*`
/// and a `>` only its `#`. Used to restore a durable subscription queue's binding.
pub fn pattern_of_internal(name: &str) -> Pattern {
    let words = name.split('.').map(|w| match w {
        "*" => Word::One,
        ">" => Word::Any,
        lit => Word::Literal(lit.to_owned()),
    });
    Pattern::from_words(words, name)
}

/// One internal segment for any word: `%`, `.`, `*`, `>` and `,` as `%XX`, and the empty
/// word as a lone `%` (which escaping never produces otherwise).
pub fn escape_word(word: &str) -> String {
    if word.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            '%' | '.' | '*' | '>' | ',' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rabbit() -> Vhost {
        Vhosts::new(
            &[VhostConfig {
                name: "/mcollective".into(),
                convention: Convention::RabbitMq,
                exchanges: vec![
                    ExchangeConfig {
                        name: "mcollective_broadcast".into(),
                        kind: ExchangeType::Topic,
                    },
                    ExchangeConfig {
                        name: "mcollective_directed".into(),
                        kind: ExchangeType::Direct,
                    },
                    ExchangeConfig {
                        name: "all".into(),
                        kind: ExchangeType::Fanout,
                    },
                ],
                queues: vec![],
            }],
            None,
        )
        .get(VhostId(0))
        .clone()
    }

    /// Whether a message SENT to `send` reaches a subscription to `sub`.
    fn routes(v: &Vhost, send: &str, sub: &str) -> bool {
        let s = v.translate(send, Use::Send).unwrap();
        let t = v.translate(sub, Use::Subscribe).unwrap();
        let name = s.internal.strip_prefix("/topic/").unwrap();
        match t.pattern {
            Some(p) => p.matches(name),
            None => t.internal == s.internal,
        }
    }

    #[test]
    fn escapes_words_into_one_valid_segment() {
        assert_eq!(escape_word("amq.topic"), "amq%2Etopic");
        assert_eq!(escape_word("a*b>c,d%e"), "a%2Ab%3Ec%2Cd%25e");
        assert_eq!(escape_word(""), "%");
        assert_eq!(escape_word("/mcollective"), "/mcollective");
    }

    #[test]
    fn topic_exchanges_match_star_and_hash() {
        let v = rabbit();
        let x = "/exchange/mcollective_broadcast";
        assert!(routes(&v, &format!("{x}/rpcutil"), &format!("{x}/rpcutil")));
        assert!(!routes(
            &v,
            &format!("{x}/rpcutil"),
            &format!("{x}/discovery")
        ));
        assert!(routes(&v, &format!("{x}/a.b.c"), &format!("{x}/a.*.c")));
        assert!(!routes(&v, &format!("{x}/a.b.b.c"), &format!("{x}/a.*.c")));
        assert!(routes(&v, &format!("{x}/a.b.b.c"), &format!("{x}/a.#.c")));
        assert!(routes(&v, &format!("{x}/a.c"), &format!("{x}/a.#.c")));
        assert!(routes(&v, &format!("{x}/a"), &format!("{x}/a.#")));
        assert!(routes(
            &v,
            &format!("{x}/anything.at.all"),
            &format!("{x}/#")
        ));
        assert!(!routes(&v, &format!("{x}/b.c"), &format!("{x}/a.#")));
        // No key (MCollective's agents_multiplex) meets no key only.
        assert!(routes(&v, x, x));
        assert!(!routes(&v, &format!("{x}/rpcutil"), x));
        // `/topic/` is amq.topic.
        assert!(routes(&v, "/topic/x.y", "/exchange/amq.topic/x.*"));
        assert!(routes(&v, "/exchange/amq.topic/x.y", "/topic/#"));
        assert!(!routes(&v, "/topic/x.y", &format!("{x}/x.y")));
    }

    #[test]
    fn direct_exchanges_match_keys_exactly_and_fanout_matches_all() {
        let v = rabbit();
        let d = "/exchange/mcollective_directed";
        assert!(routes(
            &v,
            &format!("{d}/node1.example.com"),
            &format!("{d}/node1.example.com")
        ));
        assert!(!routes(
            &v,
            &format!("{d}/node2.example.com"),
            &format!("{d}/node1.example.com")
        ));
        // `*` and `#` are no wildcards on a direct exchange.
        assert!(!routes(&v, &format!("{d}/node1"), &format!("{d}/*")));
        assert!(routes(&v, &format!("{d}/*"), &format!("{d}/*")));
        assert!(routes(&v, "/exchange/all/x", "/exchange/all/y"));
        assert!(routes(&v, "/exchange/all", "/exchange/all/y.z"));
    }

    #[test]
    fn queues_and_reply_queues() {
        let v = rabbit();
        let q = v.translate("/queue/a.b*", Use::Send).unwrap();
        assert_eq!(q.internal, "/queue//mcollective.a%2Eb%2A");
        assert_eq!(q.queue, Some(QueueUse::Declare("a.b*".into())));
        let a = v.translate("/amq/queue/a.b*", Use::Subscribe).unwrap();
        assert_eq!(a.internal, q.internal);
        assert_eq!(a.queue, Some(QueueUse::Existing("a.b*".into())));
        assert_eq!(a.display, "/queue/a.b*");
        assert_eq!(
            v.translate("/reply-queue/ID:b-1-2:x", Use::Send)
                .unwrap()
                .internal,
            "/remote-temp-queue/ID:b-1-2:x"
        );
        assert_eq!(
            v.translate("/reply-queue/ID:b-1-2:x", Use::Send)
                .unwrap()
                .display,
            "/queue/ID:b-1-2:x"
        );
        assert_eq!(
            v.translate("/exchange/amq.topic/k", Use::Send)
                .unwrap()
                .display,
            "/topic/k"
        );
        assert_eq!(
            v.translate("/temp-queue/x", Use::Subscribe)
                .unwrap()
                .internal,
            "/temp-queue/x"
        );
    }

    #[test]
    fn destinations_record_the_rabbitmq_resource_they_touch() {
        let v = rabbit();
        let resource = |text: &str, use_: Use| v.translate(text, use_).unwrap().resource;
        let exchange = |n: &str| Resource::Exchange(n.to_owned());
        assert_eq!(
            resource("/exchange/mcollective_broadcast/a.*", Use::Subscribe),
            exchange("mcollective_broadcast")
        );
        assert_eq!(
            resource("/exchange/mcollective_directed/n1", Use::Send),
            exchange("mcollective_directed")
        );
        assert_eq!(
            resource("/topic/x.#", Use::Subscribe),
            exchange("amq.topic")
        );
        assert_eq!(resource("/topic/x", Use::Send), exchange("amq.topic"));
        assert_eq!(
            resource("/queue/a.b", Use::Send),
            Resource::Queue("a.b".into())
        );
        assert_eq!(
            resource("/amq/queue/q", Use::Subscribe),
            Resource::Queue("q".into())
        );
        assert_eq!(
            resource("plain", Use::Send),
            Resource::Queue("plain".into())
        );
        assert_eq!(
            resource("/reply-queue/ID:b-1-2:x", Use::Send),
            Resource::ReplyQueue("ID:b-1-2:x".into())
        );
        assert_eq!(
            resource("/temp-queue/r", Use::Subscribe),
            Resource::Temporary("r".into())
        );
        let amq = Vhosts::new(
            &[VhostConfig {
                name: "a".into(),
                ..VhostConfig::default()
            }],
            None,
        );
        let a = amq.get(VhostId(0));
        for text in ["/queue/q", "/topic/t", "/temp-queue/r"] {
            assert_eq!(
                a.translate(text, Use::Send).unwrap().resource,
                Resource::None
            );
        }
    }

    #[test]
    fn unknown_exchanges_and_prefixes_are_errors() {
        let v = rabbit();
        let e = v.translate("/exchange/nope/k", Use::Send).unwrap_err();
        assert_eq!(e, "NOT_FOUND - no exchange 'nope' in vhost '/mcollective'");
        assert!(
            v.translate("/plain", Use::Send)
                .unwrap_err()
                .contains("not a valid destination")
        );
        let plain = v.translate("plain", Use::Send).unwrap();
        assert_eq!(
            plain.internal,
            v.translate("/queue/plain", Use::Send).unwrap().internal
        );
        assert_eq!(plain.display, "/queue/plain");
        assert!(v.translate("/exchange//k", Use::Send).is_err());
        assert!(v.translate("/exchange/amq.fanout/a/b", Use::Send).is_err());
        assert!(v.translate("/queue/", Use::Send).is_err());
    }

    #[test]
    fn vhosts_are_namespaces_and_host_selects_them() {
        let vs = Vhosts::new(
            &[
                VhostConfig {
                    name: "a".into(),
                    ..VhostConfig::default()
                },
                VhostConfig {
                    name: "b".into(),
                    convention: Convention::RabbitMq,
                    ..VhostConfig::default()
                },
            ],
            Some("a"),
        );
        let a = vs.get(VhostId(0));
        let b = vs.get(VhostId(1));
        let ta = a.translate("/queue/q", Use::Send).unwrap().internal;
        let tb = b.translate("/queue/q", Use::Send).unwrap().internal;
        assert_ne!(ta, tb);
        assert_eq!(
            a.translate("/topic/x.>", Use::Subscribe).unwrap().internal,
            "/topic/a.x.>"
        );
        assert_eq!(vs.select(Some("b")), Ok(Some(VhostId(1))));
        assert_eq!(vs.select(None), Ok(Some(VhostId(0))));
        // The default follows ActiveMQ, which ignores unknown hosts.
        assert_eq!(vs.select(Some("127.0.0.1")), Ok(Some(VhostId(0))));
        let rabbit_default = Vhosts::new(
            &[VhostConfig {
                name: "/".into(),
                convention: Convention::RabbitMq,
                ..VhostConfig::default()
            }],
            Some("/"),
        );
        assert!(
            rabbit_default
                .select(Some("/nope"))
                .unwrap_err()
                .starts_with("Virtual host '/nope' access denied")
        );
        assert_eq!(Vhosts::default().select(Some("x")), Ok(None));
        assert_eq!(vs.owning("b.x").map(|v| v.name.as_str()), Some("b"));
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |v: Vec<VhostConfig>, d: Option<&str>| validate(&v, d).unwrap_err().to_string();
        let rabbit = |name: &str, exchanges: Vec<ExchangeConfig>| VhostConfig {
            name: name.into(),
            convention: Convention::RabbitMq,
            exchanges,
            queues: vec![],
        };
        assert!(bad(vec![rabbit("", vec![])], None).contains("vhosts[0].name"));
        assert!(bad(vec![rabbit("a", vec![]), rabbit("a", vec![])], None).contains("twice"));
        let x = |n: &str| ExchangeConfig {
            name: n.into(),
            kind: ExchangeType::Topic,
        };
        assert!(
            bad(vec![rabbit("a", vec![x("amq.topic")])], None)
                .contains("vhosts[0].exchanges[0].name")
        );
        assert!(bad(vec![rabbit("a", vec![x("e"), x("e")])], None).contains("exchanges[1]"));
        let amq = VhostConfig {
            name: "a".into(),
            exchanges: vec![x("e")],
            ..VhostConfig::default()
        };
        assert!(bad(vec![amq], None).contains("activemq convention"));
        assert!(bad(vec![rabbit("a", vec![])], Some("b")).contains("default_vhost"));
        assert!(bad(vec![], Some("b")).contains("default_vhost"));
        assert!(validate(&[rabbit("a", vec![x("e")])], Some("a")).is_ok());
    }
}
