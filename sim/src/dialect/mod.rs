//! Target dialects: how a workload's client talks to a broker, and the destination
//! conventions that differ between brokers. Workloads never test which broker they run
//! against; they ask the [`Dialect`] in their [`Env`](crate::workload::Env).
//!
//! | dialect | used for | MCollective connector it follows | wire |
//! | --- | --- | --- | --- |
//! | [`Dialect::ActiveMq`] | the simulator, `stampede-broker`, ActiveMQ | `activemq` | STOMP |
//! | [`Dialect::RabbitMq`] | RabbitMQ with `rabbitmq_stomp` | `rabbitmq` | STOMP |
//! | [`Dialect::Redis`] | Redis pub/sub | `redis` (ripienaar/mc-plugins) | RESP |
//!
//! The differences, all here:
//!
//! - MCollective destinations. ActiveMQ style: broadcasts on `/topic/<c>.<agent>.agent`,
//!   directed requests on `/queue/<c>.nodes` with an `mc_identity` header and a JMS
//!   selector per node, one reply queue `/queue/<c>.reply.<client>_<pid>.<seq>` per
//!   request. RabbitMQ has no selectors: `/exchange/<c>_broadcast/<agent>` (a topic
//!   exchange) and `/exchange/<c>_directed/<identity>` (a direct exchange), both declared
//!   beforehand, and `reply-to:/temp-queue/mcollective_reply_<agent>`, which RabbitMQ turns
//!   into a private queue the sender is subscribed to. Redis: channels
//!   `<c>::server::agents`, `<c>::server::direct::<identity>` and
//!   `mcollective::reply::<client>::<pid>`, headers and body wrapped in one payload.
//! - Expiry: ActiveMQ's absolute `expires` (epoch ms) with `timestamp`, RabbitMQ's relative
//!   `expiration` (ms), nothing on Redis (MCollective checks `msgtime` and the TTL).
//! - The CONNECT `host` header: `mcollective` (ActiveMQ ignores it), the vhost `/` on
//!   RabbitMQ.
//! - What a target can run at all: Redis has no queues (only `/topic/` queue workloads
//!   run there, a PUBLISH reply standing in for a receipt).
//!
//! [`Conn`] and [`Inbox`] are the two halves of one client, STOMP ([`Client`]) or Redis
//! ([`redis::RedisClient`]), with one set of methods, so that a workload's code is the
//! same for every target.

pub mod redis;

use bytes::Bytes;
use stampede_broker::client::{
    Client, ClientConfig, ClientError, ClientEvent, Message, SendOutcome, SubscribeSpec,
    SubscriptionId,
};
use stampede_broker::net::SharedNet;
use stampede_broker::proto::Headers;
use tokio::sync::mpsc;

use crate::history::{ClientId, Recorder};

/// How workloads talk to a broker (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    /// STOMP with ActiveMQ's conventions: the simulator, `stampede-broker`, ActiveMQ.
    #[default]
    ActiveMq,
    /// STOMP with RabbitMQ's conventions (exchanges, temp queues, `expiration`).
    RabbitMq,
    /// Redis PUBLISH/SUBSCRIBE.
    Redis,
}

/// The `reply-to` of an MCollective request and what the client must do to receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The `reply-to` header value.
    pub reply_to: String,
    /// A subscription to make before the request and drop after its window, if any.
    pub subscribe: Option<SubscribeSpec>,
}

impl Dialect {
    /// The CONNECT `host` header: `mcollective` as MCollective's activemq connector sends
    /// it (ActiveMQ and Stampede ignore it), RabbitMQ's default vhost `/`.
    pub fn vhost(self) -> &'static str {
        match self {
            Dialect::ActiveMq | Dialect::Redis => "mcollective",
            Dialect::RabbitMq => "/",
        }
    }

    /// What an `mcollectived` node subscribes to. `versioned_ids`: STOMP 1.1, where
    /// subscriptions carry the ids MCollective gives them.
    pub fn mco_node_subscriptions(
        self,
        collective: &str,
        identity: &str,
        agents: &[String],
        versioned_ids: bool,
    ) -> Vec<SubscribeSpec> {
        let c = collective;
        match self {
            Dialect::ActiveMq => {
                // STOMP 1.0 subscriptions have no id; with 1.1 the directed one is
                // `<c>_directed_to_identity` and topic ones are named after their
                // destination.
                let mut subs = Vec::new();
                let directed = SubscribeSpec::new(format!("/queue/{c}.nodes"))
                    .selector(format!("mc_identity = '{identity}'"));
                subs.push(if versioned_ids {
                    directed.id(format!("{c}_directed_to_identity"))
                } else {
                    directed.without_id()
                });
                for agent in agents {
                    let dest = format!("/topic/{c}.{agent}.agent");
                    let sub = SubscribeSpec::new(dest.clone());
                    subs.push(if versioned_ids {
                        sub.id(dest)
                    } else {
                        sub.without_id()
                    });
                }
                subs
            }
            Dialect::RabbitMq => {
                let mut subs = vec![
                    SubscribeSpec::new(format!("/exchange/{c}_directed/{identity}"))
                        .id(format!("{c}_{identity}_directed_to_identity")),
                ];
                for agent in agents {
                    subs.push(
                        SubscribeSpec::new(format!("/exchange/{c}_broadcast/{agent}"))
                            .id(format!("{c}_broadcast_{agent}")),
                    );
                }
                subs
            }
            Dialect::Redis => vec![
                SubscribeSpec::new(format!("{c}::server::agents")),
                SubscribeSpec::new(format!("{c}::server::direct::{identity}")),
            ],
        }
    }

    /// Where a broadcast request for `agent` goes.
    pub fn mco_broadcast(self, collective: &str, agent: &str) -> String {
        match self {
            Dialect::ActiveMq => format!("/topic/{collective}.{agent}.agent"),
            Dialect::RabbitMq => format!("/exchange/{collective}_broadcast/{agent}"),
            Dialect::Redis => format!("{collective}::server::agents"),
        }
    }

    /// Where a request directed to `identity` goes, and the header that selects the node.
    pub fn mco_directed(
        self,
        collective: &str,
        identity: &str,
    ) -> (String, Option<(&'static str, String)>) {
        match self {
            Dialect::ActiveMq => (
                format!("/queue/{collective}.nodes"),
                Some(("mc_identity", identity.to_owned())),
            ),
            Dialect::RabbitMq => (format!("/exchange/{collective}_directed/{identity}"), None),
            Dialect::Redis => (format!("{collective}::server::direct::{identity}"), None),
        }
    }

    /// The `reply-to` of a client's `seq`th request to `agent`.
    pub fn mco_reply_to(
        self,
        collective: &str,
        client: &str,
        pid: u32,
        seq: u64,
        agent: &str,
    ) -> ReplyTo {
        match self {
            Dialect::ActiveMq => {
                let q = format!("/queue/{collective}.reply.{client}_{pid}.{seq}");
                ReplyTo {
                    subscribe: Some(SubscribeSpec::new(q.clone()).without_id()),
                    reply_to: q,
                }
            }
            Dialect::RabbitMq => ReplyTo {
                reply_to: format!("/temp-queue/mcollective_reply_{agent}"),
                subscribe: None,
            },
            Dialect::Redis => ReplyTo {
                reply_to: Self::redis_reply_channel(client, pid),
                subscribe: None,
            },
        }
    }

    /// Subscriptions an `mco` client keeps for its whole life (Redis: its reply channel).
    pub fn mco_client_subscriptions(self, client: &str, pid: u32) -> Vec<SubscribeSpec> {
        match self {
            Dialect::ActiveMq | Dialect::RabbitMq => Vec::new(),
            Dialect::Redis => vec![SubscribeSpec::new(Self::redis_reply_channel(client, pid))],
        }
    }

    fn redis_reply_channel(client: &str, pid: u32) -> String {
        format!("mcollective::reply::{client}::{pid}")
    }

    /// Appends MCollective's time headers for a message sent at `now_ms` (epoch ms) with a
    /// TTL of `ttl_s`.
    pub fn mco_time_headers(self, headers: &mut Headers, now_ms: u64, ttl_s: u64) {
        match self {
            Dialect::ActiveMq => {
                headers.push("timestamp", (now_ms / 1000 * 1000).to_string());
                headers.push("expires", ((now_ms / 1000 + ttl_s + 10) * 1000).to_string());
            }
            Dialect::RabbitMq => {
                headers.push("expiration", ((ttl_s + 10) * 1000).to_string());
            }
            Dialect::Redis => {}
        }
    }

    /// Why this dialect cannot run a queue workload on `destination` with these settings,
    /// if it cannot.
    pub fn queue_unsupported(self, destination: &str, ack_auto: bool) -> Option<String> {
        match self {
            Dialect::ActiveMq | Dialect::RabbitMq => None,
            Dialect::Redis if !destination.starts_with("/topic/") => Some(format!(
                "Redis pub/sub has no queues: {destination} needs a STOMP target"
            )),
            Dialect::Redis if !ack_auto => {
                Some("Redis pub/sub has no acknowledgements: use ack = \"auto\"".to_owned())
            }
            Dialect::Redis => None,
        }
    }

    /// Starts a client with `config` and forwards its connection events to the history.
    pub fn start(
        self,
        net: &SharedNet,
        config: ClientConfig,
        recorder: &Recorder,
        id: ClientId,
    ) -> (Conn, Inbox) {
        self.start_gated(net, config, recorder, id, || true)
    }

    /// [`Dialect::start`], forwarding only the events that happen while `live` holds: a
    /// killed process's client still winds down, and the history must not hear of it.
    pub fn start_gated(
        self,
        net: &SharedNet,
        config: ClientConfig,
        recorder: &Recorder,
        id: ClientId,
        live: impl Fn() -> bool + Send + Sync + 'static,
    ) -> (Conn, Inbox) {
        self.start_filtered(net, config, recorder, id, move |ev| live().then_some(ev))
    }

    /// [`Dialect::start`], forwarding to the history what `forward` makes of each event
    /// (`None`: nothing). A client that is one of several a process opens in turn (a
    /// Roboconf client switching servers) uses it to place its events in the pool the
    /// history knows it by, and to go quiet once replaced.
    pub fn start_filtered(
        self,
        net: &SharedNet,
        config: ClientConfig,
        recorder: &Recorder,
        id: ClientId,
        forward: impl Fn(ClientEvent) -> Option<ClientEvent> + Send + Sync + 'static,
    ) -> (Conn, Inbox) {
        match self {
            Dialect::ActiveMq | Dialect::RabbitMq => {
                let (client, streams) = Client::start(net.clone(), config);
                let mut events = streams.events;
                let recorder = recorder.clone();
                stampede_broker::task::spawn(async move {
                    while let Some(ev) = events.recv().await {
                        if let Some(ev) = forward(ev) {
                            recorder.event(id, ev);
                        }
                    }
                });
                (Conn::Stomp(client), Inbox::Stomp(streams.messages))
            }
            Dialect::Redis => {
                let (client, messages) = redis::RedisClient::start(net.clone(), config, {
                    let recorder = recorder.clone();
                    move |ev| {
                        if let Some(ev) = forward(ev) {
                            recorder.event(id, ev)
                        }
                    }
                });
                (Conn::Redis(client), Inbox::Redis(messages))
            }
        }
    }
}

/// The sending half of a client.
#[derive(Clone, Debug)]
pub enum Conn {
    /// A STOMP failover client.
    Stomp(Client),
    /// A Redis pub/sub client.
    Redis(redis::RedisClient),
}

/// A subscription asked for through [`Conn::subscribe_queued`].
#[derive(Debug)]
pub enum PendingSubscription {
    /// A STOMP subscription the client has not made yet.
    Stomp(stampede_broker::client::PendingSubscribe),
    /// One made already.
    Made(Subscription),
}

impl PendingSubscription {
    /// The subscription, once made.
    pub async fn made(self) -> Result<Subscription, ClientError> {
        match self {
            PendingSubscription::Stomp(p) => p.await.map(Subscription::Stomp),
            PendingSubscription::Made(s) => Ok(s),
        }
    }
}

/// A send queued through [`Conn::send_queued`].
#[derive(Debug)]
pub enum QueuedSend {
    /// A STOMP SEND in the client's output, not yet known written.
    Stomp(stampede_broker::client::PendingWrite),
    /// A send whose outcome is already known.
    Done(Result<(), ClientError>),
}

impl QueuedSend {
    /// Waits until the send is written (or has failed). Dropping a `QueuedSend` before
    /// then gives the send up: a STOMP client does not write a SEND nobody waits for.
    pub async fn written(self) -> Result<(), ClientError> {
        self.await
    }
}

impl std::future::Future for QueuedSend {
    type Output = Result<(), ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut *self {
            QueuedSend::Stomp(p) => std::pin::Pin::new(p).poll(cx),
            QueuedSend::Done(r) => std::task::Poll::Ready(std::mem::replace(r, Ok(()))),
        }
    }
}

/// A subscription made through a [`Conn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// A STOMP subscription.
    Stomp(SubscriptionId),
    /// A Redis channel.
    Redis(String),
}

impl Conn {
    /// Subscribes (kept across reconnects).
    pub async fn subscribe(&self, spec: SubscribeSpec) -> Result<Subscription, ClientError> {
        match self {
            Conn::Stomp(c) => c.subscribe(spec).await.map(Subscription::Stomp),
            Conn::Redis(c) => {
                c.subscribe(&spec.destination).await?;
                Ok(Subscription::Redis(spec.destination))
            }
        }
    }

    /// Subscribes without waiting for the client to make the subscription (STOMP; a
    /// Redis client subscribes at once): see [`PendingSubscription`].
    pub async fn subscribe_queued(
        &self,
        spec: SubscribeSpec,
    ) -> Result<PendingSubscription, ClientError> {
        match self {
            Conn::Stomp(c) => c
                .subscribe_queued(spec)
                .await
                .map(PendingSubscription::Stomp),
            Conn::Redis(_) => self.subscribe(spec).await.map(PendingSubscription::Made),
        }
    }

    /// Ends a subscription without waiting for the client to act on it (STOMP).
    pub async fn unsubscribe_queued(&self, sub: Subscription) -> Result<(), ClientError> {
        match (self, sub) {
            (Conn::Stomp(c), Subscription::Stomp(id)) => c.unsubscribe_queued(id).await,
            (_, sub) => self.unsubscribe(sub).await,
        }
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, sub: Subscription) -> Result<(), ClientError> {
        match (self, sub) {
            (Conn::Stomp(c), Subscription::Stomp(id)) => c.unsubscribe(id).await,
            (Conn::Redis(c), Subscription::Redis(ch)) => c.unsubscribe(&ch).await,
            _ => Ok(()),
        }
    }

    /// Sends without asking for a receipt; resolves once written.
    pub async fn send(
        &self,
        destination: &str,
        headers: Headers,
        body: Bytes,
    ) -> Result<(), ClientError> {
        match self {
            Conn::Stomp(c) => c.send(destination, headers, body).await,
            Conn::Redis(c) => match c.publish(destination, &headers, &body).await {
                Ok(_) => Ok(()),
                Err(redis::PublishError::Client(e)) => Err(e),
                Err(redis::PublishError::Refused(_)) => Err(ClientError::ConnectionLost),
            },
        }
    }

    /// Queues a send without a receipt and returns once the client has taken it; the
    /// [`QueuedSend`] resolves once it is written. STOMP sends queued together share a
    /// write; a Redis PUBLISH is made here, whole, before this returns.
    pub async fn send_queued(
        &self,
        destination: &str,
        headers: Headers,
        body: Bytes,
    ) -> QueuedSend {
        match self {
            Conn::Stomp(c) => match c.send_queued(destination, headers, body).await {
                Ok(p) => QueuedSend::Stomp(p),
                Err(e) => QueuedSend::Done(Err(e)),
            },
            Conn::Redis(_) => QueuedSend::Done(self.send(destination, headers, body).await),
        }
    }

    /// Sends and waits for the broker's confirmation (a RECEIPT; Redis: PUBLISH's reply).
    pub async fn send_with_receipt(
        &self,
        destination: &str,
        headers: Headers,
        body: Bytes,
    ) -> SendOutcome {
        match self {
            Conn::Stomp(c) => c.send_with_receipt(destination, headers, body).await,
            Conn::Redis(c) => match c.publish(destination, &headers, &body).await {
                Ok(_) => SendOutcome::Confirmed,
                Err(redis::PublishError::Client(ClientError::ConnectionLost)) => {
                    SendOutcome::Indeterminate
                }
                Err(e) => SendOutcome::Failed(e.to_string()),
            },
        }
    }

    /// Acknowledges a message of a `client` or `client-individual` subscription.
    pub async fn ack(&self, message: &Inbound) -> Result<(), ClientError> {
        match (self, message) {
            (Conn::Stomp(c), Inbound::Stomp(m)) => c.ack(m).await,
            _ => Ok(()),
        }
    }

    /// The index of the server the client is connected to, if it is (always `None` for
    /// Redis, whose messages never cross broker networks).
    pub fn connected_server(&self) -> Option<usize> {
        match self {
            Conn::Stomp(c) => match c.status() {
                stampede_broker::client::Status::Connected { server, .. } => Some(server),
                _ => None,
            },
            Conn::Redis(_) => None,
        }
    }

    /// Stops the client gracefully.
    pub async fn disconnect(&self) {
        match self {
            Conn::Stomp(c) => c.disconnect().await,
            Conn::Redis(c) => c.disconnect().await,
        }
    }
}

/// The receiving half of a client.
#[derive(Debug)]
pub enum Inbox {
    /// MESSAGE frames of a STOMP client.
    Stomp(mpsc::Receiver<Message>),
    /// Messages of a Redis client.
    Redis(mpsc::Receiver<redis::RedisMessage>),
}

impl Inbox {
    /// The next message; `None` when the client has stopped.
    pub async fn recv(&mut self) -> Option<Inbound> {
        match self {
            Inbox::Stomp(rx) => rx.recv().await.map(Inbound::Stomp),
            Inbox::Redis(rx) => rx.recv().await.map(Inbound::Redis),
        }
    }
}

/// A message received through an [`Inbox`].
#[derive(Debug)]
pub enum Inbound {
    /// A STOMP MESSAGE.
    Stomp(Message),
    /// A Redis message (headers unwrapped from its payload).
    Redis(redis::RedisMessage),
}

impl Inbound {
    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Inbound::Stomp(m) => m.headers.get(name),
            Inbound::Redis(m) => m.headers.get(name),
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match self {
            Inbound::Stomp(m) => &m.body,
            Inbound::Redis(m) => &m.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_broker::client::IdHeader;

    fn dests(subs: &[SubscribeSpec]) -> Vec<&str> {
        subs.iter().map(|s| s.destination.as_str()).collect()
    }

    #[test]
    fn activemq_conventions_are_the_activemq_connectors() {
        let d = Dialect::ActiveMq;
        let agents = ["discovery".to_owned(), "rpcutil".to_owned()];
        let subs = d.mco_node_subscriptions("mc", "n1", &agents, false);
        assert_eq!(
            dests(&subs),
            [
                "/queue/mc.nodes",
                "/topic/mc.discovery.agent",
                "/topic/mc.rpcutil.agent"
            ]
        );
        assert_eq!(subs[0].selector.as_deref(), Some("mc_identity = 'n1'"));
        assert!(subs.iter().all(|s| s.id == IdHeader::OmitOn1_0));
        let subs = d.mco_node_subscriptions("mc", "n1", &agents, true);
        assert_eq!(
            subs[0].id,
            IdHeader::Given("mc_directed_to_identity".into())
        );
        assert_eq!(
            subs[1].id,
            IdHeader::Given("/topic/mc.discovery.agent".into())
        );
        assert_eq!(
            d.mco_broadcast("mc", "discovery"),
            "/topic/mc.discovery.agent"
        );
        assert_eq!(
            d.mco_directed("mc", "n1"),
            (
                "/queue/mc.nodes".to_owned(),
                Some(("mc_identity", "n1".to_owned()))
            )
        );
        let r = d.mco_reply_to("mc", "mco", 7, 3, "discovery");
        assert_eq!(r.reply_to, "/queue/mc.reply.mco_7.3");
        assert_eq!(r.subscribe.unwrap().destination, "/queue/mc.reply.mco_7.3");
        assert!(d.mco_client_subscriptions("mco", 7).is_empty());
        let mut h = Headers::new();
        d.mco_time_headers(&mut h, 1_795_437_413_250, 60);
        assert_eq!(h.get("timestamp"), Some("1795437413000"));
        assert_eq!(h.get("expires"), Some("1795437483000"));
        assert_eq!(d.vhost(), "mcollective");
        assert_eq!(d.queue_unsupported("/queue/x", false), None);
    }

    #[test]
    fn rabbitmq_conventions_are_the_rabbitmq_connectors() {
        let d = Dialect::RabbitMq;
        let agents = ["discovery".to_owned(), "rpcutil".to_owned()];
        let subs = d.mco_node_subscriptions("mc", "n1", &agents, false);
        assert_eq!(
            dests(&subs),
            [
                "/exchange/mc_directed/n1",
                "/exchange/mc_broadcast/discovery",
                "/exchange/mc_broadcast/rpcutil"
            ]
        );
        assert!(subs.iter().all(|s| s.selector.is_none()));
        assert_eq!(
            subs[0].id,
            IdHeader::Given("mc_n1_directed_to_identity".into())
        );
        assert_eq!(subs[2].id, IdHeader::Given("mc_broadcast_rpcutil".into()));
        assert_eq!(
            d.mco_broadcast("mc", "discovery"),
            "/exchange/mc_broadcast/discovery"
        );
        assert_eq!(
            d.mco_directed("mc", "n1"),
            ("/exchange/mc_directed/n1".to_owned(), None)
        );
        let r = d.mco_reply_to("mc", "mco", 7, 3, "rpcutil");
        assert_eq!(r.reply_to, "/temp-queue/mcollective_reply_rpcutil");
        assert!(
            r.subscribe.is_none(),
            "RabbitMQ subscribes the sender itself"
        );
        let mut h = Headers::new();
        d.mco_time_headers(&mut h, 1_795_437_413_250, 60);
        assert_eq!(h.get("expiration"), Some("70000"));
        assert_eq!(h.get("expires"), None);
        assert_eq!(d.vhost(), "/");
    }

    #[test]
    fn redis_conventions_are_the_redis_connectors() {
        let d = Dialect::Redis;
        let subs = d.mco_node_subscriptions("mc", "n1", &["discovery".to_owned()], true);
        assert_eq!(
            dests(&subs),
            ["mc::server::agents", "mc::server::direct::n1"]
        );
        assert_eq!(d.mco_broadcast("mc", "rpcutil"), "mc::server::agents");
        assert_eq!(d.mco_directed("mc", "n1").0, "mc::server::direct::n1");
        let r = d.mco_reply_to("mc", "mco", 7, 3, "discovery");
        assert_eq!(r.reply_to, "mcollective::reply::mco::7");
        assert!(r.subscribe.is_none());
        assert_eq!(
            dests(&d.mco_client_subscriptions("mco", 7)),
            ["mcollective::reply::mco::7"]
        );
        let mut h = Headers::new();
        d.mco_time_headers(&mut h, 1, 60);
        assert!(h.is_empty());
        assert!(d.queue_unsupported("/queue/x", true).is_some());
        assert!(d.queue_unsupported("/topic/x", false).is_some());
        assert_eq!(d.queue_unsupported("/topic/x", true), None);
    }
}
