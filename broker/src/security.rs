//! Authentication (users, passwords, groups) and ActiveMQ-style authorization.
//!
//! # Authentication
//!
//! The `[security]` table lists users with a password and the groups they belong to.
//! When no user is configured, every CONNECT is accepted as an anonymous principal whose
//! groups are `anonymous_groups`. When users exist, a CONNECT must carry a matching
//! `login` and `passcode`; a CONNECT without a login is accepted as anonymous only when
//! `allow_anonymous` is set. Passwords are compared in constant time, and an unknown user
//! costs the same comparison as a wrong password, so neither the answer nor its timing
//! tells whether a user exists.
//!
//! # Authorization
//!
//! Authorization follows ActiveMQ's `authorizationPlugin` with a `DefaultAuthorizationMap`:
//!
//! - With no authorization entries at all, every principal may do everything.
//! - Otherwise each entry names one queue pattern, one topic pattern, or all temporary
//!   destinations (`temp = true`), and lists the groups allowed to read (SUBSCRIBE),
//!   write (SEND) and admin (create) them. The groups allowed for an operation on a
//!   destination are the union of the groups of *all* entries that match it (not only the
//!   most specific one). A destination that no entry matches is denied.
//! - Temporary destinations are governed by `temp = true` entries; without any, everyone
//!   may use temporary destinations.
//! - With `allow_advisory_topics` (the default) any principal may read, write and create
//!   topics under `ActiveMQ.Advisory.>`, the system topics network connectors use.
//! - Group names carry no special meaning: `everyone` is only a convention.
//!
//! Patterns use the `*` and `>` wildcards of [`Pattern`]. A wildcard subscription such as
//! `/topic/a.>` is allowed only when a single entry that grants the operation covers every
//! name the subscription could match; entries that merely overlap it do not count.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::destination::{Kind, Pattern, is_wildcard};
use crate::permissions::{PermissionConfig, Permissions};
use crate::toml_config::{InvalidSetting, KeyPath};

/// The topics network connectors use for advisories (consumer and producer announcements).
const ADVISORY_TOPICS: &str = "ActiveMQ.Advisory.>";

/// Longest part of a client-supplied name that is echoed in an error message.
const ECHO_CHARS_MAX: usize = 128;

/// What a principal wants to do with a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// SUBSCRIBE.
    Read,
    /// SEND.
    Write,
    /// Create the destination (first use).
    Admin,
}

impl Operation {
    /// Lower-case name for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Admin => "admin",
        }
    }

    /// The phrase used in denial messages: "read from", "write to", "create".
    fn phrase(self) -> &'static str {
        match self {
            Operation::Read => "read from",
            Operation::Write => "write to",
            Operation::Admin => "create",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated user (or the anonymous user when authentication is off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The login, if one was given.
    pub user: Option<Arc<str>>,
    /// Groups the user belongs to.
    pub groups: Vec<Arc<str>>,
    /// Whether `user` proved who it is (a password or a verified certificate), rather
    /// than being an anonymous session named after the login it gave.
    pub authenticated: bool,
}

impl Principal {
    /// The name used for this principal in messages: the login, or `anonymous`.
    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }

    /// Whether the principal belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }

    /// Whether the principal belongs to at least one of `groups`. Does not allocate.
    fn in_any(&self, groups: &[Arc<str>]) -> bool {
        groups.iter().any(|allowed| self.in_group(allowed))
    }
}

/// Why a CONNECT was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    /// Login missing, unknown, or wrong passcode. Deliberately does not say which. The
    /// payload is the login as given (empty when none was given).
    #[error("{}", bad_credentials_message(.0))]
    BadCredentials(String),
}

/// The text of [`AuthError::BadCredentials`]: one line whatever the login contains.
fn bad_credentials_message(login: &str) -> String {
    if login.is_empty() {
        "authentication failed: a login and passcode are required".to_owned()
    } else {
        format!("authentication failed for user '{}'", OneLine(login))
    }
}

/// The message for a refused operation, on a single line, e.g.
/// `User alice is not authorized to write to /queue/orders.x`.
///
/// Control characters in the user name or destination are replaced by `?` and very long
/// values are shortened, so the result is safe to put in an ERROR frame header.
pub fn denial_message(
    principal: &Principal,
    op: Operation,
    destination: impl fmt::Display,
) -> String {
    let destination = destination.to_string();
    format!(
        "User {} is not authorized to {} {}",
        OneLine(principal.name()),
        op.phrase(),
        OneLine(&destination)
    )
}

/// Displays a client-supplied string on one line: control characters become `?`, and
/// anything past [`ECHO_CHARS_MAX`] characters becomes `…`.
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for (i, c) in self.0.chars().enumerate() {
            if i == ECHO_CHARS_MAX {
                return f.write_char('…');
            }
            f.write_char(if c.is_control() { '?' } else { c })?;
        }
        Ok(())
    }
}

/// One `[[security.users]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The STOMP `login`.
    pub name: String,
    /// The STOMP `passcode`, in clear text (protect the configuration file).
    pub password: String,
    /// Groups the user belongs to; authorization entries name groups, not users.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Client certificates that log in as this user without a password: the common name
    /// (CN) of a certificate verified by a TLS listener's `client_ca_file`, matched
    /// exactly or with `*` standing for any characters (`"*.nodes.example.com"`), as
    /// ActiveMQ's certificate login module maps certificates to users. A CONNECT with a
    /// `login` is checked by password as usual; one without uses the certificate.
    #[serde(default)]
    pub certificate_cns: Vec<String>,
}

impl fmt::Debug for UserConfig {
    // Hand-written so that passwords never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("groups", &self.groups)
            .field("certificate_cns", &self.certificate_cns)
            .finish()
    }
}

/// One `[[security.authorization]]` entry: exactly one of `queue`, `topic` or
/// `temp = true`, and the groups allowed each operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationEntry {
    /// Queue name pattern (`*` and `>` wildcards), without the `/queue/` prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Topic name pattern (`*` and `>` wildcards), without the `/topic/` prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `true`: the entry governs all temporary queues and topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp: Option<bool>,
    /// Groups that may SUBSCRIBE.
    pub read: Vec<String>,
    /// Groups that may SEND.
    pub write: Vec<String>,
    /// Groups that may create the destination (by first use).
    pub admin: Vec<String>,
}

/// The `[security]` part of the broker configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Known users. Empty: no authentication, everyone connects anonymously.
    pub users: Vec<UserConfig>,
    /// The authorization map. Empty: no authorization, everything is allowed.
    pub authorization: Vec<AuthorizationEntry>,
    /// When users exist, whether a CONNECT without a login is accepted as anonymous.
    pub allow_anonymous: bool,
    /// Groups of anonymous principals.
    pub anonymous_groups: Vec<String>,
    /// Whether every principal may read, write and create `ActiveMQ.Advisory.>` topics.
    pub allow_advisory_topics: bool,
    /// RabbitMQ-style per-vhost permissions (`[[security.permissions]]`). Once there is
    /// one, every RabbitMQ-convention vhost is governed by them instead of by
    /// `authorization` (see [`crate::permissions`]).
    pub permissions: Vec<PermissionConfig>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            users: Vec::new(),
            authorization: Vec::new(),
            allow_anonymous: false,
            anonymous_groups: Vec::new(),
            allow_advisory_topics: true,
            permissions: Vec::new(),
        }
    }
}

impl SecurityConfig {
    /// Checks what deserialization cannot: unique non-empty user names, non-empty group
    /// names, and that each authorization entry names exactly one kind of destination with
    /// a well-formed pattern. Paths in the error are relative to the `[security]` table.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, user) in self.users.iter().enumerate() {
            let at = KeyPath::root().key("users").index(i);
            if user.name.is_empty() {
                return Err(InvalidSetting::new(at.key("name"), "user name is empty"));
            }
            if let Some(first) = seen.insert(&user.name, i) {
                return Err(InvalidSetting::new(
                    at.key("name"),
                    format!("user `{}` is already defined by users[{first}]", user.name),
                ));
            }
            check_groups(&user.groups, &at.key("groups"))?;
            for (j, cn) in user.certificate_cns.iter().enumerate() {
                if cn.trim().is_empty() {
                    return Err(InvalidSetting::new(
                        at.key("certificate_cns").index(j),
                        "a certificate common name pattern is empty",
                    ));
                }
            }
        }
        check_groups(
            &self.anonymous_groups,
            &KeyPath::root().key("anonymous_groups"),
        )?;
        for (i, entry) in self.authorization.iter().enumerate() {
            check_entry(entry, &KeyPath::root().key("authorization").index(i))?;
        }
        crate::permissions::validate(&self.permissions)?;
        for (i, entry) in self.permissions.iter().enumerate() {
            if !seen.contains_key(entry.user.as_str()) {
                return Err(InvalidSetting::new(
                    KeyPath::root().key("permissions").index(i).key("user"),
                    format!(
                        "`{}` is not one of [[security.users]] (permissions are given to \
                         users who log in with a password or a certificate)",
                        entry.user
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters. Linear
/// enough for the short patterns of a configuration file: pieces between stars are found
/// left to right.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Group names must be non-empty.
fn check_groups(groups: &[String], at: &KeyPath) -> Result<(), InvalidSetting> {
    match groups.iter().position(String::is_empty) {
        Some(k) => Err(InvalidSetting::new(at.index(k), "group name is empty")),
        None => Ok(()),
    }
}

/// One authorization entry: one target, a usable pattern, non-empty group names.
fn check_entry(entry: &AuthorizationEntry, at: &KeyPath) -> Result<(), InvalidSetting> {
    if entry.temp == Some(false) {
        return Err(InvalidSetting::new(
            at.key("temp"),
            "`temp` can only be `true`; leave it out of queue and topic entries",
        ));
    }
    let targets = [
        entry.queue.is_some().then_some("queue"),
        entry.topic.is_some().then_some("topic"),
        entry.temp.is_some().then_some("temp"),
    ];
    let named: Vec<&str> = targets.into_iter().flatten().collect();
    if named.len() != 1 {
        let found = if named.is_empty() {
            "none".to_owned()
        } else {
            named.join(" and ")
        };
        return Err(InvalidSetting::new(
            at.clone(),
            format!(
                "an authorization entry needs exactly one of `queue`, `topic` or `temp = true` (found {found})"
            ),
        ));
    }
    for (key, pattern) in [("queue", &entry.queue), ("topic", &entry.topic)] {
        if let Some(pattern) = pattern {
            check_pattern(pattern).map_err(|message| InvalidSetting::new(at.key(key), message))?;
        }
    }
    check_groups(&entry.read, &at.key("read"))?;
    check_groups(&entry.write, &at.key("write"))?;
    check_groups(&entry.admin, &at.key("admin"))
}

/// A destination pattern as written in an authorization entry.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("pattern is empty".to_owned());
    }
    for prefix in [
        Kind::Queue.prefix(),
        Kind::Topic.prefix(),
        Kind::TempQueue.prefix(),
        Kind::TempTopic.prefix(),
    ] {
        if pattern.starts_with(prefix) {
            return Err(format!(
                "write the name without the `{prefix}` prefix (the key says which kind it is)"
            ));
        }
    }
    if pattern.contains(',') {
        return Err(format!(
            "`{pattern}`: composite (comma-separated) patterns are not supported; use one entry per pattern"
        ));
    }
    if pattern.split('.').any(str::is_empty) {
        return Err(format!("`{pattern}` has an empty segment"));
    }
    Ok(())
}

/// A configured user, ready for authentication.
#[derive(Clone)]
struct User {
    name: Arc<str>,
    password: Box<[u8]>,
    groups: Vec<Arc<str>>,
}

impl fmt::Debug for User {
    // Hand-written so that passwords never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Groups allowed each operation.
#[derive(Clone, Debug, Default)]
struct Grants {
    read: Vec<Arc<str>>,
    write: Vec<Arc<str>>,
    admin: Vec<Arc<str>>,
}

impl Grants {
    fn of(entry: &AuthorizationEntry, interner: &mut Interner) -> Grants {
        Grants {
            read: interner.all(&entry.read),
            write: interner.all(&entry.write),
            admin: interner.all(&entry.admin),
        }
    }

    fn get(&self, op: Operation) -> &[Arc<str>] {
        match op {
            Operation::Read => &self.read,
            Operation::Write => &self.write,
            Operation::Admin => &self.admin,
        }
    }

    /// Adds `other`'s groups (the union of two entries).
    fn merge(&mut self, other: Grants) {
        for (mine, theirs) in [
            (&mut self.read, other.read),
            (&mut self.write, other.write),
            (&mut self.admin, other.admin),
        ] {
            for group in theirs {
                if !mine.contains(&group) {
                    mine.push(group);
                }
            }
        }
    }
}

/// A queue or topic entry: a compiled pattern and its grants.
#[derive(Clone, Debug)]
struct Rule {
    pattern: Pattern,
    grants: Grants,
}

impl Rule {
    /// Whether the rule applies to every destination `name` stands for.
    fn covers(&self, name: &str, wildcard: bool) -> bool {
        if wildcard {
            pattern_covers(self.pattern.as_str(), name)
        } else {
            self.pattern.matches(name)
        }
    }
}

/// The compiled authorization map.
#[derive(Clone, Debug)]
struct Rules {
    queues: Vec<Rule>,
    topics: Vec<Rule>,
    /// The union of all `temp = true` entries; `None` when there is none.
    temp: Option<Grants>,
    /// `ActiveMQ.Advisory.>` when advisory topics are open to everyone.
    advisory: Option<Pattern>,
}

/// Shares one `Arc<str>` per distinct group name.
#[derive(Default)]
struct Interner {
    groups: BTreeMap<String, Arc<str>>,
}

impl Interner {
    fn one(&mut self, group: &str) -> Arc<str> {
        if let Some(shared) = self.groups.get(group) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(group);
        self.groups.insert(group.to_owned(), Arc::clone(&shared));
        shared
    }

    /// The distinct non-empty groups of `groups`, in order.
    fn all(&mut self, groups: &[String]) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::with_capacity(groups.len());
        for group in groups.iter().filter(|g| !g.is_empty()) {
            let shared = self.one(group);
            if !out.contains(&shared) {
                out.push(shared);
            }
        }
        out
    }
}

/// Compiled users, groups and authorization map.
#[derive(Clone, Debug, Default)]
pub struct Security {
    users: BTreeMap<Box<str>, User>,
    /// Certificate common-name patterns and the user each logs in as, in configuration
    /// order (the first match wins).
    certificate_users: Vec<(Box<str>, Box<str>)>,
    allow_anonymous: bool,
    anonymous_groups: Vec<Arc<str>>,
    /// `None`: no authorization entries, everything is allowed.
    rules: Option<Rules>,
    /// Per-vhost permissions; when not empty they govern every RabbitMQ-convention vhost.
    permissions: Permissions,
}

impl Security {
    /// No users and no authorization map: everyone may do everything.
    pub fn open() -> Security {
        Security::default()
    }

    /// Builds from configuration, compiling every pattern once.
    ///
    /// This never fails; the configuration loader runs [`SecurityConfig::validate`] first.
    /// For a configuration that skipped validation: a user whose name repeats an earlier
    /// one is ignored, an empty group name is ignored, and an authorization entry applies
    /// to every target it names (an entry naming none matches nothing).
    pub fn from_config(config: &SecurityConfig) -> Security {
        let mut interner = Interner::default();
        let mut users = BTreeMap::new();
        let mut certificate_users = Vec::new();
        for user in &config.users {
            if users.contains_key(user.name.as_str()) {
                continue;
            }
            for cn in &user.certificate_cns {
                certificate_users.push((Box::from(cn.as_str()), Box::from(user.name.as_str())));
            }
            users.insert(
                Box::from(user.name.as_str()),
                User {
                    name: Arc::from(user.name.as_str()),
                    password: Box::from(user.password.as_bytes()),
                    groups: interner.all(&user.groups),
                },
            );
        }
        let anonymous_groups = interner.all(&config.anonymous_groups);
        let rules = (!config.authorization.is_empty()).then(|| {
            let mut rules = Rules {
                queues: Vec::new(),
                topics: Vec::new(),
                temp: None,
                advisory: config
                    .allow_advisory_topics
                    .then(|| Pattern::new(ADVISORY_TOPICS)),
            };
            for entry in &config.authorization {
                let grants = Grants::of(entry, &mut interner);
                if let Some(queue) = &entry.queue {
                    rules.queues.push(Rule {
                        pattern: Pattern::new(queue),
                        grants: grants.clone(),
                    });
                }
                if let Some(topic) = &entry.topic {
                    rules.topics.push(Rule {
                        pattern: Pattern::new(topic),
                        grants: grants.clone(),
                    });
                }
                if entry.temp == Some(true) {
                    rules.temp.get_or_insert_with(Grants::default).merge(grants);
                }
            }
            rules
        });
        Security {
            users,
            certificate_users,
            allow_anonymous: config.allow_anonymous,
            anonymous_groups,
            rules,
            permissions: Permissions::from_config(&config.permissions),
        }
    }

    /// The per-vhost permissions (empty when `[[security.permissions]]` has no entry).
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Whether users are configured (so a CONNECT needs credentials unless anonymous
    /// access is allowed).
    pub fn authentication_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether an authorization map is configured.
    pub fn authorization_enabled(&self) -> bool {
        self.rules.is_some()
    }

    /// Checks CONNECT credentials. An empty `login` counts as no login (MCollective
    /// leaves the header out when its user is empty); a missing `passcode` counts as an
    /// empty one.
    pub fn authenticate(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let login = login.filter(|l| !l.is_empty());
        if self.users.is_empty() {
            return Ok(self.anonymous(login));
        }
        let Some(login) = login else {
            return if self.allow_anonymous {
                Ok(self.anonymous(None))
            } else {
                Err(AuthError::BadCredentials(String::new()))
            };
        };
        let given = passcode.unwrap_or("").as_bytes();
        match self.users.get(login) {
            Some(user) if constant_time_eq(&user.password, given) => Ok(Principal {
                user: Some(Arc::clone(&user.name)),
                groups: user.groups.clone(),
                authenticated: true,
            }),
            Some(_) => Err(AuthError::BadCredentials(login.to_owned())),
            None => {
                // Spend the same comparison as for a known user, so that timing does not
                // reveal whether the user exists.
                std::hint::black_box(constant_time_eq(b"no such user", given));
                Err(AuthError::BadCredentials(login.to_owned()))
            }
        }
    }

    /// The user a verified client certificate with common name `cn` logs in as, if any
    /// user's `certificate_cns` matches it.
    pub fn authenticate_certificate(&self, cn: &str) -> Option<Principal> {
        let (_, name) = self
            .certificate_users
            .iter()
            .find(|(pattern, _)| glob_matches(pattern, cn))?;
        let user = self.users.get(name)?;
        Some(Principal {
            user: Some(Arc::clone(&user.name)),
            groups: user.groups.clone(),
            authenticated: true,
        })
    }

    /// An anonymous principal, named after `login` if one was given.
    fn anonymous(&self, login: Option<&str>) -> Principal {
        Principal {
            user: login.map(Arc::from),
            groups: self.anonymous_groups.clone(),
            authenticated: false,
        }
    }

    /// What an existing session's `principal` becomes under these (reloaded) rules: an
    /// authenticated user keeps its name and gets its groups as configured now; a user
    /// no longer configured, and an anonymous session, get the anonymous groups. Nobody
    /// gains an identity they did not prove at CONNECT.
    pub fn refreshed(&self, principal: &Principal) -> Principal {
        let user = principal
            .user
            .as_deref()
            .filter(|_| principal.authenticated)
            .and_then(|name| self.users.get(name));
        match user {
            Some(user) => Principal {
                user: Some(Arc::clone(&user.name)),
                groups: user.groups.clone(),
                authenticated: true,
            },
            None => Principal {
                user: principal.user.clone(),
                groups: self.anonymous_groups.clone(),
                authenticated: false,
            },
        }
    }

    /// Whether `principal` may perform `op` on the destination `kind`/`name`.
    ///
    /// `name` is the destination name without its prefix; it may contain wildcards (a
    /// wildcard subscription), in which case one entry must cover all it can match. This
    /// does not allocate.
    pub fn authorize(&self, principal: &Principal, op: Operation, kind: Kind, name: &str) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        let wildcard = is_wildcard(name);
        let entries = match kind {
            Kind::TempQueue | Kind::TempTopic => {
                return match &rules.temp {
                    None => true,
                    Some(grants) => principal.in_any(grants.get(op)),
                };
            }
            Kind::Queue => &rules.queues,
            Kind::Topic => {
                let advisory = rules.advisory.as_ref().is_some_and(|pattern| {
                    if wildcard {
                        pattern_covers(pattern.as_str(), name)
                    } else {
                        pattern.matches(name)
                    }
                });
                if advisory {
                    return true;
                }
                &rules.topics
            }
        };
        // The union of the groups of all matching entries contains one of the principal's
        // groups exactly when some matching entry grants one of them.
        entries
            .iter()
            .any(|rule| rule.covers(name, wildcard) && principal.in_any(rule.grants.get(op)))
    }
}

/// Whether every name matched by the wildcard name `name` is matched by `pattern`. Both
/// use `*` (one segment) and `>` (zero or more trailing segments). Does not allocate.
fn pattern_covers(pattern: &str, name: &str) -> bool {
    let mut p = pattern.split('.');
    let mut n = name.split('.');
    loop {
        match (p.next(), n.next()) {
            (Some(">"), _) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            // `>` in the name may stand for zero or several segments; `*` is exactly one.
            (Some("*"), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(literal), Some(segment)) => {
                if literal != segment {
                    return false;
                }
            }
        }
    }
}

/// Compares a stored secret with a given value. The time taken depends only on the
/// length of `given`, never on the secret's content or where the two differ.
fn constant_time_eq(secret: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != given.len());
    for (i, g) in given.iter().enumerate() {
        let s = secret.get(i).copied().unwrap_or(0);
        diff |= s ^ g;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(toml_text: &str) -> Security {
        let config: SecurityConfig = toml::from_str(toml_text).unwrap();
        config.validate().unwrap();
        Security::from_config(&config)
    }

    fn principal(user: &str, groups: &[&str]) -> Principal {
        Principal {
            user: Some(Arc::from(user)),
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
            authenticated: true,
        }
    }

    const MCOLLECTIVE: &str = r#"
        [[users]]
        name = "client"
        password = "client-secret"
        groups = ["clients", "everyone"]

        [[users]]
        name = "server"
        password = "server-secret"
        groups = ["servers", "everyone"]

        [[authorization]]
        topic = "mcollective.*.agent"
        read = ["servers"]
        write = ["clients"]
        admin = ["everyone"]

        [[authorization]]
        queue = "mcollective.nodes"
        read = ["servers"]
        write = ["clients"]
        admin = ["everyone"]

        [[authorization]]
        queue = "mcollective.reply.>"
        read = ["clients"]
        write = ["servers"]
        admin = ["everyone"]
    "#;

    #[test]
    fn open_security_allows_everything() {
        let open = Security::open();
        let p = open.authenticate(Some("anyone"), Some("x")).unwrap();
        assert_eq!(p.user.as_deref(), Some("anyone"));
        assert!(open.authorize(&p, Operation::Write, Kind::Queue, "a.b"));
        assert!(!open.authentication_enabled() && !open.authorization_enabled());
    }

    #[test]
    fn union_of_overlapping_entries() {
        let s = security(
            r#"
            [[authorization]]
            queue = "orders.>"
            read = ["readers"]
            [[authorization]]
            queue = "orders.eu"
            read = ["eu"]
            write = ["eu"]
            "#,
        );
        let readers = principal("r", &["readers"]);
        let eu = principal("e", &["eu"]);
        // Both entries match orders.eu: either group may read.
        assert!(s.authorize(&readers, Operation::Read, Kind::Queue, "orders.eu"));
        assert!(s.authorize(&eu, Operation::Read, Kind::Queue, "orders.eu"));
        // Only the wildcard entry matches orders.us.
        assert!(s.authorize(&readers, Operation::Read, Kind::Queue, "orders.us"));
        assert!(!s.authorize(&eu, Operation::Read, Kind::Queue, "orders.us"));
        // Write is granted by the specific entry alone.
        assert!(s.authorize(&eu, Operation::Write, Kind::Queue, "orders.eu"));
        assert!(!s.authorize(&readers, Operation::Write, Kind::Queue, "orders.eu"));
    }

    #[test]
    fn wildcard_entries_and_kinds() {
        let s = security(
            r#"
            [[authorization]]
            topic = "a.*.c"
            read = ["g"]
            [[authorization]]
            queue = ">"
            write = ["g"]
            "#,
        );
        let g = principal("u", &["g"]);
        assert!(s.authorize(&g, Operation::Read, Kind::Topic, "a.b.c"));
        assert!(!s.authorize(&g, Operation::Read, Kind::Topic, "a.b.b.c"));
        // Topic entries do not match queues and vice versa.
        assert!(!s.authorize(&g, Operation::Read, Kind::Queue, "a.b.c"));
        assert!(s.authorize(&g, Operation::Write, Kind::Queue, "any.queue.at.all"));
        assert!(!s.authorize(&g, Operation::Write, Kind::Topic, "any"));
    }

    #[test]
    fn no_matching_entry_is_denied() {
        let s = security(
            r#"
            [[authorization]]
            queue = "known"
            read = ["g"]
            write = ["g"]
            admin = ["g"]
            "#,
        );
        let g = principal("u", &["g"]);
        for op in [Operation::Read, Operation::Write, Operation::Admin] {
            assert!(s.authorize(&g, op, Kind::Queue, "known"));
            assert!(!s.authorize(&g, op, Kind::Queue, "unknown"));
        }
        let nobody = principal("v", &[]);
        assert!(!s.authorize(&nobody, Operation::Read, Kind::Queue, "known"));
    }

    #[test]
    fn wildcard_subscriptions_need_a_covering_entry() {
        let s = security(
            r#"
            [[authorization]]
            topic = "a.*"
            read = ["g"]
            [[authorization]]
            topic = "b.>"
            read = ["g"]
            "#,
        );
        let g = principal("u", &["g"]);
        assert!(s.authorize(&g, Operation::Read, Kind::Topic, "a.*"));
        // `a.>` also matches `a` and `a.x.y`, which `a.*` does not allow.
        assert!(!s.authorize(&g, Operation::Read, Kind::Topic, "a.>"));
        assert!(s.authorize(&g, Operation::Read, Kind::Topic, "b.>"));
        assert!(s.authorize(&g, Operation::Read, Kind::Topic, "b.*.x"));
        assert!(!s.authorize(&g, Operation::Read, Kind::Topic, ">"));
        assert!(!s.authorize(&g, Operation::Read, Kind::Topic, "*.x"));
    }

    #[test]
    fn pattern_coverage() {
        assert!(pattern_covers(">", ">"));
        assert!(pattern_covers("a.>", "a.>"));
        assert!(pattern_covers("a.>", "a.*.c"));
        assert!(pattern_covers("a.*.>", "a.*.>"));
        assert!(!pattern_covers("a.*.>", "a.>"));
        assert!(pattern_covers("*.*", "x.*"));
        assert!(!pattern_covers("*.*", "x.>"));
        assert!(!pattern_covers("a.b", "a.*"));
        assert!(!pattern_covers("a", "a.*"));
    }

    #[test]
    fn temp_destinations_without_entry_are_open() {
        let s = security(
            r#"
            [[authorization]]
            queue = "q"
            read = ["g"]
            "#,
        );
        let nobody = principal("v", &[]);
        for kind in [Kind::TempQueue, Kind::TempTopic] {
            for op in [Operation::Read, Operation::Write, Operation::Admin] {
                assert!(s.authorize(&nobody, op, kind, "ID:conn-1.1"));
            }
        }
    }

    #[test]
    fn temp_destinations_with_entries_use_their_union() {
        let s = security(
            r#"
            [[authorization]]
            temp = true
            read = ["a"]
            write = ["a"]
            [[authorization]]
            temp = true
            read = ["b"]
            admin = ["b"]
            "#,
        );
        let a = principal("a", &["a"]);
        let b = principal("b", &["b"]);
        assert!(s.authorize(&a, Operation::Read, Kind::TempQueue, "x"));
        assert!(s.authorize(&b, Operation::Read, Kind::TempTopic, "x"));
        assert!(s.authorize(&a, Operation::Write, Kind::TempTopic, "x"));
        assert!(!s.authorize(&b, Operation::Write, Kind::TempQueue, "x"));
        assert!(s.authorize(&b, Operation::Admin, Kind::TempQueue, "x"));
        assert!(!s.authorize(&a, Operation::Admin, Kind::TempQueue, "x"));
        // Temp entries do not govern ordinary destinations.
        assert!(!s.authorize(&a, Operation::Read, Kind::Queue, "x"));
    }

    #[test]
    fn advisory_topics_are_open_unless_disabled() {
        let entries = r#"
            [[authorization]]
            topic = "app.>"
            read = ["g"]
        "#;
        let nobody = principal("v", &[]);
        let s = security(entries);
        for op in [Operation::Read, Operation::Write, Operation::Admin] {
            assert!(s.authorize(
                &nobody,
                op,
                Kind::Topic,
                "ActiveMQ.Advisory.Consumer.Queue.x"
            ));
        }
        assert!(s.authorize(&nobody, Operation::Read, Kind::Topic, "ActiveMQ.Advisory.>"));
        // Only topics: an advisory-named queue is an ordinary queue.
        assert!(!s.authorize(&nobody, Operation::Read, Kind::Queue, "ActiveMQ.Advisory.x"));
        assert!(!s.authorize(&nobody, Operation::Read, Kind::Topic, "ActiveMQ.Other"));
        let closed = security(&format!("allow_advisory_topics = false\n{entries}"));
        assert!(!closed.authorize(
            &nobody,
            Operation::Read,
            Kind::Topic,
            "ActiveMQ.Advisory.Consumer.Queue.x"
        ));
    }

    #[test]
    fn no_users_means_anonymous_with_anonymous_groups() {
        let s = security("anonymous_groups = [\"guests\"]");
        let p = s.authenticate(Some("bob"), None).unwrap();
        assert_eq!(p.user.as_deref(), Some("bob"));
        assert!(p.in_group("guests"));
        let p = s.authenticate(None, None).unwrap();
        assert_eq!(p.user, None);
        assert_eq!(p.name(), "anonymous");
        assert!(!s.authentication_enabled());
    }

    #[test]
    fn users_require_credentials_unless_anonymous_allowed() {
        let users = r#"
            anonymous_groups = ["guests"]
            [[users]]
            name = "alice"
            password = "wonderland"
            groups = ["staff"]
        "#;
        let s = security(users);
        assert!(s.authentication_enabled());
        let p = s.authenticate(Some("alice"), Some("wonderland")).unwrap();
        assert_eq!((p.user.as_deref(), p.groups.len()), (Some("alice"), 1));
        assert!(p.in_group("staff") && !p.in_group("guests"));
        let wrong = s
            .authenticate(Some("alice"), Some("wonderlan"))
            .unwrap_err();
        let unknown = s
            .authenticate(Some("mallory"), Some("wonderland"))
            .unwrap_err();
        assert_eq!(wrong, AuthError::BadCredentials("alice".into()));
        assert_eq!(unknown, AuthError::BadCredentials("mallory".into()));
        // The two messages have the same shape: neither says whether the user exists.
        assert_eq!(
            wrong.to_string().replace("alice", "X"),
            unknown.to_string().replace("mallory", "X")
        );
        assert!(s.authenticate(Some("alice"), None).is_err());
        assert!(s.authenticate(None, None).is_err());
        assert!(s.authenticate(Some(""), Some("wonderland")).is_err());

        let s = security(&format!("allow_anonymous = true\n{users}"));
        let p = s.authenticate(None, None).unwrap();
        assert_eq!(p.user, None);
        assert!(p.in_group("guests"));
        // A login that is given must still be right.
        assert!(s.authenticate(Some("alice"), Some("nope")).is_err());
    }

    #[test]
    fn auth_error_messages_are_one_line() {
        let e = AuthError::BadCredentials("a\nb".into());
        assert_eq!(e.to_string(), "authentication failed for user 'a?b'");
        let e = AuthError::BadCredentials(String::new());
        assert!(!e.to_string().contains('\n'));
        let long = "x".repeat(1000);
        assert!(AuthError::BadCredentials(long).to_string().chars().count() < 200);
    }

    #[test]
    fn constant_time_compare_is_correct() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
        // A longer guess whose extra bytes are zero must not match.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn mcollective_layout_behaves_as_intended() {
        let s = security(MCOLLECTIVE);
        let client = s
            .authenticate(Some("client"), Some("client-secret"))
            .unwrap();
        let server = s
            .authenticate(Some("server"), Some("server-secret"))
            .unwrap();
        let agent = "mcollective.discovery.agent";
        let reply = "mcollective.reply.client.example_1234.7";

        // Broadcast requests: clients write, servers read.
        assert!(s.authorize(&client, Operation::Write, Kind::Topic, agent));
        assert!(!s.authorize(&client, Operation::Read, Kind::Topic, agent));
        assert!(s.authorize(&server, Operation::Read, Kind::Topic, agent));
        assert!(!s.authorize(&server, Operation::Write, Kind::Topic, agent));
        // Direct requests: clients write, servers read.
        assert!(s.authorize(&client, Operation::Write, Kind::Queue, "mcollective.nodes"));
        assert!(s.authorize(&server, Operation::Read, Kind::Queue, "mcollective.nodes"));
        assert!(!s.authorize(&server, Operation::Write, Kind::Queue, "mcollective.nodes"));
        assert!(!s.authorize(&client, Operation::Read, Kind::Queue, "mcollective.nodes"));
        // Replies: servers write, clients read.
        assert!(s.authorize(&server, Operation::Write, Kind::Queue, reply));
        assert!(s.authorize(&client, Operation::Read, Kind::Queue, reply));
        assert!(!s.authorize(&client, Operation::Write, Kind::Queue, reply));
        assert!(!s.authorize(&server, Operation::Read, Kind::Queue, reply));
        // Everyone may create all of them.
        for (kind, name) in [
            (Kind::Topic, agent),
            (Kind::Queue, "mcollective.nodes"),
            (Kind::Queue, reply),
        ] {
            assert!(s.authorize(&client, Operation::Admin, kind, name));
            assert!(s.authorize(&server, Operation::Admin, kind, name));
        }
        // Other collectives and destinations are off limits.
        assert!(!s.authorize(
            &client,
            Operation::Write,
            Kind::Topic,
            "other.discovery.agent"
        ));
        assert!(!s.authorize(&client, Operation::Admin, Kind::Queue, "orders"));
    }

    #[test]
    fn denial_message_is_one_line() {
        let alice = principal("alice", &[]);
        assert_eq!(
            denial_message(&alice, Operation::Write, "/queue/orders.x"),
            "User alice is not authorized to write to /queue/orders.x"
        );
        let anonymous = Principal {
            user: None,
            groups: Vec::new(),
            authenticated: false,
        };
        assert_eq!(
            denial_message(&anonymous, Operation::Read, "/topic/t"),
            "User anonymous is not authorized to read from /topic/t"
        );
        let evil = principal("a\r\nb", &[]);
        assert_eq!(
            denial_message(&evil, Operation::Admin, "/queue/q\n"),
            "User a??b is not authorized to create /queue/q?"
        );
    }

    #[test]
    fn validation_names_the_offending_key() {
        let check = |text: &str| {
            let config: SecurityConfig = toml::from_str(text).unwrap();
            config.validate().map_err(|e| e.to_string())
        };
        assert_eq!(
            check(
                "[[users]]\nname = \"a\"\npassword = \"\"\n[[users]]\nname = \"a\"\npassword = \"\"\n"
            ),
            Err("users[1].name: user `a` is already defined by users[0]".into())
        );
        assert_eq!(
            check("[[users]]\nname = \"\"\npassword = \"p\"\n"),
            Err("users[0].name: user name is empty".into())
        );
        assert_eq!(
            check("[[users]]\nname = \"a\"\npassword = \"p\"\ngroups = [\"x\", \"\"]\n"),
            Err("users[0].groups[1]: group name is empty".into())
        );
        assert!(
            check("[[authorization]]\nread = [\"g\"]\n")
                .unwrap_err()
                .starts_with("authorization[0]: an authorization entry needs exactly one")
        );
        assert!(
            check("[[authorization]]\nqueue = \"q\"\ntopic = \"t\"\n")
                .unwrap_err()
                .contains("(found queue and topic)")
        );
        assert!(
            check("[[authorization]]\ntemp = false\n")
                .unwrap_err()
                .starts_with("authorization[0].temp:")
        );
        assert!(
            check("[[authorization]]\ntopic = \"/topic/a\"\n")
                .unwrap_err()
                .starts_with("authorization[0].topic:")
        );
        assert!(check("[[authorization]]\nqueue = \"a..b\"\n").is_err());
        assert!(check("[[authorization]]\nqueue = \"\"\n").is_err());
        assert!(check("[[authorization]]\nqueue = \"a,b\"\n").is_err());
        assert_eq!(
            check("[[authorization]]\nqueue = \"q\"\nadmin = [\"\"]\n"),
            Err("authorization[0].admin[0]: group name is empty".into())
        );
        assert_eq!(
            check("anonymous_groups = [\"\"]"),
            Err("anonymous_groups[0]: group name is empty".into())
        );
        assert_eq!(check(MCOLLECTIVE), Ok(()));
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let config: SecurityConfig = toml::from_str(MCOLLECTIVE).unwrap();
        let s = Security::from_config(&config);
        assert!(!format!("{config:?}").contains("secret"));
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn certificate_common_names_log_in_as_their_user() {
        let config: SecurityConfig = toml::from_str(
            r#"
            [[users]]
            name = "server"
            password = "s"
            groups = ["servers"]
            certificate_cns = ["*.nodes.example.com", "broker-*-bridge"]
            [[users]]
            name = "client"
            password = "c"
            certificate_cns = ["mco-admin"]
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let s = Security::from_config(&config);
        let p = s
            .authenticate_certificate("web1.nodes.example.com")
            .unwrap();
        assert_eq!(p.user.as_deref(), Some("server"));
        assert_eq!(p.groups, vec![Arc::<str>::from("servers")]);
        assert_eq!(
            s.authenticate_certificate("broker-2-bridge")
                .unwrap()
                .user
                .as_deref(),
            Some("server")
        );
        assert_eq!(
            s.authenticate_certificate("mco-admin")
                .unwrap()
                .user
                .as_deref(),
            Some("client")
        );
        for no in [
            "mco-admin2",
            "nodes.example.com",
            "web1.nodes.example.org",
            "",
        ] {
            assert!(s.authenticate_certificate(no).is_none(), "{no}");
        }
    }

    #[test]
    fn globs_match_like_shell_stars() {
        for (p, t, want) in [
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "acb", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_matches(p, t), want, "{p} vs {t}");
        }
    }
}
