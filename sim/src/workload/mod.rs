//! Workloads: the simulated clients that generate traffic and record what they observe.
//!
//! - [`mcollective`]: racks of `mcollectived` nodes and `mco` clients;
//! - [`queue`]: producers and consumers in stomp-benchmark's terms.
//!
//! Every simulated client is the project's real failover client (`stampede_broker::client`)
//! over [`crate::net::TurmoilNet`], with its own TCP connection, server list and reconnect
//! policy. Its connection events go to the history as they happen.

pub mod mcollective;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use stampede_broker::client::{
    BackoffMultiplier, ClientConfig, Credentials, PolicyKind, ReconnectConfig, ServerAddr,
    ServerList,
};

use crate::history::{ClientId, Recorder};
use crate::net::TurmoilNet;
use crate::scenario::{Policy, ReconnectSpec, Scenario};

/// Starts every workload host of `scenario` in `sim`.
pub fn spawn_all(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    seed: u64,
    recorder: &Recorder,
    duration: Duration,
) -> anyhow::Result<()> {
    if let Some(m) = &scenario.workload.mcollective {
        mcollective::spawn(sim, scenario, m, seed, recorder, duration)?;
    } else {
        // Racks without the MCollective workload still connect their nodes.
        mcollective::spawn(sim, scenario, &Default::default(), seed, recorder, duration)?;
    }
    for q in &scenario.workload.queues {
        queue::spawn(sim, scenario, q, seed, recorder, duration)?;
    }
    Ok(())
}

/// The port of broker `name`.
fn port_of(scenario: &Scenario, name: &str) -> u16 {
    scenario
        .brokers
        .iter()
        .find(|b| b.name == name)
        .map_or(61613, |b| b.port)
}

/// A server list in pool order.
fn server_list(scenario: &Scenario, pool: &[String]) -> anyhow::Result<ServerList> {
    let servers: Vec<ServerAddr> = pool
        .iter()
        .map(|b| ServerAddr::new(b.clone(), port_of(scenario, b)))
        .collect();
    ServerList::new(servers).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The reconnect settings of `policy` with the scenario's overrides.
fn reconnect(policy: Policy, spec: &ReconnectSpec) -> (PolicyKind, ReconnectConfig) {
    let kind = match policy {
        Policy::StompGem => PolicyKind::StompGem,
        Policy::Activemq => PolicyKind::ActiveMq,
        Policy::Jittered => PolicyKind::Jittered,
    };
    let mut c = ReconnectConfig::defaults_for(kind);
    if let Some(ms) = spec.initial_delay_ms {
        c.initial_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = spec.max_delay_ms {
        c.max_delay = Duration::from_millis(ms);
    }
    if let Some(m) = spec.multiplier.and_then(BackoffMultiplier::new) {
        c.multiplier = m;
    }
    if let Some(r) = spec.randomize {
        c.randomize = r;
    }
    if let Some(ms) = spec.connect_timeout_ms {
        c.connect_timeout = Some(Duration::from_millis(ms));
    }
    (kind, c)
}

/// A client configuration for one simulated client.
#[allow(clippy::too_many_arguments)]
fn client_config(
    scenario: &Scenario,
    pool: &[String],
    policy: Policy,
    spec: &ReconnectSpec,
    heartbeat_s: u64,
    heartbeat_read_timeout: bool,
    seed: u64,
    login: Option<(&str, &str)>,
) -> anyhow::Result<ClientConfig> {
    let (kind, reconnect) = reconnect(policy, spec);
    let mut config = ClientConfig::new(server_list(scenario, pool)?, kind);
    config.reconnect = reconnect;
    config.seed = seed;
    config.host = Some("mcollective".to_owned());
    if heartbeat_s > 0 {
        // MCollective's arithmetic: heart-beat:<n*1000+500>,<n*1000-500>, STOMP 1.1.
        let n = heartbeat_s * 1000;
        config.heart_beat_ms = (n + 500, n.saturating_sub(500));
        config.accept_version = Some("1.1,1.0".to_owned());
        config.heartbeat_read_timeout = heartbeat_read_timeout;
        config.heartbeat_grace = 1.5;
    } else {
        // MCollective's default: STOMP 1.0 (`accept-version:1.0`), no heart-beats.
        config.heart_beat_ms = (0, 0);
        config.accept_version = Some("1.0".to_owned());
        config.heartbeat_read_timeout = false;
    }
    // Small buffers: thousands of these run in one simulation.
    config.messages_buffered_max = 16;
    config.events_buffered_max = 64;
    config.commands_queued_max = 16;
    config.pending_sends_max = 64;
    if let Some((user, pass)) = login {
        config.credentials = Some(Credentials {
            login: user.to_owned(),
            passcode: pass.to_owned(),
        });
    }
    Ok(config)
}

/// Starts a client and forwards its connection events to the history.
fn start_client(
    config: ClientConfig,
    recorder: &Recorder,
    id: ClientId,
) -> (
    stampede_broker::client::Client,
    tokio::sync::mpsc::Receiver<stampede_broker::client::Message>,
) {
    let (client, streams) = stampede_broker::client::Client::start(Arc::new(TurmoilNet), config);
    let mut events = streams.events;
    let recorder = recorder.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            recorder.event(id, ev);
        }
    });
    (client, streams.messages)
}

/// Sleeps until `at` simulated time since the start of the run.
async fn sleep_until_sim(at: Duration) {
    let now = turmoil::sim_elapsed().unwrap_or_default();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}
