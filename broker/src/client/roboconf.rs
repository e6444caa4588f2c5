//! Roboconf's messaging configuration: `net.roboconf.messaging.rabbitmq.cfg`.
//!
//! Roboconf's Deployment Manager and agents find their RabbitMQ server in a Java
//! properties file that Karaf watches and applies at run time:
//!
//! ```text
//! net.roboconf.messaging.type = rabbitmq
//! net.roboconf.messaging.rabbitmq.server.ip = http://10.0.0.5:5672
//! net.roboconf.messaging.rabbitmq.server.username = roboconf
//! net.roboconf.messaging.rabbitmq.server.password = secret
//! ```
//!
//! Older agents' user data used `message-server-ip`, `message-server-username` and
//! `message-server-password`; both spellings are read (the dotted one wins). Roboconf's
//! rules, which [`RoboconfMessaging::from_properties`] follows:
//!
//! - the address may carry a scheme (`http://`, which Roboconf's installers write) and a
//!   port: the last `:<digits>` is the port, and what remains is the host (Roboconf keeps
//!   the scheme in it; a STOMP client cannot, so it is dropped here);
//! - a missing or empty address (or the word `null`) is `localhost`, a missing user name or
//!   password is `guest`, RabbitMQ's defaults;
//! - without a port, the client's own default applies. Roboconf speaks AMQP (5672);
//!   Stampede's clients speak STOMP under RabbitMQ's conventions, so a port given here is
//!   taken as the broker's STOMP port.
//!
//! [`Watched`] keeps the configuration in force and says when a new text of the file
//! changes what a client must do (reconnect elsewhere, or with other credentials), so a
//! workload can apply it without restarting. Nothing here reads files or clocks.

use std::collections::BTreeMap;

/// The file's name in Karaf's `etc/`.
pub const FILE_NAME: &str = "net.roboconf.messaging.rabbitmq.cfg";

const KEY_TYPE: &str = "net.roboconf.messaging.type";
const KEY_IP: &str = "net.roboconf.messaging.rabbitmq.server.ip";
const KEY_USER: &str = "net.roboconf.messaging.rabbitmq.server.username";
const KEY_PASSWORD: &str = "net.roboconf.messaging.rabbitmq.server.password";
const OLD_KEY_IP: &str = "message-server-ip";
const OLD_KEY_USER: &str = "message-server-username";
const OLD_KEY_PASSWORD: &str = "message-server-password";

/// What a file can get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoboconfError {
    /// The port after the last `:` does not fit a TCP port.
    #[error("{file}:{line}: {key}: port {port} is not a TCP port (1-65535)")]
    BadPort {
        /// The file, as named by the caller.
        file: String,
        /// 1-based line of the key.
        line: usize,
        /// The key.
        key: String,
        /// The digits.
        port: String,
    },
    /// `net.roboconf.messaging.type` names another messaging than RabbitMQ.
    #[error("{file}:{line}: {key}: messaging type {value:?} is not rabbitmq")]
    NotRabbitmq {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// The type given.
        value: String,
    },
}

/// One property: its value and the line it started on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The value, unescaped.
    pub value: String,
    /// 1-based line where the key was.
    pub line: usize,
}

/// Reads Java properties text (`java.util.Properties#load`'s rules): `key=value`,
/// `key:value` or `key value`, `#` and `!` comments, a trailing backslash continues the
/// line, escapes `\t \n \r \f \uXXXX` and any other escaped character stands for itself.
/// A later key replaces an earlier one.
pub fn parse_properties(text: &str) -> BTreeMap<String, Property> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let first = raw.trim_start_matches([' ', '\t', '\u{c}']);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continued lines: an odd number of trailing backslashes continues.
        let mut logical = first.to_owned();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches([' ', '\t', '\u{c}'])),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.insert(
            unescape(key),
            Property {
                value: unescape(value),
                line: i + 1,
            },
        );
    }
    out
}

fn ends_with_continuation(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace; the separator's surrounding
/// whitespace (and one `=`/`:` after whitespace) goes.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let i = i.min(bytes.len());
    let key = &line[..i];
    let mut rest = line[i..].trim_start_matches([' ', '\t', '\u{c}']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\u{c}']);
    }
    (key, rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    // Java refuses a malformed \u; keep the text as written.
                    _ => out.push_str("\\u"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Where a Roboconf client connects, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoboconfMessaging {
    /// Host name or address, without scheme or port.
    pub host: String,
    /// The port, when the address gave one.
    pub port: Option<u16>,
    /// RabbitMQ user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl Default for RoboconfMessaging {
    /// RabbitMQ's defaults, what Roboconf uses for an empty file.
    fn default() -> Self {
        RoboconfMessaging {
            host: "localhost".to_owned(),
            port: None,
            username: "guest".to_owned(),
            password: "guest".to_owned(),
        }
    }
}

impl RoboconfMessaging {
    /// Reads the configuration from the file's text (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<RoboconfMessaging, RoboconfError> {
        Self::from_properties(&parse_properties(text), file)
    }

    /// Reads the configuration from parsed properties.
    pub fn from_properties(
        props: &BTreeMap<String, Property>,
        file: &str,
    ) -> Result<RoboconfMessaging, RoboconfError> {
        let get = |new: &str, old: &str| -> Option<(&str, &Property)> {
            props
                .get_key_value(new)
                .or_else(|| props.get_key_value(old))
                .map(|(k, p)| (k.as_str(), p))
                .filter(|(_, p)| {
                    let v = p.value.trim();
                    !v.is_empty() && v != "null"
                })
        };
        if let Some((key, p)) = props.get_key_value(KEY_TYPE)
            && !p.value.trim().is_empty()
            && !p.value.trim().eq_ignore_ascii_case("rabbitmq")
        {
            return Err(RoboconfError::NotRabbitmq {
                file: file.to_owned(),
                line: p.line,
                key: key.clone(),
                value: p.value.trim().to_owned(),
            });
        }
        let mut m = RoboconfMessaging::default();
        if let Some((key, p)) = get(KEY_IP, OLD_KEY_IP) {
            let (host, port) = split_address(p.value.trim());
            m.host = host;
            m.port = match port {
                None => None,
                Some(digits) => Some(digits.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(
                    || RoboconfError::BadPort {
                        file: file.to_owned(),
                        line: p.line,
                        key: key.to_owned(),
                        port: digits.to_owned(),
                    },
                )?),
            };
            if m.host.is_empty() {
                m.host = "localhost".to_owned();
            }
        }
        if let Some((_, p)) = get(KEY_USER, OLD_KEY_USER) {
            m.username = p.value.trim().to_owned();
        }
        if let Some((_, p)) = get(KEY_PASSWORD, OLD_KEY_PASSWORD) {
            m.password = p.value.clone();
        }
        Ok(m)
    }

    /// `host:port`, with `default_port` when the file gave none.
    pub fn address(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// Roboconf's `findUrlAndPort`: the last `:<digits>` is the port and is removed; then a
/// `scheme://` prefix and a trailing `/path` are dropped (a STOMP client needs the bare
/// host).
fn split_address(raw: &str) -> (String, Option<&str>) {
    let bytes = raw.as_bytes();
    let mut port = None;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        if bytes[i] == b':' {
            let digits = &raw[i + 1..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if end > 0 {
                port = Some((i, &digits[..end]));
                break;
            }
        }
    }
    let host = match port {
        Some((at, digits)) => format!("{}{}", &raw[..at], &raw[at + 1 + digits.len()..]),
        None => raw.to_owned(),
    };
    let host = host.split_once("://").map_or(host.as_str(), |(_, h)| h);
    let host = host.split('/').next().unwrap_or_default();
    (host.to_owned(), port.map(|(_, d)| d))
}

/// What a new text of the file means for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing a client uses changed.
    None,
    /// Connect to the new server, or with the new credentials (the new configuration).
    Reconnect(RoboconfMessaging),
    /// The new text is wrong; the configuration in force stays.
    Rejected(RoboconfError),
}

/// The configuration in force, replaced by each good new text of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    file: String,
    current: RoboconfMessaging,
    text: String,
}

impl Watched {
    /// Starts from the file's first text.
    pub fn new(text: &str, file: &str) -> Result<Watched, RoboconfError> {
        Ok(Watched {
            file: file.to_owned(),
            current: RoboconfMessaging::parse(text, file)?,
            text: text.to_owned(),
        })
    }

    /// The configuration in force.
    pub fn current(&self) -> &RoboconfMessaging {
        &self.current
    }

    /// Takes the file's text as read now: an unchanged text changes nothing, a bad one is
    /// rejected whole (the old configuration stays), a good one that changes the server or
    /// the credentials comes into force and asks for a reconnection.
    pub fn update(&mut self, text: &str) -> Change {
        if text == self.text {
            return Change::None;
        }
        match RoboconfMessaging::parse(text, &self.file) {
            Err(e) => Change::Rejected(e),
            Ok(next) => {
                self.text = text.to_owned();
                if next == self.current {
                    Change::None
                } else {
                    self.current = next.clone();
                    Change::Reconnect(next)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_java_rules() {
        let p = parse_properties(
            "# comment\n! also\n  a = 1\nb:2\nc 3\nd=x\\\n   y\ne=tab\\tand\\u0041\\=\nf\\ g = h\na = 4\n",
        );
        let v = |k: &str| p.get(k).map(|p| p.value.as_str());
        assert_eq!(v("a"), Some("4"));
        assert_eq!(p["a"].line, 10);
        assert_eq!(v("b"), Some("2"));
        assert_eq!(v("c"), Some("3"));
        assert_eq!(v("d"), Some("xy"));
        assert_eq!(v("e"), Some("tab\tandA="));
        assert_eq!(v("f g"), Some("h"));
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn addresses_lose_scheme_and_port_as_roboconf_reads_them() {
        let m = RoboconfMessaging::parse(
            "net.roboconf.messaging.rabbitmq.server.ip = http://10.0.0.5:61613\n\
             net.roboconf.messaging.rabbitmq.server.username = roboconf\n\
             net.roboconf.messaging.rabbitmq.server.password = rob:op;4\n",
            "f.cfg",
        )
        .unwrap();
        assert_eq!(m.host, "10.0.0.5");
        assert_eq!(m.port, Some(61613));
        assert_eq!(
            (m.username.as_str(), m.password.as_str()),
            ("roboconf", "rob:op;4")
        );
        assert_eq!(m.address(1), "10.0.0.5:61613");
        let m = RoboconfMessaging::parse("message-server-ip = rabbit-server\n", "f").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("rabbit-server", None));
        assert_eq!(m.address(61613), "rabbit-server:61613");
        assert_eq!(split_address("http://h:80/x"), ("h".to_owned(), Some("80")));
    }

    #[test]
    fn missing_and_null_values_are_rabbitmqs_defaults() {
        for text in [
            "",
            "net.roboconf.messaging.rabbitmq.server.ip = null\n",
            "net.roboconf.messaging.rabbitmq.server.ip =\nmessage-server-username=\n",
        ] {
            assert_eq!(
                RoboconfMessaging::parse(text, "f").unwrap(),
                RoboconfMessaging::default(),
                "{text:?}"
            );
        }
        assert_eq!(
            RoboconfMessaging::default().address(61613),
            "localhost:61613"
        );
    }

    #[test]
    fn bad_files_name_file_line_and_key() {
        let e = RoboconfMessaging::parse(
            "\nnet.roboconf.messaging.rabbitmq.server.ip = h:99999\n",
            "etc/x.cfg",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "etc/x.cfg:2: net.roboconf.messaging.rabbitmq.server.ip: port 99999 is not a TCP port (1-65535)"
        );
        let e = RoboconfMessaging::parse("net.roboconf.messaging.type=http\n", "x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x:1: net.roboconf.messaging.type:"),
            "{e}"
        );
    }

    #[test]
    fn a_watched_file_reconnects_on_a_real_change_and_keeps_the_old_one_on_a_bad_one() {
        let ip = "net.roboconf.messaging.rabbitmq.server.ip";
        let mut w = Watched::new(&format!("{ip} = a:1\n"), "f").unwrap();
        // Same settings, other text (a comment): nothing to do.
        assert_eq!(w.update(&format!("# edited\n{ip} = a:1\n")), Change::None);
        match w.update(&format!("{ip} = b:2\n")) {
            Change::Reconnect(m) => assert_eq!(m.address(0), "b:2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            w.update(&format!("{ip} = c:0\n")),
            Change::Rejected(RoboconfError::BadPort { .. })
        ));
        assert_eq!(w.current().address(0), "b:2");
        assert_eq!(w.update(&format!("{ip} = b:2\n")), Change::None);
    }
}
