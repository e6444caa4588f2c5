//! Per-vhost permissions in RabbitMQ's model: for each user and vhost, three regular
//! expressions say which resources (exchanges and queues) the user may *configure*
//! (declare), *write* (publish to an exchange, bind a queue) and *read* (consume from a
//! queue, bind from an exchange).
//!
//! Patterns are matched as RabbitMQ matches them: unanchored (`app` allows `myapp`;
//! write `^app$` for one name), on the resource's name; the empty pattern matches no
//! resource at all, and `.*` every one. A user with no entry for a vhost may not
//! connect to it.
//!
//! The configuration is `[[security.permissions]]` (see [`PermissionConfig`]); the
//! compiled form, [`Permissions`], is part of [`crate::security::Security`], so a reload
//! replaces it with the rest of the security rules.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::toml_config::{InvalidSetting, KeyPath};

/// One `[[security.permissions]]` entry: what `user` may do in `vhost`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PermissionConfig {
    /// A user of `[[security.users]]`.
    pub user: String,
    /// A RabbitMQ-convention vhost of `[[core.vhosts]]`.
    pub vhost: String,
    /// Resources the user may declare.
    pub configure: String,
    /// Resources the user may publish to or bind.
    pub write: String,
    /// Resources the user may consume from or bind from.
    pub read: String,
}

/// One of RabbitMQ's three permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Declaring a resource.
    Configure,
    /// Publishing to an exchange, binding a queue.
    Write,
    /// Consuming from a queue, binding from an exchange.
    Read,
}

impl Access {
    /// The word RabbitMQ uses in its refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// What kind of resource a permission is checked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    /// An exchange (`amq.default` is the default exchange, which `/queue/` sends use).
    Exchange,
    /// A queue.
    Queue,
}

impl ResourceKind {
    /// The word RabbitMQ uses in its refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// A resource a frame touches, with the permission it needs on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// The permission.
    pub access: Access,
    /// Exchange or queue.
    pub kind: ResourceKind,
    /// The resource's name, as RabbitMQ names it.
    pub name: String,
}

impl Need {
    /// A need for `access` on the resource `kind`/`name`.
    pub fn new(access: Access, kind: ResourceKind, name: impl Into<String>) -> Need {
        Need {
            access,
            kind,
            name: name.into(),
        }
    }
}

/// A refused permission, displayed as RabbitMQ words it: `ACCESS_REFUSED - write access
/// to exchange 'app' in vhost '/' refused for user 'bob'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What was needed.
    pub need: Need,
    /// In which vhost.
    pub vhost: String,
    /// By whom.
    pub user: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ACCESS_REFUSED - {} access to {} '{}' in vhost '{}' refused for user '{}'",
            self.need.access.as_str(),
            self.need.kind.as_str(),
            self.need.name,
            self.vhost,
            self.user
        )
    }
}

/// The three compiled patterns of one entry; `None` is the empty pattern, which matches
/// nothing.
#[derive(Clone, Debug)]
struct Grant {
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

impl Grant {
    fn allows(&self, access: Access, name: &str) -> bool {
        let pattern = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        pattern.as_ref().is_some_and(|p| p.is_match(name))
    }
}

/// Compiled `[[security.permissions]]`, by user and vhost.
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    grants: BTreeMap<(String, String), Grant>,
}

/// Compiles one pattern; the empty one is `None` (nothing matches it).
fn compile(pattern: &str) -> Result<Option<Regex>, regex::Error> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(pattern).map(Some)
}

impl Permissions {
    /// Compiles entries checked by [`validate`]. For entries that skipped validation, a
    /// pattern that does not compile matches nothing, and of two entries for the same
    /// user and vhost the first counts.
    pub fn from_config(entries: &[PermissionConfig]) -> Permissions {
        let mut grants = BTreeMap::new();
        for e in entries {
            let key = (e.user.clone(), e.vhost.clone());
            if grants.contains_key(&key) {
                continue;
            }
            grants.insert(
                key,
                Grant {
                    configure: compile(&e.configure).ok().flatten(),
                    write: compile(&e.write).ok().flatten(),
                    read: compile(&e.read).ok().flatten(),
                },
            );
        }
        Permissions { grants }
    }

    /// Whether there are no entries (then permissions govern nothing).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Whether `user` has an entry for `vhost` (and so may connect to it).
    pub fn may_enter(&self, user: &str, vhost: &str) -> bool {
        self.grants
            .contains_key(&(user.to_owned(), vhost.to_owned()))
    }

    /// Checks every need in order, and refuses with the first one not granted.
    pub fn check(&self, user: &str, vhost: &str, needs: &[Need]) -> Result<(), Refusal> {
        let grant = self.grants.get(&(user.to_owned(), vhost.to_owned()));
        for need in needs {
            if !grant.is_some_and(|g| g.allows(need.access, &need.name)) {
                return Err(Refusal {
                    need: need.clone(),
                    vhost: vhost.to_owned(),
                    user: user.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Checks entries on their own: user and vhost named, one entry per user and vhost, and
/// patterns that compile. Whether the user and the vhost exist is checked by the callers
/// that know them ([`crate::security::SecurityConfig::validate`] and
/// [`crate::config::BrokerConfig::validate`]). Paths are relative to `[security]`.
pub fn validate(entries: &[PermissionConfig]) -> Result<(), InvalidSetting> {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let at = || KeyPath::root().key("permissions").index(i);
        if e.user.is_empty() {
            return Err(InvalidSetting::new(at().key("user"), "the user is empty"));
        }
        if e.vhost.is_empty() {
            return Err(InvalidSetting::new(at().key("vhost"), "the vhost is empty"));
        }
        if let Some(first) = seen.insert((&e.user, &e.vhost), i) {
            return Err(InvalidSetting::new(
                at().key("vhost"),
                format!(
                    "user `{}` already has permissions in vhost `{}` (permissions[{first}])",
                    e.user, e.vhost
                ),
            ));
        }
        for (key, pattern) in [
            ("configure", &e.configure),
            ("write", &e.write),
            ("read", &e.read),
        ] {
            if let Err(err) = compile(pattern) {
                let first_line = err.to_string();
                let reason = match &err {
                    regex::Error::Syntax(text) => text
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error:"))
                        .map(|l| l.trim_start_matches("error:").trim().to_owned())
                        .unwrap_or(first_line),
                    _ => first_line,
                };
                return Err(InvalidSetting::new(
                    at().key(key),
                    format!("`{pattern}` is not a regular expression: {reason}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, vhost: &str, c: &str, w: &str, r: &str) -> PermissionConfig {
        PermissionConfig {
            user: user.into(),
            vhost: vhost.into(),
            configure: c.into(),
            write: w.into(),
            read: r.into(),
        }
    }

    fn write_exchange(name: &str) -> Need {
        Need::new(Access::Write, ResourceKind::Exchange, name)
    }

    #[test]
    fn patterns_match_unanchored_and_empty_matches_nothing() {
        let p = Permissions::from_config(&[
            entry("bob", "/", "", "app", "^q$"),
            entry("root", "/", ".*", ".*", ".*"),
        ]);
        // Unanchored: `app` is found inside `myapp.x`.
        assert!(p.check("bob", "/", &[write_exchange("myapp.x")]).is_ok());
        assert!(p.check("bob", "/", &[write_exchange("other")]).is_err());
        let read = |n: &str| Need::new(Access::Read, ResourceKind::Queue, n);
        assert!(p.check("bob", "/", &[read("q")]).is_ok());
        assert!(p.check("bob", "/", &[read("qq")]).is_err());
        // The empty pattern refuses even the empty name.
        let configure = |n: &str| Need::new(Access::Configure, ResourceKind::Queue, n);
        assert!(p.check("bob", "/", &[configure("")]).is_err());
        assert!(p.check("bob", "/", &[configure("q")]).is_err());
        assert!(p.check("root", "/", &[configure("anything")]).is_ok());
    }

    #[test]
    fn entries_are_per_user_and_vhost() {
        let p = Permissions::from_config(&[entry("bob", "/a", ".*", ".*", ".*")]);
        assert!(p.may_enter("bob", "/a"));
        assert!(!p.may_enter("bob", "/b"));
        assert!(!p.may_enter("alice", "/a"));
        assert!(p.check("bob", "/b", &[write_exchange("x")]).is_err());
        assert!(!p.is_empty());
        assert!(Permissions::default().is_empty());
    }

    #[test]
    fn the_first_refused_need_is_reported_as_rabbitmq_words_it() {
        let p = Permissions::from_config(&[entry("bob", "/", "^q$", "", ".*")]);
        let needs = [
            Need::new(Access::Configure, ResourceKind::Queue, "q"),
            write_exchange("amq.default"),
            Need::new(Access::Read, ResourceKind::Queue, "q"),
        ];
        let refusal = p.check("bob", "/", &needs).unwrap_err();
        assert_eq!(refusal.need, needs[1]);
        assert_eq!(
            refusal.to_string(),
            "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for \
             user 'bob'"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |e: Vec<PermissionConfig>| validate(&e).unwrap_err().to_string();
        assert!(bad(vec![entry("", "/", "", "", "")]).contains("permissions[0].user"));
        assert!(bad(vec![entry("a", "", "", "", "")]).contains("permissions[0].vhost"));
        let e = bad(vec![
            entry("a", "/", "", "", ""),
            entry("a", "/", "", "(", ""),
        ]);
        assert!(e.contains("permissions[1].vhost"), "{e}");
        assert!(e.contains("already has permissions"), "{e}");
        let e = bad(vec![entry("a", "/", ".*", "^(app", ".*")]);
        assert!(e.contains("permissions[0].write"), "{e}");
        assert!(e.contains("not a regular expression"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(validate(&[entry("a", "/", "", "^app\\.", ".*")]).is_ok());
    }
}
