//! The MCollective fleet: racks of `mcollectived` nodes and `mco` clients, behaving on
//! the wire as MCollective 2.12's activemq connector does (see the captured frames).
//!
//! A node subscribes to `/queue/<c>.nodes` with the selector `mc_identity = '<identity>'`
//! and to `/topic/<c>.<agent>.agent` for each agent. A client sends a discovery broadcast
//! to `/topic/<c>.discovery.agent` (or directed requests to `/queue/<c>.nodes` with an
//! `mc_identity` header) with `reply-to` naming a fresh `/queue/<c>.reply.<id>_<pid>.<seq>`
//! that it subscribes to first, collects replies for the discovery timeout, and
//! unsubscribes. Headers are those MCollective sends (`timestamp`, `expires` set to now
//! plus the TTL plus 10 s, `reply-to`, `mc_sender`, `mc_identity`); bodies have the sizes
//! of Marshal payloads and carry the request id the simulator needs to check replies.
//!
//! Those are the activemq connector's conventions, used in the simulator and against
//! Stampede and ActiveMQ. Against RabbitMQ and Redis the nodes and clients follow the
//! rabbitmq and redis connectors instead; the destinations and headers come from the
//! [`Dialect`], the behaviour is the same.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stampede_broker::proto::Headers;

use super::link::{Life, Link, LinkNet};
use super::{ClientSpec, Env, Host, client_config, record_path};
use stampede_broker::net::SharedNet;

use crate::dialect::{Conn, Dialect, Inbox, PendingSubscription, QueuedSend};

use crate::history::{ClientId, McoObservation, McoRequest, Recorder, RequestKind, Role};
use crate::scenario::{McoSpec, RackSpec, ReconnectSpec, Scenario};
use crate::seed;

/// The pid part of reply queue names in the simulator (MCollective uses the client's
/// process id).
const CLIENT_PID: u32 = 16202;

/// The pid part of reply queue names: [`CLIENT_PID`] in the simulator; in a live run, one
/// drawn from the run's tag (its process and start time), as each `mco` process has a pid
/// of its own. Runs one after another against one broker must not share reply queues: a
/// queue keeps the replies that came after its client had gone (a run past the knee
/// leaves thousands), and the next run's client, subscribing to the same name, would
/// take them as its own (a calibration's request/reply runs once received 18,000 replies
/// left by the fan-out runs before them).
fn client_pid(run_tag: Option<&str>) -> u32 {
    match run_tag {
        None => CLIENT_PID,
        Some(tag) => {
            // FNV-1a: a stable hash, within the range of Linux pids.
            let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            1000 + (h % 4_000_000) as u32
        }
    }
}

/// Request ids: discovery rounds and directed requests live in separate ranges.
fn request_id(kind: RequestKind, round: u64, client: usize) -> u64 {
    let tag = match kind {
        RequestKind::Discovery => 1u64,
        RequestKind::Directed => 2u64,
    };
    (tag << 48) | (round << 12) | client as u64
}

/// A body of `len` bytes starting with `prefix`, padded like Ruby Marshal data (which
/// contains NUL bytes, so the broker must honour `content-length`).
pub(crate) fn body(prefix: &str, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len.max(prefix.len() + 1));
    v.extend_from_slice(prefix.as_bytes());
    v.push(0);
    let start = v.len();
    if len > start {
        // Padding: `x`, with a NUL at every position divisible by 7.
        v.resize(len, b'x');
        for i in (start.next_multiple_of(7)..len).step_by(7) {
            v[i] = 0;
        }
    }
    Bytes::from(v)
}

/// Reads `key=value;` fields from the start of a body.
pub(crate) fn field<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    let text = std::str::from_utf8(&body[..end]).ok()?;
    text.split(';')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

pub(crate) fn identity(rack: &RackSpec, i: u32) -> String {
    let prefix = rack
        .identity_prefix
        .clone()
        .unwrap_or_else(|| format!("{}-node-", rack.name));
    format!("{prefix}{i:04}")
}

/// Starts every rack's nodes and every `mco` client.
pub(super) fn build(
    scenario: &Scenario,
    spec: &McoSpec,
    seed: u64,
    recorder: &Recorder,
    duration: Duration,
    env: &Env,
    hosts: &mut Vec<Host>,
) -> anyhow::Result<()> {
    let active = scenario.workload.mcollective.is_some();
    let mut directory: BTreeMap<String, ClientId> = BTreeMap::new();
    for rack in &scenario.racks {
        let mut nodes = Vec::new();
        for i in 0..rack.nodes {
            let ident = identity(rack, i);
            let mut pool = rack.servers.clone();
            if rack.rotate_pool && !pool.is_empty() {
                let len = pool.len();
                pool.rotate_left(i as usize % len);
            }
            let id = recorder.register(ident.clone(), Role::Node, pool.clone());
            directory.insert(ident.clone(), id);
            let node_seed = seed::derive(seed, &format!("node/{}/{i}", rack.name));
            let mut config = client_config(
                env,
                ClientSpec {
                    pool: &pool,
                    policy: rack.policy,
                    reconnect: &rack.reconnect,
                    heartbeat_s: rack.heartbeat_s,
                    heartbeat_read_timeout: rack.heartbeat_read_timeout,
                    seed: node_seed,
                },
            )?;
            // A reply that cannot be written within its request's TTL is pointless.
            config.send_timeout = Some(Duration::from_secs(spec.ttl_s));
            let mut rng = SmallRng::seed_from_u64(node_seed);
            let skew_ms = rack
                .clock_skew_ms
                .map_or(0, |[lo, hi]| rng.random_range(lo..=hi));
            let start = Duration::from_secs_f64(rng.random_range(0.0..=rack.start_spread_s));
            let link = env.node_links.link(&rack.name, i as usize);
            nodes.push(Node {
                id,
                identity: ident,
                config,
                start,
                skew_ms,
                clock_jump_ms: env.rack_clocks.cell(&rack.name),
                net: LinkNet::shared(env.net.clone(), link.clone(), node_seed),
                link,
                seed: node_seed,
                versioned_ids: rack.heartbeat_s > 0,
            });
        }
        let recorder = recorder.clone();
        let spec = Arc::new(spec.clone());
        let epoch_ms = scenario.epoch_ms;
        let dialect = env.dialect;
        hosts.push(Host::new(rack.name.clone(), async move {
            for node in nodes {
                stampede_broker::task::spawn(run_node(
                    node,
                    dialect,
                    spec.clone(),
                    recorder.clone(),
                    epoch_ms,
                    active,
                ));
            }
            recorder.timebase().sleep_until(duration).await;
        }));
    }
    if !active {
        return Ok(());
    }
    let spec = Arc::new(spec.clone());
    let directory = Arc::new(directory);
    let all_nodes: Arc<Vec<ClientId>> = Arc::new(directory.values().copied().collect());
    let names: Arc<BTreeMap<ClientId, String>> = Arc::new(
        directory
            .iter()
            .map(|(name, id)| (*id, name.clone()))
            .collect(),
    );
    for (index, c) in spec.clients.iter().enumerate() {
        let id = recorder.register(c.name.clone(), Role::McoClient, c.servers.clone());
        let client_seed = seed::derive(seed, &format!("mco/{}", c.name));
        let mut config = client_config(
            env,
            ClientSpec {
                pool: &c.servers,
                policy: c.policy,
                reconnect: &ReconnectSpec::default(),
                heartbeat_s: 0,
                heartbeat_read_timeout: false,
                seed: client_seed,
            },
        )?;
        // `mco` wraps each publish in `publish_timeout` (2 s by default).
        config.send_timeout = Some(Duration::from_secs(2));
        let link = env.node_links.link(&c.name, 0);
        let mco = McoClient {
            net: LinkNet::shared(env.net.clone(), link.clone(), client_seed),
            link,
            dialect: env.dialect,
            index,
            id,
            name: c.name.clone(),
            config,
            spec: spec.clone(),
            recorder: recorder.clone(),
            directory: directory.clone(),
            names: names.clone(),
            pid: client_pid(env.run_tag.as_deref()),
            nodes: all_nodes.clone(),
            seed: client_seed,
            epoch_ms: scenario.epoch_ms,
            end: duration,
        };
        let timebase = recorder.timebase();
        hosts.push(Host::new(c.name.clone(), async move {
            // The host ends with the run even if the client is stuck reconnecting.
            stampede_broker::task::spawn(mco.run());
            timebase.sleep_until(duration).await;
        }));
    }
    Ok(())
}

struct Node {
    id: ClientId,
    identity: String,
    config: stampede_broker::client::ClientConfig,
    start: Duration,
    skew_ms: i64,
    /// The rack's current clock jump (`clock-skew` faults), added to `skew_ms`.
    clock_jump_ms: Arc<AtomicI64>,
    /// The network through the node's own cable (`isolate-nodes` faults).
    net: SharedNet,
    /// The node's cable and process (`crash-nodes` kills the process).
    link: Arc<Link>,
    seed: u64,
    /// STOMP 1.1 (heart-beats on): subscriptions carry ids as MCollective sets them.
    versioned_ids: bool,
}

/// Runs a node for the whole run: one process life after another, as `crash-nodes`
/// kills the process and starts it again.
async fn run_node(
    node: Node,
    dialect: Dialect,
    spec: Arc<McoSpec>,
    recorder: Recorder,
    epoch_ms: u64,
    active: bool,
) {
    let timebase = recorder.timebase();
    timebase.sleep_until(node.start).await;
    let mut lives = node.link.lives();
    let mut rng = SmallRng::seed_from_u64(seed::derive(node.seed, "behaviour"));
    loop {
        // A process killed before it was first started waits for its start.
        let born = match lives.wait_for(|l| !l.dead).await {
            Ok(l) => l.deaths,
            Err(_) => return,
        };
        let mut config = node.config.clone();
        if born > 0 {
            // A new process: its own back-off draws.
            config.seed = seed::derive(node.seed, &format!("life/{born}"));
        }
        let link = node.link.clone();
        let (client, messages) =
            dialect.start_gated(&node.net, config, &recorder, node.id, move || {
                link.life()
                    == Life {
                        dead: false,
                        deaths: born,
                    }
            });
        let life = NodeLife {
            node: &node,
            dialect,
            spec: &spec,
            recorder: &recorder,
            epoch_ms,
            client,
            born,
        };
        if !life.run(messages, &mut lives, &mut rng, active).await {
            return;
        }
        // The process died: whatever it had taken and not answered dies with it (the
        // reply tasks are aborted with `life`), and its connection closes.
        recorder.crashed(node.id);
    }
}

/// One life of a node's process, from its start to its death or the end of the run.
struct NodeLife<'a> {
    node: &'a Node,
    dialect: Dialect,
    spec: &'a McoSpec,
    recorder: &'a Recorder,
    epoch_ms: u64,
    client: Conn,
    /// The process's death count when this life began.
    born: u64,
}

impl NodeLife<'_> {
    /// Subscribes and serves requests until the process is killed (true) or the run
    /// ends (false).
    async fn run(
        self,
        mut messages: Inbox,
        lives: &mut tokio::sync::watch::Receiver<Life>,
        rng: &mut SmallRng,
        active: bool,
    ) -> bool {
        // A kill and a start between two looks still end this life.
        let born = self.born;
        let died = async {
            let _ = lives.wait_for(|l| l.dead || l.deaths != born).await;
        };
        tokio::pin!(died);
        let node = self.node;
        let spec = self.spec;
        let c = &spec.collective;
        let subscribe = async {
            for sub in self.dialect.mco_node_subscriptions(
                c,
                &node.identity,
                &spec.agents,
                node.versioned_ids,
            ) {
                let _ = self.client.subscribe(sub).await;
            }
        };
        tokio::select! {
            biased;
            () = &mut died => return true,
            () = subscribe => {}
        }
        if !active {
            // Connected and subscribed; nothing else to do.
            loop {
                tokio::select! {
                    biased;
                    () = &mut died => return true,
                    msg = messages.recv() => if msg.is_none() { return false },
                }
            }
        }
        let timebase = self.recorder.timebase();
        let registration = (spec.registration_interval_s > 0.0)
            .then(|| Duration::from_secs_f64(spec.registration_interval_s));
        let mut next_registration = registration.map(|_| tokio::time::Instant::now());
        // Replies waiting for their delay, in the order they are due (then taken). They
        // die with the process, as a real node's threads would.
        let mut replies: BTreeMap<(tokio::time::Instant, u64), Reply> = BTreeMap::new();
        let mut taken = 0u64;
        // Replies handed to the client and not yet written (kept until they are: the
        // client gives up a send nobody waits for), oldest first.
        let mut writing: std::collections::VecDeque<QueuedSend> = std::collections::VecDeque::new();
        loop {
            let registration_due = async {
                match next_registration {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let reply_due = replies.first_key_value().map(|((at, _), _)| *at);
            tokio::select! {
                biased;
                () = &mut died => return true,
                _ = async {
                    match writing.front_mut() {
                        Some(w) => w.await,
                        None => std::future::pending().await,
                    }
                } => {
                    writing.pop_front();
                }
                () = async {
                    match reply_due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = tokio::time::Instant::now();
                    while let Some(entry) = replies.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let reply = entry.remove();
                        writing.push_back(self.send_reply(reply).await);
                    }
                }
                msg = messages.recv() => {
                    let Some(msg) = msg else { return false };
                    if let Some(reply) = self.take_request(&msg, rng) {
                        taken += 1;
                        replies.insert((reply.due, taken), reply);
                    }
                }
                () = registration_due => {
                    let now_ms = self.epoch_ms + timebase.now_us() / 1000;
                    let mut headers = Headers::new();
                    self.dialect.mco_time_headers(&mut headers, now_ms, spec.ttl_s);
                    headers.push("mc_sender", node.identity.clone());
                    let dest = self.dialect.mco_broadcast(c, "registration");
                    let _ = self.client.send(&dest, headers, body(&format!("reg={}", node.identity), spec.request_bytes)).await;
                    next_registration = registration.map(|d| tokio::time::Instant::now() + d);
                }
            }
        }
    }

    /// Records a request the node received and, unless it is too old by the node's clock
    /// or has nowhere to reply to, returns the reply to send once its delay is over.
    fn take_request(&self, msg: &crate::dialect::Inbound, rng: &mut SmallRng) -> Option<Reply> {
        let node = self.node;
        let spec = self.spec;
        let timebase = self.recorder.timebase();
        record_path(self.recorder, node.id, &self.client, msg);
        let request = field(msg.body(), "req").and_then(|r| r.parse::<u64>().ok())?;
        let at_us = timebase.now_us();
        self.recorder
            .lock()
            .request_deliveries
            .push(McoObservation {
                request,
                node: node.id,
                at_us,
            });
        // Message#validate: the node drops requests older than their TTL by its own
        // (possibly skewed) clock.
        let node_now_ms = i64::try_from(self.epoch_ms + at_us / 1000)
            .unwrap_or(i64::MAX)
            .saturating_add(node.skew_ms)
            .saturating_add(node.clock_jump_ms.load(Ordering::Relaxed));
        let msgtime_ms = field(msg.body(), "t")
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(node_now_ms);
        if node_now_ms.saturating_sub(msgtime_ms) > (spec.ttl_s as i64).saturating_mul(1000) {
            return None;
        }
        let reply_to = msg.header("reply-to")?.to_owned();
        let delay = Duration::from_millis(
            rng.random_range(spec.reply_delay_ms[0]..=spec.reply_delay_ms[1]),
        );
        Some(Reply {
            due: tokio::time::Instant::now() + delay,
            request,
            reply_to,
        })
    }

    /// Hands a reply whose delay is over to the client; the node waits for it to be
    /// written in its loop, so that the next one due may share its write.
    async fn send_reply(&self, reply: Reply) -> QueuedSend {
        let spec = self.spec;
        let identity = &self.node.identity;
        let now_ms = self.epoch_ms + self.recorder.timebase().now_us() / 1000;
        let mut headers = Headers::new();
        self.dialect
            .mco_time_headers(&mut headers, now_ms, spec.ttl_s);
        headers.push("mc_sender", identity.clone());
        let b = body(
            &format!("req={};node={identity}", reply.request),
            spec.reply_bytes,
        );
        self.client.send_queued(&reply.reply_to, headers, b).await
    }
}

/// A node's reply to a request, waiting for its delay (the agent's work).
struct Reply {
    due: tokio::time::Instant,
    request: u64,
    reply_to: String,
}

struct McoClient {
    /// The network through the client's own cable and process (`crash-clients`).
    net: SharedNet,
    link: Arc<Link>,
    dialect: Dialect,
    index: usize,
    id: ClientId,
    name: String,
    config: stampede_broker::client::ClientConfig,
    spec: Arc<McoSpec>,
    recorder: Recorder,
    directory: Arc<BTreeMap<String, ClientId>>,
    /// The directory the other way round: a directed request's targets by name.
    names: Arc<BTreeMap<ClientId, String>>,
    /// The pid of its first life ([`client_pid`]).
    pid: u32,
    nodes: Arc<Vec<ClientId>>,
    seed: u64,
    epoch_ms: u64,
    end: Duration,
}

/// What an `mco` client's lives share: the requests still to make, and the draws.
struct McoState {
    schedule: BTreeSet<(Duration, u8, u64)>,
    /// Requests made so far (numbers the reply queues).
    seq: u64,
    rng: SmallRng,
}

/// A request whose SENDs the client has not all written yet.
struct Writing {
    /// Its record, but for what the writes tell.
    request: McoRequest,
    /// The SENDs still to be written, in order, with the targets each reaches.
    sends: VecDeque<(Vec<ClientId>, QueuedSend)>,
}

impl Writing {
    /// Waits for the next SEND's outcome; the targets of one that failed are unwritten.
    async fn next_written(&mut self) {
        if let Some((targets, send)) = self.sends.front_mut() {
            let failed = send.await.is_err();
            if failed {
                self.request.unwritten.extend(targets.iter().copied());
            }
            self.sends.pop_front();
        }
    }

    /// The record, every SEND's outcome known at `now_us`: sent if any SEND was.
    fn written(mut self, now_us: u64) -> McoRequest {
        let r = &mut self.request;
        let sent = r.unwritten.len() < r.expected.len()
            || (r.expected.is_empty() && r.unwritten.is_empty());
        if sent {
            r.sent_us = Some(now_us);
        } else {
            r.unwritten.clear();
        }
        self.request
    }

    /// The record when the process died with SENDs unwritten: the client gives those up.
    fn given_up(mut self, now_us: u64) -> McoRequest {
        for (targets, _) in std::mem::take(&mut self.sends) {
            self.request.unwritten.extend(targets);
        }
        self.written(now_us)
    }
}

impl McoClient {
    /// Runs the client for the whole run: one process life after another, as
    /// `crash-clients` kills the process and starts it again.
    async fn run(self) {
        let timebase = self.recorder.timebase();
        let spec = &self.spec;
        let stop = spec
            .stop_s
            .map_or(self.end, Duration::from_secs_f64)
            .min(self.end);
        let window = Duration::from_secs_f64(spec.discovery_timeout_s);
        let start = Duration::from_secs_f64(spec.start_s);
        let mut schedule: BTreeSet<(Duration, u8, u64)> = BTreeSet::new();
        let push_series =
            |interval_s: f64, kind: u8, schedule: &mut BTreeSet<(Duration, u8, u64)>| {
                if interval_s <= 0.0 {
                    return;
                }
                let interval = Duration::from_secs_f64(interval_s);
                // Directed requests are offset by half an interval so they never coincide
                // with a discovery round.
                let mut at = start
                    + if kind == 1 {
                        interval / 2
                    } else {
                        Duration::ZERO
                    };
                let mut round = 0;
                while at + window <= stop {
                    schedule.insert((at, kind, round));
                    round += 1;
                    at += interval;
                }
            };
        push_series(spec.discovery_interval_s, 0, &mut schedule);
        push_series(spec.directed_interval_s, 1, &mut schedule);
        let mut state = McoState {
            schedule,
            seq: 0,
            rng: SmallRng::seed_from_u64(seed::derive(self.seed, "directed")),
        };
        let mut lives = self.link.lives();
        loop {
            let born = match lives.wait_for(|l| !l.dead).await {
                Ok(l) => l.deaths,
                Err(_) => return,
            };
            // A dead `mco` made none of the requests due while it was down.
            let now = Duration::from_micros(timebase.now_us());
            while state.schedule.first().is_some_and(|(at, _, _)| *at < now) {
                state.schedule.pop_first();
            }
            let mut config = self.config.clone();
            if born > 0 {
                // A new process: its own back-off draws.
                config.seed = seed::derive(self.seed, &format!("life/{born}"));
            }
            let link = self.link.clone();
            let (client, messages) =
                self.dialect
                    .start_gated(&self.net, config, &self.recorder, self.id, move || {
                        link.life()
                            == Life {
                                dead: false,
                                deaths: born,
                            }
                    });
            if !self
                .life(client, messages, born, &mut state, &mut lives)
                .await
            {
                return;
            }
            // The process died: its connection closes, and the replies to the requests
            // it was waiting for go to reply queues nobody reads any more.
            self.recorder.crashed(self.id);
        }
    }

    /// One life of the client's process: subscribes, makes the requests that fall due,
    /// and collects their replies, until the process is killed (true) or the run ends
    /// (false). A new life is a new process, with a new pid in its reply queues' names.
    async fn life(
        &self,
        client: Conn,
        mut messages: Inbox,
        born: u64,
        state: &mut McoState,
        lives: &mut tokio::sync::watch::Receiver<Life>,
    ) -> bool {
        // A kill and a start between two looks still end this life.
        let died = async {
            let _ = lives.wait_for(|l| l.dead || l.deaths != born).await;
        };
        tokio::pin!(died);
        let pid = self.pid.wrapping_add(born as u32);
        let subscribe = async {
            for sub in self.dialect.mco_client_subscriptions(&self.name, pid) {
                let _ = client.subscribe(sub).await;
            }
        };
        tokio::select! {
            biased;
            () = &mut died => return true,
            () = subscribe => {}
        }
        let timebase = self.recorder.timebase();
        let spec = &self.spec;
        let window = Duration::from_secs_f64(spec.discovery_timeout_s);
        // The requests whose replies are being collected, by when their windows close
        // (and id), with their reply queues' subscriptions if they have their own. The
        // loop goes round once per reply, so finding the next close must not cost a pass
        // over every open request (thousands at a time; that pass was most of the live
        // generator's CPU at 1,600 requests/s).
        let mut open: BTreeMap<(Duration, u64), Option<PendingSubscription>> = BTreeMap::new();
        // Requests handed to the client and not yet written, oldest first. The loop goes
        // on taking replies meanwhile: a client that stopped reading until each request
        // was written would leave its replies in the broker (and, live, in its socket)
        // whenever its own writes wait for a busy CPU.
        let mut writing: VecDeque<Writing> = VecDeque::new();
        loop {
            let next_request = state.schedule.first().map(|(at, _, _)| *at);
            let next_close = open.first_key_value().map(|((until, _), _)| *until);
            let wake = match (next_request, next_close) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(wake) = wake else {
                break;
            };
            tokio::select! {
                biased;
                () = &mut died => {
                    self.give_up(writing);
                    return true;
                }
                () = async {
                    if writing.is_empty() {
                        std::future::pending().await
                    } else {
                        self.next_written(&mut writing).await
                    }
                } => {}
                msg = messages.recv() => {
                    let Some(msg) = msg else { break };
                    self.take_reply(&client, &msg);
                }
                () = timebase.sleep_until(wake) => {
                    let now = Duration::from_micros(timebase.now_us());
                    // Close windows that ended: UNSUBSCRIBE the reply queue.
                    let mut ended = Vec::new();
                    while let Some(entry) = open.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let ((_, id), subscription) = entry.remove_entry();
                        ended.push((id, subscription));
                    }
                    // Unsubscribed in the order of their ids.
                    ended.sort_unstable_by_key(|(id, _)| *id);
                    for (_, subscription) in ended {
                        if let Some(sub) = subscription {
                            let end = async {
                                if let Ok(sub) = sub.made().await {
                                    let _ = client.unsubscribe_queued(sub).await;
                                }
                            };
                            self.taking_replies(&client, &mut messages, end).await;
                        }
                    }
                    while let Some(&(at, kind, round)) = state.schedule.first() {
                        if at > now {
                            break;
                        }
                        state.schedule.pop_first();
                        state.seq += 1;
                        let kind = if kind == 0 { RequestKind::Discovery } else { RequestKind::Directed };
                        let id = request_id(kind, round, self.index);
                        let targets: Vec<ClientId> = match kind {
                            RequestKind::Discovery => self.nodes.as_ref().clone(),
                            RequestKind::Directed => {
                                let n = (spec.directed_targets as usize).min(self.nodes.len());
                                let mut picked = BTreeSet::new();
                                while picked.len() < n {
                                    picked.insert(self.nodes[state.rng.random_range(0..self.nodes.len())]);
                                }
                                picked.into_iter().collect()
                            }
                        };
                        let agent = match kind {
                            RequestKind::Discovery => "discovery",
                            RequestKind::Directed => spec.agents.iter().find(|a| *a != "discovery").map_or("discovery", String::as_str),
                        };
                        let reply = self.dialect.mco_reply_to(&spec.collective, &self.name, pid, state.seq, agent);
                        let subscription = match reply.subscribe {
                            Some(sub) => self.taking_replies(&client, &mut messages, client.subscribe_queued(sub)).await.ok(),
                            None => None,
                        };
                        let intended_us = at.as_micros() as u64;
                        let send = self.send_request(&client, kind, id, &reply.reply_to, &targets, intended_us);
                        let sends = self.taking_replies(&client, &mut messages, send).await;
                        let until = now + window;
                        writing.push_back(Writing {
                            request: McoRequest {
                                id,
                                client: self.id,
                                round: match kind {
                                    RequestKind::Discovery => round,
                                    RequestKind::Directed => (1 << 40) | round,
                                },
                                kind,
                                intended_us,
                                sent_us: None,
                                expected: targets,
                                unwritten: Vec::new(),
                                window_end_us: until.as_micros() as u64,
                            },
                            sends,
                        });
                        open.insert((until, id), subscription);
                    }
                }
            }
        }
        // Keep the connection until the end of the run (the last requests are written).
        let written = async {
            while !writing.is_empty() {
                self.next_written(&mut writing).await;
            }
            timebase.sleep_until(self.end).await;
        };
        tokio::select! {
            biased;
            () = &mut died => {
                self.give_up(writing);
                return true;
            }
            () = written => {}
        }
        let _ = client.disconnect().await;
        false
    }

    /// Records a reply the client got.
    fn take_reply(&self, client: &Conn, msg: &crate::dialect::Inbound) {
        record_path(&self.recorder, self.id, client, msg);
        let request = field(msg.body(), "req").and_then(|r| r.parse::<u64>().ok());
        let node = field(msg.body(), "node")
            .and_then(|n| self.directory.get(n))
            .copied();
        if let (Some(request), Some(node)) = (request, node) {
            let at_us = self.recorder.timebase().now_us();
            self.recorder.lock().replies.push(McoObservation {
                request,
                node,
                at_us,
            });
        }
    }

    /// Runs `work` (handing frames to the client, which waits while the client's queue
    /// of frames to write is full) and takes the replies that arrive meanwhile. A client
    /// that stopped reading until its requests were handed over would close a loop of
    /// full queues: its replies stay in the broker, the reply queue fills, the nodes'
    /// replies wait, so the nodes stop taking requests, the requests' queue fills, and
    /// the broker stops reading this client's requests (live request/reply stalled for
    /// seconds this way at 2,000 requests/s with neither process saturated).
    async fn taking_replies<T>(
        &self,
        client: &Conn,
        messages: &mut Inbox,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        while_taking(messages, work, |msg| self.take_reply(client, &msg)).await
    }

    /// Waits for the next SEND of the oldest request in `writing`, and records that
    /// request once every one of its SENDs' outcomes is known.
    async fn next_written(&self, writing: &mut VecDeque<Writing>) {
        let Some(w) = writing.front_mut() else { return };
        w.next_written().await;
        if w.sends.is_empty()
            && let Some(w) = writing.pop_front()
        {
            let now_us = self.recorder.timebase().now_us();
            self.recorder.lock().requests.push(w.written(now_us));
        }
    }

    /// Records the requests of a process that died with SENDs unwritten.
    fn give_up(&self, writing: VecDeque<Writing>) {
        let now_us = self.recorder.timebase().now_us();
        for w in writing {
            self.recorder.lock().requests.push(w.given_up(now_us));
        }
    }

    /// Hands the request's SEND frames to the client; returns each SEND (to be waited
    /// for) with the targets it reaches (a broadcast's one SEND reaches them all).
    async fn send_request(
        &self,
        client: &Conn,
        kind: RequestKind,
        id: u64,
        reply_queue: &str,
        targets: &[ClientId],
        intended_us: u64,
    ) -> VecDeque<(Vec<ClientId>, QueuedSend)> {
        let spec = &self.spec;
        let now_ms = self.epoch_ms + intended_us / 1000;
        let headers = |selects: Option<(&str, String)>| {
            let mut h = Headers::new();
            self.dialect.mco_time_headers(&mut h, now_ms, spec.ttl_s);
            h.push("reply-to", reply_queue.to_owned());
            if let Some((name, value)) = selects {
                h.push(name, value);
            }
            h.push("mc_sender", self.name.clone());
            h
        };
        let b = body(&format!("req={id};t={now_ms}"), spec.request_bytes);
        match kind {
            RequestKind::Discovery => {
                let dest = self.dialect.mco_broadcast(&spec.collective, "discovery");
                let send = client.send_queued(&dest, headers(None), b).await;
                VecDeque::from([(targets.to_vec(), send)])
            }
            RequestKind::Directed => {
                let mut sends = VecDeque::new();
                for t in targets {
                    let Some(name) = self.names.get(t) else {
                        continue;
                    };
                    let (dest, selects) = self.dialect.mco_directed(&spec.collective, name);
                    let send = client.send_queued(&dest, headers(selects), b.clone()).await;
                    sends.push_back((vec![*t], send));
                }
                sends
            }
        }
    }
}

/// Runs `work` and hands every message that arrives meanwhile to `take` (see
/// [`McoClient::taking_replies`]).
async fn while_taking<T>(
    messages: &mut Inbox,
    work: impl std::future::Future<Output = T>,
    mut take: impl FnMut(crate::dialect::Inbound),
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            Some(msg) = messages.recv() => take(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_runs_name_their_reply_queues_apart() {
        assert_eq!(client_pid(None), CLIENT_PID, "the simulator keeps its pid");
        let a = client_pid(Some("bench-request-reply-4242-1765160000000"));
        let b = client_pid(Some("bench-request-reply-4242-1765160011500"));
        assert_ne!(a, b, "two runs of one process");
        assert_eq!(
            a,
            client_pid(Some("bench-request-reply-4242-1765160000000"))
        );
        let q = |pid| Dialect::ActiveMq.mco_reply_to("mcollective", "mco", pid, 1, "rpcutil");
        assert_ne!(q(a).reply_to, q(b).reply_to);
        assert!((1000..4_001_000).contains(&a));
    }

    /// The loop of full queues in miniature: the "broker" takes the client's request
    /// only once it has handed over three replies, through a queue that holds one. A
    /// client that only waited for its request to be taken (`work.await`) would never
    /// see it taken.
    #[tokio::test]
    async fn replies_are_taken_while_a_request_waits_for_room() {
        let (replies, rx) = tokio::sync::mpsc::channel(1);
        let mut inbox = Inbox::Redis(rx);
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            for i in 0..3u8 {
                let reply = crate::dialect::redis::RedisMessage {
                    channel: "replies".to_owned(),
                    headers: Headers::new(),
                    body: Bytes::from(vec![i]),
                };
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
            let _ = taken_tx.send(());
        });
        let mut got = Vec::new();
        let request = while_taking(&mut inbox, taken_rx, |msg| {
            if let crate::dialect::Inbound::Redis(m) = msg {
                got.push(m.body[0]);
            }
        });
        let outcome = tokio::time::timeout(Duration::from_secs(5), request).await;
        assert!(matches!(outcome, Ok(Ok(()))), "the request was never taken");
        // The queue holds one: the third reply fitted only once two had been taken (it
        // may still wait in the inbox for the client's main loop).
        assert!(got.len() >= 2 && [0, 1, 2].starts_with(&got), "{got:?}");
    }

    #[test]
    fn bodies_carry_fields_and_have_the_requested_size() {
        let b = body("req=42;t=1795437413000", 350);
        assert_eq!(b.len(), 350);
        assert!(b.contains(&0));
        assert_eq!(field(&b, "req"), Some("42"));
        assert_eq!(field(&b, "t"), Some("1795437413000"));
        assert_eq!(field(&b, "node"), None);
    }

    #[test]
    fn request_ids_are_distinct_across_kinds_rounds_and_clients() {
        let mut seen = BTreeSet::new();
        for kind in [RequestKind::Discovery, RequestKind::Directed] {
            for round in 0..100 {
                for client in 0..5 {
                    assert!(seen.insert(request_id(kind, round, client)));
                }
            }
        }
    }
}
