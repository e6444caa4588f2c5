//! The core's side of virtual hosts (see [`crate::vhost`]): choosing a session's vhost at
//! CONNECT, and translating the destinations of its SEND and SUBSCRIBE frames into
//! internal names before the handlers see them. Without vhosts nothing here acts.
//!
//! In a RabbitMQ-convention vhost a SEND also gets RabbitMQ's header meanings: a
//! relative `expiration` (ms) becomes an absolute `expires`, and `reply-to:/temp-queue/x`
//! subscribes the sender to its temporary queue `x` (subscription id `/temp-queue/x`,
//! auto ack, once per connection) and is rewritten to `/reply-queue/<name>` for the
//! receivers, whose replies come back to that subscription. A SUBSCRIBE's
//! `prefetch-count` is its prefetch.
//!
//! Once `[[security.permissions]]` has an entry, every RabbitMQ-convention vhost is
//! governed by permissions (see [`crate::permissions`]) rather than by the authorization
//! map: CONNECT needs an entry for the user and vhost, and each SEND and SUBSCRIBE needs
//! what the same operation needs in RabbitMQ ([`needs`]), checked here before anything
//! is declared.

use bytestring::ByteString;

use super::Broker;
use super::ids::ConnId;
use super::session::{FrameError, FrameResult};
use crate::destination::{Kind, Pattern};
use crate::permissions::{Access, Need, ResourceKind};
use crate::proto::{Command, Frame};
use crate::security::Principal;
use crate::vhost::{Convention, QueueUse, Resource, Use, VhostId};

/// RabbitMQ's name for the default exchange, which `/queue/` and reply sends go through.
const DEFAULT_EXCHANGE: &str = "amq.default";

/// What translation found out about a frame's destination, for its handler.
#[derive(Debug)]
pub(super) struct Routed {
    /// The destination as MESSAGE frames show it (RabbitMQ's spelling in its vhosts).
    pub(super) display: ByteString,
    /// The destination as the client wrote it (what a STOMP 1.0 UNSUBSCRIBE names).
    pub(super) written: ByteString,
    /// How a RabbitMQ wildcard (or fanout) subscription matches internal names.
    pub(super) pattern: Option<Pattern>,
    /// A SEND to a RabbitMQ queue that does not exist: taken and dropped, as RabbitMQ
    /// drops an unroutable message.
    pub(super) discard: bool,
    /// A SUBSCRIBE to an exchange in a RabbitMQ-convention vhost (`/exchange/…`,
    /// `/topic/…`): it consumes from a subscription queue bound to the exchange.
    pub(super) exchange: bool,
}

impl Broker {
    /// Replaces the virtual hosts of a running broker (`[[core.vhosts]]` and
    /// `default_vhost`, already checked by [`crate::vhost::validate`]): new vhosts, and
    /// exchanges and queues added to existing ones, can be used from the next frame;
    /// SENDs to a removed exchange get `NOT_FOUND`. Sessions keep their vhost, found again
    /// by name. A session whose vhost was removed, or changed its convention (its names
    /// meant something else), gets an ERROR and is closed, as RabbitMQ closes the
    /// connections of a deleted vhost. Subscriptions made before keep the bindings they
    /// have until they end.
    pub fn handle_reload_vhosts(
        &mut self,
        now_ms: u64,
        vhosts: Vec<crate::vhost::VhostConfig>,
        default_vhost: Option<String>,
    ) {
        use std::collections::BTreeMap;
        self.now_ms = now_ms;
        let fresh = crate::vhost::Vhosts::new(&vhosts, default_vhost.as_deref());
        let remap: BTreeMap<VhostId, Option<VhostId>> = self
            .vhosts
            .iter()
            .map(|(id, old)| {
                let new = fresh
                    .iter()
                    .find(|(_, v)| v.name == old.name && v.convention == old.convention)
                    .map(|(n, _)| n);
                (id, new)
            })
            .collect();
        let mut closing = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            let Some(old) = c.vhost else {
                continue;
            };
            match remap.get(&old).copied().flatten() {
                Some(new) => c.vhost = Some(new),
                None => {
                    closing.push((*id, self.vhosts.get(old).name.clone()));
                    // Its old id means nothing in the new vhosts.
                    c.vhost = None;
                }
            }
        }
        let mut declared: std::collections::BTreeSet<(VhostId, String)> = self
            .declared
            .iter()
            .filter_map(|(v, q)| remap.get(v).copied().flatten().map(|n| (n, q.clone())))
            .collect();
        for (id, v) in fresh.iter() {
            declared.extend(v.queues.iter().map(|q| (id, q.clone())));
        }
        self.declared = declared;
        self.vhosts = fresh;
        self.config.vhosts = vhosts;
        self.config.default_vhost = default_vhost;
        self.stats.vhost_reloads += 1;
        for (conn, name) in closing {
            self.error_and_close(
                conn,
                &format!("vhost '{name}' was deleted or changed (configuration reload)"),
                None,
                "",
            );
        }
        self.retry_parked();
    }

    /// The vhost of a CONNECT: `Ok(None)` without vhosts.
    pub(super) fn select_vhost(&self, host: Option<&str>) -> Result<Option<VhostId>, FrameError> {
        self.vhosts.select(host).map_err(FrameError::Fatal)
    }

    /// Translates the `destination` of a SEND or SUBSCRIBE of a session in a vhost (and
    /// applies RabbitMQ's SEND headers), leaving what the handler needs in
    /// `self.routed`.
    pub(super) fn translate_frame(&mut self, conn_id: ConnId, frame: &mut Frame) -> FrameResult {
        self.routed = None;
        let Some(vh) = self.conns.get(&conn_id).and_then(|c| c.vhost) else {
            return Ok(());
        };
        let use_ = match frame.command {
            Command::Send => Use::Send,
            Command::Subscribe => Use::Subscribe,
            _ => return Ok(()),
        };
        let Some(text) = frame.headers.get("destination").map(str::to_owned) else {
            // The request's own check names the missing header.
            return Ok(());
        };
        let vhost = self.vhosts.get(vh);
        let convention = vhost.convention;
        let t = vhost.translate(&text, use_).map_err(FrameError::Fatal)?;
        if self.governed(vh) {
            let reply_to = match use_ {
                Use::Send => frame
                    .headers
                    .get("reply-to")
                    .and_then(|r| r.strip_prefix("/temp-queue/")),
                Use::Subscribe => None,
            };
            let needs = needs(&t.resource, t.queue.as_ref(), use_, frame, reply_to);
            self.check_permissions(conn_id, vh, &needs)?;
        }
        let mut discard = false;
        match &t.queue {
            Some(QueueUse::Declare(name)) => self.declare_queue(vh, name)?,
            Some(QueueUse::Existing(name)) if use_ == Use::Send => {
                discard = !self.declared.contains(&(vh, name.clone()));
            }
            Some(QueueUse::Existing(name)) if !self.declared.contains(&(vh, name.clone())) => {
                return Err(FrameError::Fatal(format!(
                    "NOT_FOUND - no queue '{name}' in vhost '{}'",
                    self.vhosts.get(vh).name
                )));
            }
            Some(QueueUse::Existing(_)) | None => {}
        }
        if let Some(name) = t.internal.strip_prefix("/remote-temp-") {
            self.check_temp_vhost(vh, name)?;
        }
        if convention == Convention::RabbitMq && use_ == Use::Send {
            self.rabbitmq_send_headers(conn_id, frame)?;
        }
        if convention == Convention::RabbitMq && use_ == Use::Subscribe {
            rabbitmq_subscribe_headers(frame)?;
        }
        frame.headers.remove("destination");
        frame.headers.push("destination", t.internal);
        let exchange = convention == Convention::RabbitMq
            && use_ == Use::Subscribe
            && matches!(t.resource, Resource::Exchange(_));
        self.routed = Some(Routed {
            display: ByteString::from(t.display),
            written: ByteString::from(text),
            pattern: t.pattern,
            discard,
            exchange,
        });
        Ok(())
    }

    /// A temporary destination (`queue/<name>` or `topic/<name>` after `/remote-temp-`)
    /// belongs to its owner's vhost: from another vhost it does not exist.
    fn check_temp_vhost(&self, vh: VhostId, kind_and_name: &str) -> FrameResult {
        let (kind, name) = kind_and_name
            .split_once('/')
            .unwrap_or(("queue", kind_and_name));
        // A reply to a temporary queue finds its owner through the queue (every reply of
        // a fleet comes this way); a temporary topic, or a queue nobody consumes yet, is
        // rare enough to search for.
        let owner = if kind == "queue" {
            self.temp_queue_owner(name)
        } else {
            None
        };
        let owner_vhost = match owner {
            Some(c) => self.conns.get(&c).map(|c| c.vhost),
            None => self
                .conns
                .values()
                .find(|c| c.temps.values().any(|n| &**n == name))
                .map(|c| c.vhost),
        };
        match owner_vhost {
            Some(v) if v != Some(vh) => Err(FrameError::Refused(format!(
                "{} does not exist in vhost '{}'",
                name,
                self.vhosts.get(vh).name
            ))),
            _ => Ok(()),
        }
    }

    /// Records that RabbitMQ queue `name` exists in vhost `vh` (declared queues are
    /// bounded by `limits.destinations_max`, as queues are).
    pub(super) fn declare_queue(&mut self, vh: VhostId, name: &str) -> FrameResult {
        let key = (vh, name.to_owned());
        if self.declared.contains(&key) {
            return Ok(());
        }
        if self.declared.len() >= self.config.limits.destinations_max {
            return Err(FrameError::Refused(format!(
                "cannot declare queue '{name}': too many queues (limits.destinations_max = {})",
                self.config.limits.destinations_max
            )));
        }
        self.declared.insert(key);
        Ok(())
    }

    fn rabbitmq_send_headers(&mut self, conn_id: ConnId, frame: &mut Frame) -> FrameResult {
        if let Some(e) = frame.headers.get("expiration") {
            let ttl_ms = e.trim().parse::<u64>().map_err(|_| {
                FrameError::Fatal(format!(
                    "invalid expiration header: '{e}' (relative milliseconds)"
                ))
            })?;
            frame.headers.remove("expires");
            frame.headers.push(
                "expires",
                self.now_ms.saturating_add(ttl_ms).max(1).to_string(),
            );
        }
        let Some(local) = frame
            .headers
            .get("reply-to")
            .and_then(|r| r.strip_prefix("/temp-queue/"))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        if local.is_empty() {
            return Err(FrameError::Fatal(
                "reply-to:/temp-queue/ names no queue".into(),
            ));
        }
        let id = format!("/temp-queue/{local}");
        let subscribed = self
            .conns
            .get(&conn_id)
            .is_some_and(|c| c.subs.contains_key(id.as_str()));
        if !subscribed {
            let sub = Frame::new(Command::Subscribe)
                .header("id", id.clone())
                .header("destination", id)
                .header("ack", "auto");
            self.on_subscribe(conn_id, &sub)?;
        }
        let internal = self.temp_name(conn_id, Kind::TempQueue, &local);
        frame.headers.remove("reply-to");
        frame
            .headers
            .push("reply-to", format!("/reply-queue/{internal}"));
        Ok(())
    }

    /// Whether vhost `vh` is governed by permissions: it follows RabbitMQ's convention
    /// and `[[security.permissions]]` has an entry.
    fn governed(&self, vh: VhostId) -> bool {
        !self.security.permissions().is_empty()
            && self.vhosts.get(vh).convention == Convention::RabbitMq
    }

    /// Whether `conn`'s vhost is governed by permissions (so the authorization map does
    /// not apply to it).
    pub(super) fn governed_by_permissions(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.vhost)
            .is_some_and(|v| self.governed(v))
    }

    /// At CONNECT: a user with no permissions entry for a governed vhost may not enter
    /// it, and gets RabbitMQ's `Bad CONNECT` refusal.
    pub(super) fn check_vhost_access(
        &self,
        principal: &Principal,
        vh: Option<VhostId>,
    ) -> FrameResult {
        let Some(vh) = vh.filter(|v| self.governed(*v)) else {
            return Ok(());
        };
        let name = &self.vhosts.get(vh).name;
        let may = permission_user(principal)
            .is_some_and(|u| self.security.permissions().may_enter(u, name));
        if may {
            return Ok(());
        }
        Err(FrameError::Denied {
            message: "Bad CONNECT",
            body: format!("Virtual host '{name}' access denied"),
        })
    }

    /// Checks `needs` for the user of `conn` in vhost `vh`; a refusal is RabbitMQ's
    /// `access_refused`.
    fn check_permissions(&self, conn: ConnId, vh: VhostId, needs: &[Need]) -> FrameResult {
        let principal = self.conns.get(&conn).and_then(|c| c.principal.as_ref());
        let user = principal.and_then(permission_user);
        let vhost = &self.vhosts.get(vh).name;
        // A session without a user with permissions is checked as a user no entry names.
        let result = self
            .security
            .permissions()
            .check(user.unwrap_or(""), vhost, needs);
        result.map_err(|mut refusal| {
            refusal.user = principal.map_or("anonymous", Principal::name).to_owned();
            FrameError::Denied {
                message: "access_refused",
                body: refusal.to_string(),
            }
        })
    }

    /// Whether `conn` is in a RabbitMQ-convention vhost.
    pub(super) fn in_rabbitmq_vhost(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.vhost)
            .is_some_and(|v| self.vhosts.get(v).convention == Convention::RabbitMq)
    }

    /// The name authorization entries see: without the vhost's segment, so that one set
    /// of entries serves every vhost.
    pub(super) fn authorization_name<'a>(&self, kind: Kind, name: &'a str) -> &'a str {
        if self.vhosts.is_empty() || kind.is_temporary() {
            return name;
        }
        match name.split_once('.') {
            Some((first, rest)) if self.vhosts.owning(first).is_some() => rest,
            _ => name,
        }
    }

    /// Where a refused message from queue `name` goes: `Some(dlq)` (the dead-letter queue,
    /// inside the queue's vhost for an ActiveMQ-convention one) or `None` to drop it, as
    /// RabbitMQ drops a rejected message when its queue names no dead-letter exchange.
    pub(super) fn dead_letter_queue_for(&self, kind: Kind, name: &str) -> Option<String> {
        let dlq = &self.config.dead_letter_queue;
        if self.vhosts.is_empty() || kind.is_temporary() {
            return Some(dlq.clone());
        }
        match self.vhosts.owning(name) {
            Some(v) if v.convention == Convention::RabbitMq => None,
            Some(v) => Some(format!("{}.{dlq}", v.segment)),
            None => Some(dlq.clone()),
        }
    }
}

/// The user whose permissions apply to `principal`: only one who proved who they are.
fn permission_user(principal: &Principal) -> Option<&str> {
    principal
        .user
        .as_deref()
        .filter(|_| principal.authenticated)
}

/// What a SEND or SUBSCRIBE of `resource` needs, in the order RabbitMQ's STOMP plugin
/// meets the checks (declare, bind, consume; declare, publish):
///
/// - SEND to an exchange (`/exchange/`, `/topic/`): write on the exchange;
/// - SEND to `/queue/N` (which declares N): configure on queue N, write on `amq.default`;
///   to `/amq/queue/N` or `/reply-queue/…`: write on `amq.default`;
/// - SUBSCRIBE to `/queue/N`: configure and read on queue N; to `/amq/queue/N`: read on
///   it;
/// - SUBSCRIBE to an exchange: configure, write and read on the subscription queue
///   (`stomp-subscription-<id>`), read on the exchange;
/// - a temporary queue `x` (`/temp-queue/x`, or `reply-to:/temp-queue/x` on a SEND)
///   is the queue `amq.gen-x`: configure and read on it (declare, consume), and a SEND to
///   it also writes to `amq.default`.
fn needs(
    resource: &Resource,
    queue: Option<&QueueUse>,
    use_: Use,
    frame: &Frame,
    reply_to: Option<&str>,
) -> Vec<Need> {
    use Access::{Configure, Read, Write};
    use ResourceKind::{Exchange, Queue};
    let temp = |local: &str| format!("amq.gen-{local}");
    let declares = matches!(queue, Some(QueueUse::Declare(_)));
    let mut needs = Vec::new();
    match (use_, resource) {
        (_, Resource::None) => {}
        (Use::Send, Resource::Exchange(x)) => needs.push(Need::new(Write, Exchange, x)),
        (Use::Send, Resource::Queue(q)) => {
            if declares {
                needs.push(Need::new(Configure, Queue, q));
            }
            needs.push(Need::new(Write, Exchange, DEFAULT_EXCHANGE));
        }
        (Use::Send, Resource::ReplyQueue(_)) => {
            needs.push(Need::new(Write, Exchange, DEFAULT_EXCHANGE));
        }
        (Use::Send, Resource::Temporary(local)) => {
            needs.push(Need::new(Configure, Queue, temp(local)));
            needs.push(Need::new(Write, Exchange, DEFAULT_EXCHANGE));
        }
        (Use::Subscribe, Resource::Exchange(x)) => {
            let id = frame
                .headers
                .get("id")
                .or_else(|| frame.headers.get("destination"))
                .unwrap_or_default();
            let q = format!("stomp-subscription-{id}");
            needs.push(Need::new(Configure, Queue, q.clone()));
            needs.push(Need::new(Write, Queue, q.clone()));
            needs.push(Need::new(Read, Exchange, x));
            needs.push(Need::new(Read, Queue, q));
        }
        (Use::Subscribe, Resource::Queue(q) | Resource::ReplyQueue(q)) => {
            if declares {
                needs.push(Need::new(Configure, Queue, q));
            }
            needs.push(Need::new(Read, Queue, q));
        }
        (Use::Subscribe, Resource::Temporary(local)) => {
            needs.push(Need::new(Configure, Queue, temp(local)));
            needs.push(Need::new(Read, Queue, temp(local)));
        }
    }
    if let Some(local) = reply_to.filter(|l| !l.is_empty()) {
        needs.push(Need::new(Configure, Queue, temp(local)));
        needs.push(Need::new(Read, Queue, temp(local)));
    }
    needs
}

/// RabbitMQ's `prefetch-count` (0 or absent: unlimited) as the core's prefetch.
fn rabbitmq_subscribe_headers(frame: &mut Frame) -> FrameResult {
    let Some(p) = frame.headers.get("prefetch-count") else {
        return Ok(());
    };
    let n = p
        .trim()
        .parse::<usize>()
        .map_err(|_| FrameError::Fatal(format!("invalid prefetch-count header: '{p}'")))?;
    if n > 0 && !frame.headers.contains("activemq.prefetchSize") {
        frame.headers.push("activemq.prefetchSize", n.to_string());
    }
    Ok(())
}
