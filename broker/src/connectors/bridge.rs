//! One bridge: this broker and one remote broker, two failover-client connections, demand
//! in one direction (or both, when duplex), store and forward.
//!
//! A bridge task owns a client connected to the local broker and one connected to the
//! remote broker. For the *outbound* direction it subscribes to the remote broker's
//! consumer advisories (with replay), turns every advertised consumer that passes the
//! filters into a demand subscription on the local broker, and forwards what those
//! subscriptions receive to the remote broker. With `duplex` the *inbound* direction
//! does the same the other way round over the same two connections.
//!
//! Forwarding is store and forward: a message is SENT with a receipt and acknowledged at
//! its source only once the target broker's RECEIPT arrived. If the target refuses it,
//! the message is NACKed (the source redelivers it, and dead-letters it after
//! `limits.redeliveries_max`); if the bridge fails first, the source gets no
//! acknowledgement and redelivers it when the demand subscription goes away. A message
//! may therefore arrive twice; the target's duplicate audit drops the repeat.
//!
//! Demand follows the advisory stream it came from: when that stream's connection is
//! lost (or a new connection starts a new stream), every demand subscription made from
//! it is removed, which gives the source broker back what was in flight, and the replay
//! on the next connection rebuilds it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::config::BridgeSettings;
use crate::client::{
    AckMode, Client, ClientConfig, ClientEvent, Credentials, Message, PendingReceipt, PolicyKind,
    ReconnectConfig, SendOutcome, ServerAddr, ServerList, Status, SubscribeSpec, SubscriptionId,
};
use crate::core::interbroker::headers::*;
use crate::core::interbroker::parse_path;
use crate::destination::{Destination, Kind};
use crate::net::SharedNet;
use crate::proto::Headers;

/// Priority of demand subscriptions one hop away when
/// `decrease_network_consumer_priority` is on (ActiveMQ's `consumerPriorityBase`).
const NETWORK_PRIORITY_BASE: i64 = -5;
/// Messages a bridge client buffers for the bridge task before it stops reading.
const BRIDGE_MESSAGES_BUFFERED_MAX: usize = 1024;
/// Commands (sends, subscriptions) queued towards a bridge client.
const BRIDGE_COMMANDS_QUEUED_MAX: usize = 1024;
/// Operations a bridge client holds while its connection is down or busy.
const BRIDGE_PENDING_SENDS_MAX: usize = 4096;
/// A forward not written within this time fails (and is NACKed).
const BRIDGE_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The advisory topics a bridge subscribes to.
const ADVISORY_SUBSCRIPTION: &str = "/topic/ActiveMQ.Advisory.Consumer.>";
/// MESSAGE headers not copied onto the forwarded SEND.
const NOT_FORWARDED: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "content-length",
    "receipt",
    "transaction",
];

/// What a bridge needs to run.
#[derive(Clone, Debug)]
pub struct BridgeSpec {
    /// The connector's settings.
    pub settings: Arc<BridgeSettings>,
    /// This broker's name.
    pub local_name: String,
    /// This broker's own listener.
    pub local: ServerAddr,
    /// The remote broker.
    pub remote: ServerAddr,
    /// How both connections reconnect.
    pub reconnect: ReconnectConfig,
}

/// Which of the bridge's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// One of the bridge's connections.
struct Conn {
    client: Client,
    messages: mpsc::Receiver<Message>,
    events: mpsc::Receiver<ClientEvent>,
    /// Its subscription to consumer advisories, if it has one.
    advisory: Option<SubscriptionId>,
    /// The connection whose advisory stream the current demand is built from.
    adopted: u64,
    /// Whether that connection is still up.
    live: bool,
}

/// A consumer as an advisory describes it.
#[derive(Clone, Debug)]
struct Advert {
    destination: String,
    selector: Option<String>,
    path: Vec<Arc<str>>,
    broker: String,
}

/// Which demand subscription a consumer counts towards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DemandKey {
    /// All consumers of a destination (selector dropped).
    Conduit(String),
    /// Topic consumers of a destination with the same selector.
    Topic(String, Option<String>),
    /// One queue consumer (by consumer id).
    Consumer(String),
}

struct Demand {
    sub: SubscriptionId,
    refs: usize,
    /// Length of the broker path it was subscribed with.
    hops: usize,
}

/// Demand in one direction: consumers advertised by the *target* broker, subscriptions
/// on the *source* broker.
#[derive(Default)]
struct Direction {
    /// Every consumer the target advertised (applied or not).
    adverts: BTreeMap<String, Advert>,
    /// Applied consumers and the demand each counts towards.
    consumers: BTreeMap<String, DemandKey>,
    demands: BTreeMap<DemandKey, Demand>,
    by_sub: BTreeMap<SubscriptionId, DemandKey>,
}

/// A forwarded message waiting for the target's receipt.
struct Forward {
    receipt: PendingReceipt,
    message: Message,
}

/// What woke the bridge.
enum Wake {
    Stop,
    Event(Side, Option<ClientEvent>),
    Message(Side, Option<Message>),
    /// The receipt for the oldest forward from this side.
    Forwarded(Side, SendOutcome),
}

/// Runs one bridge until `stop` turns true (or its clients stop).
pub async fn run(net: SharedNet, spec: BridgeSpec, mut stop: watch::Receiver<bool>) {
    let settings = spec.settings.clone();
    let start = |server: ServerAddr, login: &Option<String>, passcode: &Option<String>| {
        let mut config = ClientConfig::new(ServerList::single(server), PolicyKind::ActiveMqNetwork);
        config.reconnect = spec.reconnect.clone();
        config.credentials = login.as_ref().map(|l| Credentials {
            login: l.clone(),
            passcode: passcode.clone().unwrap_or_default(),
        });
        let hb = settings.heartbeat.as_millis() as u64;
        config.heart_beat_ms = (hb, hb);
        config.heartbeat_read_timeout = hb > 0;
        config.heartbeat_grace_factor = 2.0;
        config.messages_buffered_max = BRIDGE_MESSAGES_BUFFERED_MAX;
        config.commands_queued_max = BRIDGE_COMMANDS_QUEUED_MAX;
        config.pending_sends_max = BRIDGE_PENDING_SENDS_MAX;
        config.send_timeout = Some(BRIDGE_SEND_TIMEOUT);
        let (client, streams) = Client::start(net.clone(), config);
        Conn {
            client,
            messages: streams.messages,
            events: streams.events,
            advisory: None,
            adopted: 0,
            live: false,
        }
    };
    let local = start(
        spec.local.clone(),
        &settings.local_login,
        &settings.local_passcode,
    );
    let remote = start(
        spec.remote.clone(),
        &settings.remote_login,
        &settings.remote_passcode,
    );
    let mut bridge = Bridge {
        settings: settings.clone(),
        local_name: spec.local_name.clone(),
        label: format!("{}:{}", settings.name, spec.remote),
        remote_name: None,
        local,
        remote,
        outbound: Direction::default(),
        inbound: Direction::default(),
        from_local: VecDeque::new(),
        from_remote: VecDeque::new(),
    };
    let advisories = SubscribeSpec::new(ADVISORY_SUBSCRIPTION).header(ADVISORY_REPLAY, "true");
    bridge.remote.advisory = bridge
        .remote
        .client
        .subscribe(advisories.clone())
        .await
        .ok();
    if settings.duplex {
        bridge.local.advisory = bridge.local.client.subscribe(advisories).await.ok();
    }
    tracing::info!(bridge = %bridge.label, duplex = settings.duplex, "network bridge starting");
    loop {
        let wake = bridge.next(&mut stop).await;
        match wake {
            Wake::Stop => break,
            Wake::Event(side, Some(event)) => bridge.on_event(side, event).await,
            Wake::Message(side, Some(message)) => bridge.on_message(side, message).await,
            Wake::Event(_, None) | Wake::Message(_, None) => break,
            Wake::Forwarded(side, outcome) => bridge.on_forwarded(side, outcome),
        }
    }
    tracing::info!(bridge = %bridge.label, "network bridge stopping");
    bridge.local.client.disconnect().await;
    bridge.remote.client.disconnect().await;
}

struct Bridge {
    settings: Arc<BridgeSettings>,
    local_name: String,
    /// For logs: connector name and remote address.
    label: String,
    /// The remote broker's name, once an advisory told it.
    remote_name: Option<String>,
    local: Conn,
    remote: Conn,
    /// Demand on the local broker for the remote broker's consumers.
    outbound: Direction,
    /// Demand on the remote broker for the local broker's consumers (duplex).
    inbound: Direction,
    /// Messages from the local broker forwarded to the remote one, oldest first.
    from_local: VecDeque<Forward>,
    /// Messages from the remote broker forwarded to the local one, oldest first.
    from_remote: VecDeque<Forward>,
}

async fn front(queue: &mut VecDeque<Forward>) -> SendOutcome {
    match queue.front_mut() {
        Some(f) => (&mut f.receipt).await,
        None => std::future::pending().await,
    }
}

impl Bridge {
    async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> Wake {
        tokio::select! {
            biased;
            _ = stop.changed() => Wake::Stop,
            e = self.local.events.recv() => Wake::Event(Side::Local, e),
            e = self.remote.events.recv() => Wake::Event(Side::Remote, e),
            o = front(&mut self.from_local) => Wake::Forwarded(Side::Local, o),
            o = front(&mut self.from_remote) => Wake::Forwarded(Side::Remote, o),
            m = self.local.messages.recv() => Wake::Message(Side::Local, m),
            m = self.remote.messages.recv() => Wake::Message(Side::Remote, m),
        }
    }

    fn conn(&mut self, side: Side) -> &mut Conn {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }

    /// The direction whose demand subscriptions live on `side`.
    fn demand_on(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Local => &mut self.outbound,
            Side::Remote => &mut self.inbound,
        }
    }

    async fn on_event(&mut self, side: Side, event: ClientEvent) {
        match event {
            ClientEvent::Connected { .. } => {
                tracing::info!(bridge = %self.label, ?side, "bridge connection up");
            }
            ClientEvent::Disconnected { reason } => {
                let conn = self.conn(side);
                if conn.live {
                    conn.live = false;
                    tracing::info!(bridge = %self.label, ?side, %reason, "bridge connection down");
                    // The demand this side's advisories asked for is void.
                    self.reset(side.other()).await;
                }
            }
            _ => {}
        }
    }

    /// Removes every demand subscription on `demand_side`.
    async fn reset(&mut self, demand_side: Side) {
        let direction = std::mem::take(self.demand_on(demand_side));
        let client = self.conn(demand_side).client.clone();
        for demand in direction.demands.into_values() {
            let _ = client.unsubscribe(demand.sub).await;
        }
    }

    async fn on_message(&mut self, side: Side, message: Message) {
        let conn = self.conn(side);
        if message.subscription.is_some() && message.subscription == conn.advisory {
            self.on_advisory(side, message).await;
            return;
        }
        let known = message
            .subscription
            .is_some_and(|s| self.demand_on(side).by_sub.contains_key(&s));
        if known {
            self.forward(side, message).await;
        }
        // Otherwise it is for a demand subscription already removed: the source broker
        // redelivers it, since it is never acknowledged.
    }

    async fn forward(&mut self, from: Side, message: Message) {
        let target = self.conn(from.other());
        if !matches!(target.client.status(), Status::Connected { .. }) {
            // The demand is about to go away; the source gets the message back then.
            return;
        }
        let mut headers = Headers::with_capacity(message.headers.len());
        for (name, value) in message.headers.iter() {
            if !NOT_FORWARDED.contains(&&**name) {
                headers.push(name.clone(), value.clone());
            }
        }
        let sent = target
            .client
            .send_with_receipt_queued(message.destination.clone(), headers, message.body.clone())
            .await;
        match sent {
            Ok(receipt) => self.forwards(from).push_back(Forward { receipt, message }),
            Err(e) => tracing::debug!(bridge = %self.label, "forward not queued: {e}"),
        }
    }

    fn forwards(&mut self, from: Side) -> &mut VecDeque<Forward> {
        match from {
            Side::Local => &mut self.from_local,
            Side::Remote => &mut self.from_remote,
        }
    }

    fn on_forwarded(&mut self, from: Side, outcome: SendOutcome) {
        let Some(forward) = self.forwards(from).pop_front() else {
            return;
        };
        let client = self.conn(from).client.clone();
        let message = forward.message;
        match outcome {
            SendOutcome::Confirmed => {
                crate::task::spawn(async move {
                    let _ = client.ack(&message).await;
                });
            }
            SendOutcome::Failed(reason) => {
                tracing::warn!(
                    bridge = %self.label,
                    destination = %message.destination,
                    "forward refused: {reason}"
                );
                crate::task::spawn(async move {
                    let _ = client.nack(&message).await;
                });
            }
            // The target connection died first: the demand goes with it and the source
            // redelivers.
            SendOutcome::Indeterminate => {}
        }
    }

    async fn on_advisory(&mut self, side: Side, message: Message) {
        let number = message.connection();
        let conn = self.conn(side);
        if number < conn.adopted || (number == conn.adopted && !conn.live) {
            return;
        }
        if number > conn.adopted {
            conn.adopted = number;
            conn.live = true;
            self.reset(side.other()).await;
        }
        let broker = message
            .header(ADVISORY_BROKER)
            .unwrap_or_default()
            .to_owned();
        if side == Side::Remote
            && !broker.is_empty()
            && self.remote_name.as_deref() != Some(&broker)
        {
            tracing::info!(bridge = %self.label, remote = %broker, "remote broker identified");
            self.remote_name = Some(broker.clone());
            // Local consumers waiting for the remote broker's name can be mirrored now.
            let adverts = std::mem::take(&mut self.inbound.adverts);
            self.reset(Side::Remote).await;
            for (id, advert) in adverts {
                self.add(Side::Remote, id, advert).await;
            }
        }
        let Some(id) = message.header(CONSUMER_ID).map(str::to_owned) else {
            return;
        };
        let demand_side = side.other();
        match message.header(ADVISORY_ACTION) {
            Some("add") => {
                let Some(destination) = message.header(CONSUMER_DESTINATION) else {
                    return;
                };
                let advert = Advert {
                    destination: destination.to_owned(),
                    selector: message.header(CONSUMER_SELECTOR).map(str::to_owned),
                    path: message
                        .header(CONSUMER_BROKER_PATH)
                        .map(parse_path)
                        .unwrap_or_default(),
                    broker,
                };
                self.add(demand_side, id, advert).await;
            }
            Some("remove") => self.remove(demand_side, &id).await,
            _ => {}
        }
    }

    /// The broker where demand on `side` lives, if known.
    fn broker_of(&self, side: Side) -> Option<&str> {
        match side {
            Side::Local => Some(&self.local_name),
            Side::Remote => self.remote_name.as_deref(),
        }
    }

    /// A consumer was advertised: add demand for it on `demand_side`.
    async fn add(&mut self, demand_side: Side, id: String, advert: Advert) {
        self.remove(demand_side, &id).await;
        let Some(here) = self.broker_of(demand_side).map(str::to_owned) else {
            // Applied once the remote broker's name is known.
            self.demand_on(demand_side).adverts.insert(id, advert);
            return;
        };
        self.demand_on(demand_side)
            .adverts
            .insert(id.clone(), advert.clone());
        let s = self.settings.clone();
        let Ok(dest) = Destination::parse(&advert.destination) else {
            return;
        };
        let eligible = advert.broker != here
            && !advert.broker.is_empty()
            && !advert.path.iter().any(|b| **b == *here)
            && advert.path.len() < s.consumer_ttl as usize
            && s.permits(&dest);
        if !eligible {
            return;
        }
        let key = if s.conduit {
            DemandKey::Conduit(advert.destination.clone())
        } else if dest.kind == Kind::Topic {
            DemandKey::Topic(advert.destination.clone(), advert.selector.clone())
        } else {
            DemandKey::Consumer(id.clone())
        };
        let mut path: Vec<&str> = advert.path.iter().map(|b| &**b).collect();
        path.push(&advert.broker);
        let hops = path.len();
        let client = self.conn(demand_side).client.clone();
        let direction = self.demand_on(demand_side);
        direction.consumers.insert(id, key.clone());
        let mut refs = 1;
        if let Some(existing) = direction.demands.get_mut(&key) {
            if existing.hops <= hops {
                existing.refs += 1;
                return;
            }
            // A nearer consumer: advertise the shorter path (and priority) from now on.
            refs = existing.refs + 1;
            let old = existing.sub;
            direction.by_sub.remove(&old);
            direction.demands.remove(&key);
            let _ = client.unsubscribe(old).await;
        }
        let priority = if s.decrease_priority {
            NETWORK_PRIORITY_BASE - (hops as i64 - 1)
        } else {
            0
        };
        let mut spec = SubscribeSpec::new(advert.destination.clone())
            .ack(AckMode::ClientIndividual)
            .prefetch(s.prefetch)
            .header("activemq.priority", priority.to_string())
            .header(NETWORK_BROKER, advert.broker.clone())
            .header(NETWORK_PATH, path.join(","))
            .header(NETWORK_MESSAGE_TTL, s.message_ttl.to_string());
        if let (false, Some(selector)) = (s.conduit, &advert.selector) {
            spec = spec.selector(selector.clone());
        }
        if s.replay {
            spec = spec.header(NETWORK_REPLAY, "true");
        }
        match client.subscribe(spec).await {
            Ok(sub) => {
                let direction = self.demand_on(demand_side);
                direction
                    .demands
                    .insert(key.clone(), Demand { sub, refs, hops });
                direction.by_sub.insert(sub, key);
            }
            Err(e) => {
                tracing::warn!(bridge = %self.label, "demand subscription failed: {e}");
                let direction = self.demand_on(demand_side);
                direction.consumers.retain(|_, k| *k != key);
            }
        }
    }

    /// A consumer went away: release its demand.
    async fn remove(&mut self, demand_side: Side, id: &str) {
        let client = self.conn(demand_side).client.clone();
        let direction = self.demand_on(demand_side);
        direction.adverts.remove(id);
        let Some(key) = direction.consumers.remove(id) else {
            return;
        };
        let Some(demand) = direction.demands.get_mut(&key) else {
            return;
        };
        demand.refs -= 1;
        if demand.refs == 0 {
            let sub = demand.sub;
            direction.demands.remove(&key);
            direction.by_sub.remove(&sub);
            let _ = client.unsubscribe(sub).await;
        }
    }
}
