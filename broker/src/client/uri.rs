//! The URI syntax that produces server lists and ActiveMQ failover settings.
//!
//! [`parse_uri`] accepts what ActiveMQ clients and the ruby stomp gem accept for plain
//! TCP connections:
//!
//! * a single server: `tcp://host:61613` or `stomp://host:61613`, optionally with
//!   credentials as userinfo (`stomp://user:pass@host:61613`) or as query options
//!   (`tcp://host:61613?login=user&passcode=pass`);
//! * a failover list in ActiveMQ's composite syntax:
//!   `failover:(tcp://a:61613,stomp://b:61613)?initialReconnectDelay=10&randomize=false`,
//!   also written `failover://(…)`, or without parentheses (`failover:tcp://a:1,tcp://b:1`,
//!   in which case, as in ActiveMQ, a trailing `?…` belongs to the last server, not to
//!   the failover transport).
//!
//! Failover options follow ActiveMQ 5.18 `FailoverTransport` (names are case-sensitive
//! except for the first letter, as ActiveMQ's setter lookup is; times are milliseconds):
//! `initialReconnectDelay`, `maxReconnectDelay`, `useExponentialBackOff`,
//! `reconnectDelayExponent` (the multiplier; `backOffMultiplier`, the stomp gem's name, is
//! accepted too), `maxReconnectAttempts` (-1 = forever), `startupMaxReconnectAttempts`
//! (-1 = same as `maxReconnectAttempts`) and `randomize`. Other options ActiveMQ knows
//! (`backup`, `priorityBackup`, `timeout`, `nested.*`, …) are rejected as unsupported,
//! anything else as unknown.
//!
//! TLS servers are written `ssl://`, `stomp+ssl://` (also `tls://`, `stomp+tls://`,
//! `stomp+nio+ssl://`). Their certificate is checked against the system's CA bundle
//! unless the server's options say otherwise: `ca_file`, `cert_file` and `key_file` (PEM
//! files: the CA to trust, and this client's certificate and key for brokers that ask for
//! one) and `insecure_skip_verify=true` (encryption without checking the server), e.g.
//! `failover:(ssl://a:61614?ca_file=/etc/stomp/ca.pem,ssl://b:61614?ca_file=/etc/stomp/ca.pem)`.
//!
//! Errors name the offending part and quote the whole URI, with passcodes masked.
//!
//! # Option syntax: one rule for every ActiveMQ URI
//!
//! The failover options here and a network connector's `static:(…)?…` options
//! (`connectors::config`) are read by the same functions, with ActiveMQ's rules
//! where they are sound:
//!
//! - the query is `name=value` pairs joined by `&`, percent-decoded (`+` is a space, as
//!   Java's `URLDecoder` has it) by `parse_query`;
//! - names match with their first letter in either case (`normalise_option`), as
//!   ActiveMQ's setter lookup does;
//! - booleans are `true` or `false` in any letter case (`parse_java_bool`, Java's
//!   `Boolean.parseBoolean`); any other value is refused rather than read as `false`,
//!   so a typo is reported;
//! - an option given twice is refused: ActiveMQ keeps the last one silently, which hides
//!   mistakes;
//! - times are whole milliseconds (`parse_millis`), multipliers numbers of at least 1
//!   (`parse_multiplier`).

use super::policy::{BackoffMultiplier, ReconnectConfig};
use super::servers::{ServerAddr, ServerList, parse_port};

/// The result of [`parse_uri`].
#[derive(Debug, Clone, PartialEq)]
pub struct UriConfig {
    /// The servers, in URI order.
    pub servers: ServerList,
    /// ActiveMQ defaults ([`ReconnectConfig::activemq`]) updated by the failover options.
    /// The natural policy for it is [`PolicyKind::ActiveMq`](super::policy::PolicyKind).
    pub reconnect: ReconnectConfig,
    /// Whether the URI used the `failover:` scheme. A plain server URI means "no
    /// failover" to ActiveMQ; the driver decides what to make of it.
    pub failover: bool,
}

/// A URI that [`parse_uri`] rejected: what is wrong and the whole URI (passcodes masked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} in `{uri}`")]
pub struct UriError {
    /// The URI text, with passcodes replaced by `***`.
    pub uri: String,
    /// What is wrong.
    pub kind: UriErrorKind,
}

/// What is wrong with a URI. Server texts are quoted with passcodes masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriErrorKind {
    /// An option the failover transport does not know.
    #[error("failover URI option `{option}` is unknown")]
    UnknownOption {
        /// The option name as written.
        option: String,
    },
    /// An ActiveMQ failover option Stampede does not implement.
    #[error("failover URI option `{option}` is not supported by Stampede")]
    UnsupportedOption {
        /// The option name as written.
        option: String,
    },
    /// An option whose value does not parse or is out of range.
    #[error("failover URI option `{option}` has invalid value `{value}` (expected {expected})")]
    InvalidOptionValue {
        /// The option name as written.
        option: String,
        /// The value as written (decoded).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// `name` without `=value`.
    #[error("URI option `{option}` has no value")]
    OptionWithoutValue {
        /// The option name as written.
        option: String,
    },
    /// The same option twice.
    #[error("URI option `{option}` is given more than once")]
    DuplicateOption {
        /// The option name as written.
        option: String,
    },
    /// Two spellings of the same setting.
    #[error("failover URI options `{first}` and `{second}` both set the back-off multiplier")]
    ConflictingOptions {
        /// The first spelling.
        first: String,
        /// The second spelling.
        second: String,
    },
    /// A per-server option other than `login`/`passcode`.
    #[error(
        "server URI option `{option}` in `{server}` is unknown (only `login` and `passcode` are accepted{hint})"
    )]
    UnknownServerOption {
        /// The option name as written.
        option: String,
        /// The server URI.
        server: String,
        /// Extra advice when the option is a failover option in the wrong place.
        hint: &'static str,
    },
    /// Credentials both as userinfo and as query options.
    #[error("`{server}` gives the {what} both before `@` and as a query option")]
    ConflictingCredentials {
        /// The server URI.
        server: String,
        /// `login` or `passcode`.
        what: &'static str,
    },
    /// A TLS option (`ca_file`, …) on a server that does not use TLS.
    #[error("`{server}`: option `{option}` needs a TLS server (`ssl://` or `stomp+ssl://`)")]
    TlsOptionWithoutTls {
        /// The option.
        option: String,
        /// The server URI.
        server: String,
    },
    /// A server option with a value it cannot take.
    #[error("`{server}`: option `{option}` has invalid value `{value}` (expected true or false)")]
    BadServerOptionValue {
        /// The option.
        option: String,
        /// The value as written.
        value: String,
        /// The server URI.
        server: String,
    },
    /// A scheme other than `tcp`, `stomp`, `nio` or `stomp+nio`.
    #[error("`{server}`: scheme `{scheme}` is not supported (use `tcp://` or `stomp://`)")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
        /// The server URI.
        server: String,
    },
    /// Text without `scheme://`.
    #[error("`{server}` is not a server URI (expected `tcp://host:port`)")]
    NotAServerUri {
        /// The text.
        server: String,
    },
    /// `tcp://:61613`.
    #[error("`{server}` has no host")]
    MissingHost {
        /// The server URI.
        server: String,
    },
    /// A host with characters no host name or IP address has.
    #[error("`{server}`: `{host}` is not a host name or IP address")]
    InvalidHost {
        /// The server URI.
        server: String,
        /// The host as written.
        host: String,
    },
    /// `tcp://host` without `:port`.
    #[error("`{server}` has no port")]
    MissingPort {
        /// The server URI.
        server: String,
    },
    /// A port that is not 1–65535.
    #[error("`{server}`: `{port}` is not a port number")]
    InvalidPort {
        /// The server URI.
        server: String,
        /// The port as written.
        port: String,
    },
    /// `tcp://host:1/some/path`.
    #[error("`{server}`: unexpected path `{path}`")]
    UnexpectedPath {
        /// The server URI.
        server: String,
        /// The path.
        path: String,
    },
    /// `failover:(failover:(…))`.
    #[error("`{server}`: nested failover URIs are not supported")]
    NestedFailover {
        /// The nested URI.
        server: String,
    },
    /// `(` and `)` do not match.
    #[error("unbalanced parentheses")]
    UnbalancedParentheses,
    /// `failover:()` or `failover:`.
    #[error("failover URI lists no servers")]
    NoServers,
    /// `failover:(tcp://a:1,,tcp://b:1)`.
    #[error("failover URI has an empty server entry")]
    EmptyServerEntry,
    /// Text after the closing parenthesis that is not `?options`.
    #[error("unexpected `{text}` after the server list (options start with `?`)")]
    TrailingText {
        /// The text.
        text: String,
    },
    /// A `%` not followed by two hex digits, or an escape that is not UTF-8.
    #[error("`{text}` has a malformed %-escape")]
    BadPercentEncoding {
        /// The text (masked if it is a passcode).
        text: String,
    },
}

/// Failover options ActiveMQ 5.18 knows (setters of `FailoverTransport`) but Stampede
/// does not implement.
const UNSUPPORTED_FAILOVER_OPTIONS: &[&str] = &[
    "timeout",
    "backup",
    "backupPoolSize",
    "trackMessages",
    "trackTransactionProducers",
    "maxCacheSize",
    "priorityBackup",
    "priorityURIs",
    "updateURIsSupported",
    "reconnectSupported",
    "updateURIsURL",
    "rebalanceUpdateURIs",
    "warnAfterReconnectAttempts",
    "reconnectDelay",
    "nestedExtraQueryOptions",
];

/// The failover options Stampede implements (after first-letter normalisation).
const FAILOVER_OPTIONS: &[&str] = &[
    "initialReconnectDelay",
    "maxReconnectDelay",
    "useExponentialBackOff",
    "reconnectDelayExponent",
    "backOffMultiplier",
    "maxReconnectAttempts",
    "startupMaxReconnectAttempts",
    "randomize",
];

/// Parses a server or failover URI (see the module documentation).
pub fn parse_uri(uri: &str) -> Result<UriConfig, UriError> {
    let err = |kind| UriError {
        uri: mask_secrets(uri),
        kind,
    };
    let text = uri.trim();
    match strip_scheme(text, "failover") {
        Some(rest) => parse_failover(rest).map_err(err),
        None => {
            let server = parse_server(text).map_err(err)?;
            Ok(UriConfig {
                servers: ServerList::single(server),
                reconnect: ReconnectConfig::activemq(),
                failover: false,
            })
        }
    }
}

/// Strips `scheme:` (ASCII case-insensitive) from the front of `text`.
fn strip_scheme<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let head = text.get(..scheme.len())?;
    let rest = text.get(scheme.len()..)?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(':')).then(|| &rest[1..])
}

fn parse_failover(rest: &str) -> Result<UriConfig, UriErrorKind> {
    let rest = rest.trim();
    let rest = rest.strip_prefix("//").unwrap_or(rest).trim();
    if !parentheses_balance(rest) {
        return Err(UriErrorKind::UnbalancedParentheses);
    }
    let (components, query) = if let Some(inner) = rest.strip_prefix('(') {
        // Balanced, so the opening parenthesis has a match.
        let close = matching_paren(inner).ok_or(UriErrorKind::UnbalancedParentheses)?;
        let after = inner[close + 1..].trim();
        let query = match after.strip_prefix('?') {
            Some(q) => q,
            None if after.is_empty() => "",
            None => {
                return Err(UriErrorKind::TrailingText {
                    text: mask_secrets(after),
                });
            }
        };
        (&inner[..close], query)
    } else {
        (rest, "")
    };
    let parts = split_top_level(components);
    if parts.iter().all(|p| p.trim().is_empty()) {
        return Err(UriErrorKind::NoServers);
    }
    let mut servers = Vec::with_capacity(parts.len());
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err(UriErrorKind::EmptyServerEntry);
        }
        if strip_scheme(part, "failover").is_some() {
            return Err(UriErrorKind::NestedFailover {
                server: mask_secrets(part),
            });
        }
        servers.push(parse_server(part)?);
    }
    let servers = ServerList::new(servers).map_err(|_| UriErrorKind::NoServers)?;
    let reconnect = apply_failover_options(ReconnectConfig::activemq(), query)?;
    Ok(UriConfig {
        servers,
        reconnect,
        failover: true,
    })
}

fn parentheses_balance(text: &str) -> bool {
    let mut depth = 0i64;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// The byte index of the `)` closing an already opened `(` in `text`.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses one `scheme://[user[:pass]@]host:port[/][?login=..&passcode=..]`.
fn parse_server(text: &str) -> Result<ServerAddr, UriErrorKind> {
    let shown = || mask_secrets(text);
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UriErrorKind::NotAServerUri { server: shown() });
    };
    let lower = scheme.to_ascii_lowercase();
    let is_tls = crate::tls::is_tls_scheme(&lower);
    if !is_tls && !matches!(lower.as_str(), "tcp" | "stomp" | "nio" | "stomp+nio") {
        return Err(UriErrorKind::UnsupportedScheme {
            scheme: scheme.to_owned(),
            server: shown(),
        });
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(UriErrorKind::UnexpectedPath {
            server: shown(),
            path: path.to_owned(),
        });
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (mut login, mut passcode) = match userinfo {
        Some(u) => {
            let (l, p) = match u.split_once(':') {
                Some((l, p)) => (l, Some(p)),
                None => (u, None),
            };
            let login = percent_decode(l, false)
                .ok_or_else(|| UriErrorKind::BadPercentEncoding { text: l.to_owned() })?;
            let passcode = p
                .map(|p| {
                    percent_decode(p, false).ok_or_else(|| UriErrorKind::BadPercentEncoding {
                        text: "***".to_owned(),
                    })
                })
                .transpose()?;
            (Some(login), passcode)
        }
        None => (None, None),
    };
    let (host, port) = split_host_port(hostport, text)?;
    let mut tls = is_tls.then(crate::tls::ClientTls::default);
    if let Some(query) = query {
        for (name, value) in parse_query(query)? {
            if matches!(
                name.as_str(),
                "ca_file" | "cert_file" | "key_file" | "insecure_skip_verify"
            ) {
                let Some(tls) = tls.as_mut() else {
                    return Err(UriErrorKind::TlsOptionWithoutTls {
                        option: name,
                        server: shown(),
                    });
                };
                match name.as_str() {
                    "ca_file" => tls.ca_file = value,
                    "cert_file" => tls.cert_file = value,
                    "key_file" => tls.key_file = value,
                    _ => {
                        tls.insecure_skip_verify = parse_java_bool(&value).ok_or_else(|| {
                            UriErrorKind::BadServerOptionValue {
                                option: name.clone(),
                                value: value.clone(),
                                server: shown(),
                            }
                        })?
                    }
                }
                continue;
            }
            let slot = match name.as_str() {
                "login" => &mut login,
                "passcode" => &mut passcode,
                _ => {
                    let hint = if is_failover_option(&name) {
                        "; failover options go after the parenthesised list, `failover:(…)?…`"
                    } else {
                        ""
                    };
                    return Err(UriErrorKind::UnknownServerOption {
                        option: name,
                        server: shown(),
                        hint,
                    });
                }
            };
            if slot.is_some() {
                return Err(UriErrorKind::ConflictingCredentials {
                    server: shown(),
                    what: if name == "login" { "login" } else { "passcode" },
                });
            }
            *slot = Some(value);
        }
    }
    Ok(ServerAddr {
        host,
        port,
        login: login.filter(|l| !l.is_empty()),
        passcode: passcode.filter(|p| !p.is_empty()),
        tls,
    })
}

fn split_host_port(hostport: &str, server: &str) -> Result<(String, u16), UriErrorKind> {
    let shown = || mask_secrets(server);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(UriErrorKind::InvalidHost {
                server: shown(),
                host: hostport.to_owned(),
            });
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(UriErrorKind::MissingPort { server: shown() });
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(UriErrorKind::InvalidHost {
                server: shown(),
                host: host.to_owned(),
            });
        }
        (host, port)
    } else {
        let Some((host, port)) = hostport.rsplit_once(':') else {
            if hostport.is_empty() {
                return Err(UriErrorKind::MissingHost { server: shown() });
            }
            return Err(UriErrorKind::MissingPort { server: shown() });
        };
        if host.is_empty() {
            return Err(UriErrorKind::MissingHost { server: shown() });
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(UriErrorKind::InvalidHost {
                server: shown(),
                host: host.to_owned(),
            });
        }
        (host, port)
    };
    let port = parse_port(port).ok_or_else(|| UriErrorKind::InvalidPort {
        server: shown(),
        port: port.to_owned(),
    })?;
    Ok((host.to_owned(), port))
}

/// Splits `a=1&b=2` into decoded pairs, rejecting duplicates and names without values.
/// Empty pieces (`a=1&&b=2`, a trailing `&`) are skipped.
/// Splits and percent-decodes the `name=value` pairs of a URI query, refusing a pair
/// without `=` and a name given twice (see the module documentation).
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, UriErrorKind> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let Some((raw_name, raw_value)) = piece.split_once('=') else {
            return Err(UriErrorKind::OptionWithoutValue {
                option: piece.to_owned(),
            });
        };
        let name =
            percent_decode(raw_name, true).ok_or_else(|| UriErrorKind::BadPercentEncoding {
                text: raw_name.to_owned(),
            })?;
        let value =
            percent_decode(raw_value, true).ok_or_else(|| UriErrorKind::BadPercentEncoding {
                text: if name == "passcode" {
                    "***".to_owned()
                } else {
                    raw_value.to_owned()
                },
            })?;
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(UriErrorKind::DuplicateOption { option: name });
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes (and `+` as a space in query strings, as Java's `URLDecoder`
/// does). `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// ActiveMQ finds setters by upper-casing the first letter only, so `RandomIze` fails but
/// `Randomize` works; we match the same way by lower-casing the first letter.
pub(crate) fn normalise_option(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn is_failover_option(name: &str) -> bool {
    let n = normalise_option(name);
    FAILOVER_OPTIONS.contains(&n.as_str()) || UNSUPPORTED_FAILOVER_OPTIONS.contains(&n.as_str())
}

fn apply_failover_options(
    mut cfg: ReconnectConfig,
    query: &str,
) -> Result<ReconnectConfig, UriErrorKind> {
    let mut multiplier_from: Option<String> = None;
    for (option, value) in parse_query(query)? {
        let invalid = |expected: &'static str| UriErrorKind::InvalidOptionValue {
            option: option.clone(),
            value: value.clone(),
            expected,
        };
        let normalised = normalise_option(&option);
        match normalised.as_str() {
            "initialReconnectDelay" => {
                cfg.initial_delay = parse_millis(&value).ok_or_else(|| invalid(MILLIS))?;
            }
            "maxReconnectDelay" => {
                cfg.max_delay = parse_millis(&value).ok_or_else(|| invalid(MILLIS))?;
            }
            "useExponentialBackOff" => {
                cfg.exponential = parse_java_bool(&value).ok_or_else(|| invalid(BOOL))?;
            }
            "reconnectDelayExponent" | "backOffMultiplier" => {
                if let Some(first) = &multiplier_from {
                    return Err(UriErrorKind::ConflictingOptions {
                        first: first.clone(),
                        second: option,
                    });
                }
                cfg.multiplier = parse_multiplier(&value).ok_or_else(|| invalid("a number ≥ 1"))?;
                multiplier_from = Some(option.clone());
            }
            "maxReconnectAttempts" => {
                cfg.max_attempts = parse_attempts(&value).ok_or_else(|| invalid(ATTEMPTS))?;
            }
            "startupMaxReconnectAttempts" => {
                cfg.startup_max_attempts =
                    parse_attempts(&value).ok_or_else(|| invalid(ATTEMPTS))?;
            }
            "randomize" => {
                cfg.randomize = parse_java_bool(&value).ok_or_else(|| invalid(BOOL))?;
            }
            n if UNSUPPORTED_FAILOVER_OPTIONS.contains(&n) || n.starts_with("nested.") => {
                return Err(UriErrorKind::UnsupportedOption { option });
            }
            _ => return Err(UriErrorKind::UnknownOption { option }),
        }
    }
    Ok(cfg)
}

const MILLIS: &str = "a whole number of milliseconds ≥ 0";
const BOOL: &str = "`true` or `false`";
const ATTEMPTS: &str = "-1 for no limit, or a count ≥ 0";

/// A whole number of milliseconds (digits only, surrounding spaces ignored).
pub(crate) fn parse_millis(value: &str) -> Option<std::time::Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(std::time::Duration::from_millis)
}

/// `true` or `false` in any letter case (surrounding spaces ignored); `None` otherwise.
pub(crate) fn parse_java_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A backoff multiplier: a number of at least 1 (surrounding spaces ignored).
pub(crate) fn parse_multiplier(value: &str) -> Option<BackoffMultiplier> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(BackoffMultiplier::new)
}

/// `-1` → no limit; `n ≥ 0` → `Some(n)`.
fn parse_attempts(value: &str) -> Option<Option<u32>> {
    match value.trim().parse::<i64>().ok()? {
        -1 => Some(None),
        n => u32::try_from(n).ok().map(Some),
    }
}

/// Replaces passcodes in URI text by `***`: the part after the first `:` of a userinfo
/// (`scheme://user:secret@host`) and the value of `passcode=` query options.
pub(crate) fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Userinfo: after each `://`, up to the authority's end.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', '?', ',', ')', '&']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _secret)) => {
                    out.push_str(user);
                    out.push_str(":***@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    // Query options.
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("passcode=") {
        let boundary_ok = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&');
        let (head, tail) = rest.split_at(i + "passcode=".len());
        masked.push_str(head);
        if boundary_ok {
            let end = tail.find(['&', ',', ')']).unwrap_or(tail.len());
            masked.push_str("***");
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ok(uri: &str) -> UriConfig {
        parse_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn kind(uri: &str) -> UriErrorKind {
        match parse_uri(uri) {
            Ok(c) => panic!("{uri} parsed: {c:?}"),
            Err(e) => e.kind,
        }
    }

    fn msg(uri: &str) -> String {
        parse_uri(uri)
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|e| e.to_string())
    }

    fn hosts(c: &UriConfig) -> Vec<String> {
        c.servers.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn full_failover_uri() {
        let c = ok(
            "failover:(tcp://a:61613,stomp://b:61613)?initialReconnectDelay=10&maxReconnectDelay=30000\
                    &useExponentialBackOff=true&backOffMultiplier=2&maxReconnectAttempts=-1\
                    &startupMaxReconnectAttempts=-1&randomize=true",
        );
        assert!(c.failover);
        assert_eq!(hosts(&c), ["a:61613", "b:61613"]);
        assert_eq!(c.reconnect, ReconnectConfig::activemq());
    }

    #[test]
    fn failover_options_change_the_config() {
        let c = ok(
            "failover://(tcp://a:1)?initialReconnectDelay=100&maxReconnectDelay=5000\
                    &useExponentialBackOff=FALSE&reconnectDelayExponent=1.5&maxReconnectAttempts=3\
                    &startupMaxReconnectAttempts=0&randomize=false",
        );
        let r = c.reconnect;
        assert_eq!(r.initial_delay, Duration::from_millis(100));
        assert_eq!(r.max_delay, Duration::from_secs(5));
        assert!(!r.exponential);
        assert_eq!(r.multiplier.get(), 1.5);
        assert_eq!(r.max_attempts, Some(3));
        assert_eq!(r.startup_max_attempts, Some(0));
        assert!(!r.randomize);
    }

    #[test]
    fn failover_forms() {
        assert_eq!(hosts(&ok("failover:tcp://a:1")), ["a:1"]);
        assert_eq!(hosts(&ok("failover:tcp://a:1,tcp://b:2")), ["a:1", "b:2"]);
        assert_eq!(
            hosts(&ok("FAILOVER:( tcp://a:1 , tcp://b:2 )")),
            ["a:1", "b:2"]
        );
        assert_eq!(hosts(&ok("failover://(tcp://a:1)")), ["a:1"]);
        assert_eq!(hosts(&ok("failover:(tcp://a:1)?")), ["a:1"]);
        // Without parentheses a query belongs to the last server.
        let c = ok("failover:tcp://a:1,tcp://b:2?login=u");
        assert_eq!(c.servers.get(1).and_then(|s| s.login.as_deref()), Some("u"));
        assert_eq!(c.reconnect, ReconnectConfig::activemq());
        // ActiveMQ finds setters by capitalising the first letter only.
        assert!(
            !ok("failover:(tcp://a:1)?Randomize=false")
                .reconnect
                .randomize
        );
    }

    #[test]
    fn plain_server_uris() {
        let c = ok("tcp://h:61613");
        assert!(!c.failover);
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.servers.get(0), Some(&ServerAddr::new("h", 61613)));
        let c = ok("stomp://h:61613/?login=mc%20user&passcode=s%26cr+t");
        let s = c.servers.get(0).unwrap();
        assert_eq!(s.login.as_deref(), Some("mc user"));
        assert_eq!(s.passcode.as_deref(), Some("s&cr t"));
        let c = ok("stomp://user:p%40ss@h:61614");
        let s = c.servers.get(0).unwrap();
        assert_eq!(
            (s.login.as_deref(), s.passcode.as_deref(), s.port),
            (Some("user"), Some("p@ss"), 61614)
        );
        let c = ok("stomp://user@h:1");
        assert_eq!(c.servers.get(0).unwrap().passcode, None);
        let c = ok("tcp://[::1]:61613");
        assert_eq!(c.servers.get(0).unwrap().host, "::1");
        assert_eq!(c.servers.get(0).unwrap().to_string(), "[::1]:61613");
        assert_eq!(ok("nio://h:1").servers.len(), 1);
        // Empty credentials send none.
        assert_eq!(ok("tcp://h:1?login=").servers.get(0).unwrap().login, None);
    }

    #[test]
    fn error_messages_name_the_bad_part() {
        assert_eq!(
            msg("failover:(tcp://a:1)?maxReconectDelay=5"),
            "failover URI option `maxReconectDelay` is unknown in `failover:(tcp://a:1)?maxReconectDelay=5`"
        );
        assert_eq!(
            msg("failover:(tcp://a:1)?maxReconnectDelay=soon"),
            "failover URI option `maxReconnectDelay` has invalid value `soon` (expected a whole number \
             of milliseconds ≥ 0) in `failover:(tcp://a:1)?maxReconnectDelay=soon`"
        );
        assert_eq!(
            msg("tcp://h:61613?ca_file=/ca.pem"),
            "`tcp://h:61613?ca_file=/ca.pem`: option `ca_file` needs a TLS server (`ssl://` or \
             `stomp+ssl://`) in `tcp://h:61613?ca_file=/ca.pem`"
        );
        assert_eq!(
            msg("ssl://h:1?insecure_skip_verify=maybe"),
            "`ssl://h:1?insecure_skip_verify=maybe`: option `insecure_skip_verify` has invalid \
             value `maybe` (expected true or false) in `ssl://h:1?insecure_skip_verify=maybe`"
        );
        assert_eq!(
            msg("tcp://h:abc"),
            "`tcp://h:abc`: `abc` is not a port number in `tcp://h:abc`"
        );
    }

    #[test]
    fn every_error_kind() {
        use UriErrorKind as K;
        let u = "failover:(tcp://a:1)?";
        assert!(
            matches!(kind(&format!("{u}foo=1")), K::UnknownOption { option } if option == "foo")
        );
        // Case-sensitive beyond the first letter, as in ActiveMQ.
        assert!(matches!(
            kind(&format!("{u}RANDOMIZE=true")),
            K::UnknownOption { .. }
        ));
        assert!(
            matches!(kind(&format!("{u}backup=true")), K::UnsupportedOption { option } if option == "backup")
        );
        assert!(matches!(
            kind(&format!("{u}nested.wireFormat.x=1")),
            K::UnsupportedOption { .. }
        ));
        for bad in [
            "initialReconnectDelay=-1",
            "maxReconnectDelay=1.5",
            "useExponentialBackOff=yes",
            "reconnectDelayExponent=0.5",
            "backOffMultiplier=NaN",
            "maxReconnectAttempts=-2",
            "startupMaxReconnectAttempts=x",
            "randomize=1",
        ] {
            let (name, value) = bad.split_once('=').unwrap();
            assert!(
                matches!(kind(&format!("{u}{bad}")),
                    K::InvalidOptionValue { option, value: v, .. } if option == name && v == value),
                "{bad}"
            );
        }
        assert!(
            matches!(kind(&format!("{u}randomize")), K::OptionWithoutValue { option } if option == "randomize")
        );
        assert!(matches!(
            kind(&format!("{u}randomize=true&randomize=false")),
            K::DuplicateOption { .. }
        ));
        assert!(matches!(
            kind(&format!("{u}backOffMultiplier=2&reconnectDelayExponent=3")),
            K::ConflictingOptions { first, second } if first == "backOffMultiplier" && second == "reconnectDelayExponent"
        ));
        assert!(matches!(
            kind("tcp://h:1?foo=bar"),
            K::UnknownServerOption { hint: "", .. }
        ));
        let e = parse_uri("failover:tcp://a:1?randomize=false").unwrap_err();
        assert!(matches!(&e.kind, K::UnknownServerOption { option, .. } if option == "randomize"));
        assert!(e.to_string().contains("failover options go after"), "{e}");
        assert!(matches!(
            kind("stomp://u:p@h:1?login=v"),
            K::ConflictingCredentials { what: "login", .. }
        ));
        assert!(matches!(
            kind("tcp://h:1?insecure_skip_verify=true"),
            K::TlsOptionWithoutTls { .. }
        ));
        assert!(
            matches!(kind("amqp://h:1"), K::UnsupportedScheme { scheme, .. } if scheme == "amqp")
        );
        assert!(matches!(kind("h:61613"), K::NotAServerUri { .. }));
        assert!(matches!(kind("tcp://:1"), K::MissingHost { .. }));
        assert!(matches!(kind("tcp://"), K::MissingHost { .. }));
        assert!(matches!(kind("tcp://h a:1"), K::InvalidHost { host, .. } if host == "h a"));
        assert!(matches!(kind("tcp://[zz]:1"), K::InvalidHost { .. }));
        assert!(matches!(kind("tcp://h"), K::MissingPort { .. }));
        assert!(matches!(kind("tcp://[::1]"), K::MissingPort { .. }));
        for port in ["0", "65536", "-1", "+5", ""] {
            assert!(
                matches!(kind(&format!("tcp://h:{port}")), K::InvalidPort { port: p, .. } if p == port),
                "{port}"
            );
        }
        assert!(
            matches!(kind("tcp://h:1/queue"), K::UnexpectedPath { path, .. } if path == "/queue")
        );
        assert!(matches!(
            kind("failover:(failover:(tcp://a:1))"),
            K::NestedFailover { .. }
        ));
        assert!(matches!(
            kind("failover:(tcp://a:1"),
            K::UnbalancedParentheses
        ));
        assert!(matches!(
            kind("failover:tcp://a:1)("),
            K::UnbalancedParentheses
        ));
        assert!(matches!(kind("failover:()"), K::NoServers));
        assert!(matches!(kind("failover:"), K::NoServers));
        assert!(matches!(
            kind("failover:(tcp://a:1,,tcp://b:1)"),
            K::EmptyServerEntry
        ));
        assert!(matches!(
            kind("failover:(tcp://a:1)randomize=false"),
            K::TrailingText { .. }
        ));
        assert!(
            matches!(kind("tcp://h:1?login=%zz"), K::BadPercentEncoding { text } if text == "%zz")
        );
    }

    #[test]
    fn errors_mask_passcodes() {
        let e = parse_uri("failover:(stomp://me:hunter2@a:x,tcp://b:1?login=u&passcode=hunter3)")
            .unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("me:***@a:x"), "{shown}");
        assert!(shown.contains("passcode=***"), "{shown}");
        let e = parse_uri("tcp://h:1?passcode=%zz").unwrap_err();
        assert!(!e.to_string().contains("%zz"), "{e}");
        assert_eq!(
            mask_secrets("tcp://h:1?xpasscode=1"),
            "tcp://h:1?xpasscode=1"
        );
        let debug = format!(
            "{:?}",
            ServerAddr::new("h", 1).with_credentials(Some("u".into()), Some("pw".into()))
        );
        assert!(!debug.contains("pw") && debug.contains("***"), "{debug}");
    }
}
