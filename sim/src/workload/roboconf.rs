//! Roboconf's Deployment Manager (DM) and agents, as its RabbitMQ messaging talks, over
//! RabbitMQ's STOMP conventions (see [`RoboconfSpec`] for the layout).
//!
//! Every rack node is an agent; the DM runs on a host of its own. Each client reads its
//! server and credentials from the text of Roboconf's `net.roboconf.messaging.rabbitmq.cfg`
//! ([`stampede_broker::client::roboconf`]) and, when a `reconfigure` entry changes that
//! text at run time, connects to the new server, subscribes there and sends its heartbeat,
//! and only then closes its old connection, as Roboconf's `ReconfigurableClient` switches
//! clients. Roboconf's own client is AMQP; here each is the project's STOMP client with a
//! one-server list (Roboconf has no failover pool; its AMQP client retries the one server).
//!
//! What the clients observe goes to [`crate::history::RoboconfLog`]: models and imports
//! each agent received, heartbeats the DM received, and configuration switches. The
//! checker turns that into ready agents and the DM's PROBLEM verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stampede_broker::client::roboconf::{self as config, Change, RoboconfMessaging, Watched};
use stampede_broker::client::{
    ClientConfig, ClientEvent, Credentials, ServerAddr, ServerList, SubscribeSpec,
};
use stampede_broker::net::SharedNet;
use stampede_broker::proto::Headers;

use super::link::{Life, Link, LinkNet};
use super::mcollective::{body, field, identity};
use super::{ClientSpec, Env, Host, client_config};
use crate::dialect::{Conn, Dialect, Inbound, Inbox};
use crate::history::{ClientId, Recorder, RoboconfAgent, Role, Timebase};
use crate::scenario::{ReconnectSpec, RoboconfSpec, Scenario};
use crate::seed;

/// The exchanges Roboconf's clients use for `spec` (every one a topic exchange).
pub fn exchanges(spec: &RoboconfSpec) -> Vec<String> {
    let mut out = vec![dm_exchange(spec)];
    out.extend((0..spec.applications).map(|a| agents_exchange(spec, a)));
    out
}

fn app_name(app: u32) -> String {
    format!("app-{app}")
}

fn dm_exchange(spec: &RoboconfSpec) -> String {
    format!("{}.roboconf.dm", spec.domain)
}

fn agents_exchange(spec: &RoboconfSpec, app: u32) -> String {
    format!("{}.{}.agents", spec.domain, app_name(app))
}

/// The brokers Roboconf's clients are pointed at, in the order the messaging texts name
/// them: every client's pool in the history.
fn pool(spec: &RoboconfSpec, env: &Env) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let texts =
        std::iter::once(&spec.messaging).chain(spec.reconfigure.iter().map(|r| &r.messaging));
    for t in texts {
        if let Ok(m) = RoboconfMessaging::parse(t, config::FILE_NAME) {
            let name = env.broker_named(&m.host).0.to_owned();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Roboconf escapes a scoped instance path `/vm-x` into the routing key word `vm-x`.
fn machine_key(ident: &str) -> String {
    format!("machine.vm-{ident}")
}

fn component(tier: u32) -> String {
    format!("tier{tier}")
}

/// One agent's place in the deployment.
#[derive(Clone, Debug)]
struct Place {
    app: u32,
    tier: u32,
}

/// Agent `n` (counted over all racks) of a deployment with `spec`'s shape.
fn place(spec: &RoboconfSpec, n: u32) -> Place {
    Place {
        app: n % spec.applications,
        tier: (n / spec.applications) % spec.tiers,
    }
}

/// When a client takes each new configuration text: `at_s` plus its own draw within
/// `spread_s`.
fn schedule(spec: &RoboconfSpec, rng: &mut SmallRng) -> Vec<(Duration, String)> {
    spec.reconfigure
        .iter()
        .map(|r| {
            let extra = if r.spread_s > 0.0 {
                rng.random_range(0.0..=r.spread_s)
            } else {
                0.0
            };
            (Duration::from_secs_f64(r.at_s + extra), r.messaging.clone())
        })
        .collect()
}

/// The client configuration for a Roboconf messaging configuration: one server, the
/// broker it names (its port when it gives one), and its credentials (unless the run has
/// credentials of its own, as live runs against a secured broker do).
fn roboconf_client(
    env: &Env,
    base: &ClientConfig,
    m: &RoboconfMessaging,
) -> anyhow::Result<ClientConfig> {
    let (name, renamed) = env.broker_named(&m.host);
    let (host, port) = env
        .brokers
        .get(name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no broker '{}'", m.host))?;
    // A live target's server has its own port, whatever the text said.
    let port = if renamed {
        port
    } else {
        m.port.unwrap_or(port)
    };
    let addr = ServerAddr::new(host, port);
    let mut c = base.clone();
    c.servers = ServerList::new(vec![addr]).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Roboconf's messaging has no vhost setting: its AMQP client uses RabbitMQ's default,
    // whatever the target's dialect would choose for MCollective.
    c.host = Some(Dialect::RabbitMq.vhost().to_owned());
    c.credentials = env.credentials.clone().or_else(|| {
        Some(Credentials {
            login: m.username.clone(),
            passcode: m.password.clone(),
        })
    });
    Ok(c)
}

/// What every Roboconf client shares.
#[derive(Clone)]
struct Shared {
    env: Env,
    spec: Arc<RoboconfSpec>,
    recorder: Recorder,
    /// Agent identity → its client id.
    directory: Arc<BTreeMap<String, ClientId>>,
}

impl Shared {
    /// Starts a client for messaging configuration `m`, as generation `generation` of
    /// the process's clients: its events reach the history as events on the broker `m`
    /// names (its place in [`pool`]), and only while it is the current generation and
    /// `live` holds.
    fn start(
        &self,
        net: &SharedNet,
        base: &ClientConfig,
        m: &RoboconfMessaging,
        id: ClientId,
        current: &Arc<AtomicU64>,
        live: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Option<(Conn, Inbox)> {
        let config = match roboconf_client(&self.env, base, m) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("roboconf client {id:?}: {e}");
                return None;
            }
        };
        let generation = current.fetch_add(1, Ordering::Relaxed) + 1;
        let current = current.clone();
        let name = self.env.broker_named(&m.host).0;
        let at = pool(&self.spec, &self.env)
            .iter()
            .position(|b| b == name)
            .unwrap_or(0);
        let forward = move |ev: ClientEvent| {
            if !live() || current.load(Ordering::Relaxed) != generation {
                return None;
            }
            Some(match ev {
                ClientEvent::Attempt { number, delay, .. } => ClientEvent::Attempt {
                    server: at,
                    number,
                    delay,
                },
                ClientEvent::Connected { .. } => ClientEvent::Connected { server: at },
                ClientEvent::Failover { .. } => ClientEvent::Failover { from: at, to: at },
                other => other,
            })
        };
        Some(Dialect::RabbitMq.start_filtered(net, config, &self.recorder, id, forward))
    }

    fn send_to(&self, conn: &Conn, dest: String, text: &str, len: usize) {
        let conn = conn.clone();
        let b: Bytes = body(text, len);
        stampede_broker::task::spawn(async move {
            let _ = conn.send(&dest, Headers::new(), b).await;
        });
    }
}

/// Starts every agent (the racks' nodes) and the DM.
pub(super) fn build(
    scenario: &Scenario,
    spec: &RoboconfSpec,
    seed: u64,
    recorder: &Recorder,
    duration: Duration,
    env: &Env,
    hosts: &mut Vec<Host>,
) -> anyhow::Result<()> {
    let spec = Arc::new(spec.clone());
    let mut directory = BTreeMap::new();
    let mut agents = Vec::new();
    let mut n = 0u32;
    for rack in &scenario.racks {
        let mut rack_agents = Vec::new();
        for i in 0..rack.nodes {
            let ident = identity(rack, i);
            let place = place(&spec, n);
            n += 1;
            let id = recorder.register(ident.clone(), Role::Node, pool(&spec, env));
            directory.insert(ident.clone(), id);
            let agent_seed = seed::derive(seed, &format!("roboconf/{}/{i}", rack.name));
            let base = client_config(
                env,
                ClientSpec {
                    pool: &rack.servers,
                    policy: rack.policy,
                    reconnect: &rack.reconnect,
                    heartbeat_s: rack.heartbeat_s,
                    heartbeat_read_timeout: rack.heartbeat_read_timeout,
                    seed: agent_seed,
                },
            )?;
            let mut rng = SmallRng::seed_from_u64(agent_seed);
            let start = Duration::from_secs_f64(rng.random_range(0.0..=rack.start_spread_s));
            let link = env.node_links.link(&rack.name, i as usize);
            rack_agents.push(Agent {
                id,
                identity: ident,
                app: place.app,
                tier: place.tier,
                base,
                start,
                net: LinkNet::shared(env.net.clone(), link.clone(), agent_seed),
                link,
                seed: agent_seed,
                schedule: schedule(&spec, &mut rng),
            });
        }
        agents.push((rack.name.clone(), rack_agents));
    }
    let shared = Shared {
        env: env.clone(),
        spec: spec.clone(),
        recorder: recorder.clone(),
        directory: Arc::new(directory),
    };
    {
        let mut h = recorder.lock();
        for (_, rack_agents) in &agents {
            for a in rack_agents {
                h.roboconf.agents.push(RoboconfAgent {
                    id: a.id,
                    app: a.app,
                    tier: a.tier,
                    start_us: a.start.as_micros() as u64,
                });
            }
        }
    }
    for (rack, rack_agents) in agents {
        let shared = shared.clone();
        hosts.push(Host::new(rack, async move {
            for a in rack_agents {
                stampede_broker::task::spawn(run_agent(a, shared.clone()));
            }
            shared.recorder.timebase().sleep_until(duration).await;
        }));
    }
    let dm_id = recorder.register(spec.dm.clone(), Role::McoClient, pool(&spec, env));
    let dm_seed = seed::derive(seed, "roboconf/dm");
    let base = client_config(
        env,
        ClientSpec {
            pool: &[scenario.brokers[0].name.clone()],
            policy: crate::scenario::Policy::Activemq,
            reconnect: &ReconnectSpec::default(),
            heartbeat_s: 0,
            heartbeat_read_timeout: false,
            seed: dm_seed,
        },
    )?;
    let mut rng = SmallRng::seed_from_u64(dm_seed);
    let dm = Dm {
        id: dm_id,
        base,
        schedule: schedule(&spec, &mut rng),
    };
    let timebase = recorder.timebase();
    hosts.push(Host::new(spec.dm.clone(), async move {
        stampede_broker::task::spawn(run_dm(dm, shared));
        timebase.sleep_until(duration).await;
    }));
    Ok(())
}

struct Agent {
    id: ClientId,
    identity: String,
    app: u32,
    tier: u32,
    /// Everything but the server and credentials, which the messaging text gives.
    base: ClientConfig,
    start: Duration,
    net: SharedNet,
    link: Arc<Link>,
    seed: u64,
    /// When this agent takes each new messaging text.
    schedule: Vec<(Duration, String)>,
}

impl Agent {
    fn subscriptions(&self, spec: &RoboconfSpec) -> Vec<SubscribeSpec> {
        let x = agents_exchange(spec, self.app);
        let mut subs = vec![
            SubscribeSpec::new(format!("/exchange/{x}/{}", machine_key(&self.identity)))
                .id("machine"),
        ];
        if self.tier > 0 {
            subs.push(
                SubscribeSpec::new(format!(
                    "/exchange/{x}/those.that.import.{}",
                    component(self.tier - 1)
                ))
                .id("imports"),
            );
        }
        if self.tier + 1 < spec.tiers {
            subs.push(
                SubscribeSpec::new(format!(
                    "/exchange/{x}/those.that.export.{}",
                    component(self.tier)
                ))
                .id("exports"),
            );
        }
        subs
    }
}

/// Runs an agent for the whole run, one process life after another (`crash-nodes`).
async fn run_agent(agent: Agent, shared: Shared) {
    let timebase = shared.recorder.timebase();
    timebase.sleep_until(agent.start).await;
    let mut lives = agent.link.lives();
    loop {
        let born = match lives.wait_for(|l| !l.dead).await {
            Ok(l) => l.deaths,
            Err(_) => return,
        };
        if !agent_life(&agent, &shared, born, &mut lives).await {
            return;
        }
        shared.recorder.crashed(agent.id);
    }
}

/// One life of an agent's process: true when it was killed, false when the run ended.
async fn agent_life(
    agent: &Agent,
    shared: &Shared,
    born: u64,
    lives: &mut tokio::sync::watch::Receiver<Life>,
) -> bool {
    let died = async {
        let _ = lives.wait_for(|l| l.dead || l.deaths != born).await;
    };
    tokio::pin!(died);
    let spec = &shared.spec;
    let timebase = shared.recorder.timebase();
    let Ok(mut watched) = Watched::new(&spec.messaging, config::FILE_NAME) else {
        return false;
    };
    // A process started after changes to its messaging file reads the file as it is now.
    let now = Duration::from_micros(timebase.now_us());
    for (_, text) in agent.schedule.iter().filter(|(at, _)| *at <= now) {
        let _ = watched.update(text);
    }
    let mut base = agent.base.clone();
    if born > 0 {
        base.seed = seed::derive(agent.seed, &format!("life/{born}"));
    }
    let gate = |link: Arc<Link>| {
        move || {
            link.life()
                == Life {
                    dead: false,
                    deaths: born,
                }
        }
    };
    let generation = Arc::new(AtomicU64::new(0));
    let Some((mut conn, mut inbox)) = shared.start(
        &agent.net,
        &base,
        watched.current(),
        agent.id,
        &generation,
        gate(agent.link.clone()),
    ) else {
        return false;
    };
    let mut has_model = false;
    let heartbeat = Duration::from_secs_f64(spec.heartbeat_interval_s);
    let x = agents_exchange(spec, agent.app);
    let subscribe = |conn: Conn| {
        let subs = agent.subscriptions(spec);
        async move {
            for s in subs {
                let _ = conn.subscribe(s).await;
            }
        }
    };
    tokio::select! {
        biased;
        () = &mut died => return true,
        () = subscribe(conn.clone()) => {}
    }
    let heartbeat_text = |has_model: bool| {
        format!(
            "rc=hb;agent={};app={};model={}",
            agent.identity,
            app_name(agent.app),
            u8::from(!has_model)
        )
    };
    let dm_dest = format!("/exchange/{}/{}", dm_exchange(spec), app_name(agent.app));
    shared.send_to(
        &conn,
        dm_dest.clone(),
        &heartbeat_text(has_model),
        spec.notification_bytes,
    );
    let mut next_heartbeat = tokio::time::Instant::now() + heartbeat;
    // The changes still to come in this life (those after its start: one due while it
    // connected is taken at once).
    let later: Vec<(Duration, String)> = agent
        .schedule
        .iter()
        .filter(|(at, _)| *at > now)
        .cloned()
        .collect();
    let mut changes = Reconfigurations::new(watched, later, agent.identity.clone());
    let add_import = |conn: &Conn| {
        shared.send_to(
            conn,
            format!("/exchange/{x}/those.that.import.{}", component(agent.tier)),
            &format!(
                "rc=add;prefix={};from={}",
                component(agent.tier),
                agent.identity
            ),
            spec.notification_bytes,
        );
    };
    loop {
        tokio::select! {
            biased;
            () = &mut died => return true,
            msg = inbox.recv() => {
                let Some(msg) = msg else { return false };
                let b = msg.body();
                match field(b, "rc") {
                    Some("model") => {
                        shared.recorder.lock().roboconf.models.push((agent.id, timebase.now_us()));
                        if !has_model {
                            has_model = true;
                            if agent.tier > 0 {
                                let wanted = component(agent.tier - 1);
                                shared.send_to(
                                    &conn,
                                    format!("/exchange/{x}/those.that.export.{wanted}"),
                                    &format!("rc=req;prefix={wanted};from={}", agent.identity),
                                    spec.notification_bytes,
                                );
                            }
                            if agent.tier + 1 < spec.tiers {
                                add_import(&conn);
                            }
                        }
                    }
                    Some("req") if has_model && field(b, "prefix") == Some(&component(agent.tier)) => {
                        add_import(&conn);
                    }
                    Some("add") if agent.tier > 0 && field(b, "prefix") == Some(&component(agent.tier - 1)) => {
                        if let Some(from) = field(b, "from").and_then(|f| shared.directory.get(f)) {
                            shared.recorder.lock().roboconf.imports.push((agent.id, *from, timebase.now_us()));
                        }
                    }
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(next_heartbeat) => {
                shared.send_to(&conn, dm_dest.clone(), &heartbeat_text(has_model), spec.notification_bytes);
                next_heartbeat += heartbeat;
            }
            m = changes.next(timebase) => {
                let Some((new_conn, new_inbox)) = shared.start(&agent.net, &base, &m, agent.id, &generation, gate(agent.link.clone())) else {
                    continue;
                };
                tokio::select! {
                    biased;
                    () = &mut died => return true,
                    () = subscribe(new_conn.clone()) => {}
                }
                shared.send_to(&new_conn, dm_dest.clone(), &heartbeat_text(has_model), spec.notification_bytes);
                let old = std::mem::replace(&mut conn, new_conn);
                inbox = new_inbox;
                stampede_broker::task::spawn(async move { old.disconnect().await });
                shared.recorder.lock().roboconf.reconfigured.push((agent.id, timebase.now_us()));
            }
        }
    }
}

/// One client's messaging configuration and the changes to it still to come, in time
/// order.
struct Reconfigurations {
    watched: Watched,
    /// Still to come, the next one last.
    pending: Vec<(Duration, String)>,
    /// Who reads the file, for the log.
    who: String,
}

impl Reconfigurations {
    fn new(watched: Watched, mut schedule: Vec<(Duration, String)>, who: String) -> Self {
        schedule.reverse();
        Reconfigurations {
            watched,
            pending: schedule,
            who,
        }
    }

    fn current(&self) -> &RoboconfMessaging {
        self.watched.current()
    }

    /// Waits for the next change that asks for another connection (forever once none is
    /// left). A text that does not parse is refused and the old configuration stays, as
    /// Roboconf keeps it. Cancel-safe: nothing is taken before its time has come.
    async fn next(&mut self, timebase: Timebase) -> RoboconfMessaging {
        loop {
            let Some((at, _)) = self.pending.last() else {
                return std::future::pending().await;
            };
            timebase.sleep_until(*at).await;
            let Some((_, text)) = self.pending.pop() else {
                continue;
            };
            match self.watched.update(&text) {
                Change::None => {}
                Change::Rejected(e) => tracing::warn!(
                    who = %self.who,
                    "new messaging configuration refused, the old one stays: {e}"
                ),
                Change::Reconnect(m) => return m,
            }
        }
    }
}

struct Dm {
    id: ClientId,
    base: ClientConfig,
    schedule: Vec<(Duration, String)>,
}

/// The DM: listens to every application's agents and sends a model to each agent whose
/// heartbeat asks for one.
async fn run_dm(dm: Dm, shared: Shared) {
    let spec = shared.spec.clone();
    let timebase = shared.recorder.timebase();
    let Ok(watched) = Watched::new(&spec.messaging, config::FILE_NAME) else {
        return;
    };
    let mut changes = Reconfigurations::new(watched, dm.schedule.clone(), spec.dm.clone());
    let net = shared.env.net.clone();
    let generation = Arc::new(AtomicU64::new(0));
    let Some((mut conn, mut inbox)) = shared.start(
        &net,
        &dm.base,
        changes.current(),
        dm.id,
        &generation,
        || true,
    ) else {
        return;
    };
    let subscribe = |conn: Conn| {
        let spec = spec.clone();
        async move {
            for a in 0..spec.applications {
                let s =
                    SubscribeSpec::new(format!("/exchange/{}/{}", dm_exchange(&spec), app_name(a)))
                        .id(format!("dm-{}", app_name(a)));
                let _ = conn.subscribe(s).await;
            }
        }
    };
    subscribe(conn.clone()).await;
    shared.recorder.lock().roboconf.dm_started_us = Some(timebase.now_us());
    loop {
        tokio::select! {
            biased;
            msg = inbox.recv() => {
                let Some(msg) = msg else { return };
                heard(&shared, &conn, &msg);
            }
            m = changes.next(timebase) => {
                let Some((new_conn, new_inbox)) = shared.start(&net, &dm.base, &m, dm.id, &generation, || true) else {
                    continue;
                };
                subscribe(new_conn.clone()).await;
                let old = std::mem::replace(&mut conn, new_conn);
                // What the old connection still delivers is read until it closes.
                let mut old_inbox = std::mem::replace(&mut inbox, new_inbox);
                let (s, c) = (shared.clone(), conn.clone());
                stampede_broker::task::spawn(async move {
                    old.disconnect().await;
                    while let Some(msg) = old_inbox.recv().await {
                        heard(&s, &c, &msg);
                    }
                });
                shared.recorder.lock().roboconf.reconfigured.push((dm.id, timebase.now_us()));
            }
        }
    }
}

/// The DM's handling of one message: a heartbeat is recorded, and answered with the
/// model when it asks for one.
fn heard(shared: &Shared, conn: &Conn, msg: &Inbound) {
    let b = msg.body();
    if field(b, "rc") != Some("hb") {
        return;
    }
    let Some(ident) = field(b, "agent") else {
        return;
    };
    let Some(agent) = shared.directory.get(ident).copied() else {
        return;
    };
    let at = shared.recorder.timebase().now_us();
    shared.recorder.lock().roboconf.heartbeats.push((agent, at));
    if field(b, "model") == Some("1") {
        let Some(app) = field(b, "app") else { return };
        let dest = format!(
            "/exchange/{}.{app}.agents/{}",
            shared.spec.domain,
            machine_key(ident)
        );
        shared.send_to(
            conn,
            dest,
            &format!("rc=model;agent={ident}"),
            shared.spec.model_bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_spread_over_applications_then_tiers() {
        let spec = RoboconfSpec {
            applications: 3,
            tiers: 2,
            ..RoboconfSpec::default()
        };
        let places: Vec<(u32, u32)> = (0..7)
            .map(|n| {
                let p = place(&spec, n);
                (p.app, p.tier)
            })
            .collect();
        assert_eq!(
            places,
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 0)]
        );
        assert_eq!(
            exchanges(&spec),
            [
                "default.roboconf.dm",
                "default.app-0.agents",
                "default.app-1.agents",
                "default.app-2.agents"
            ]
        );
    }
}
