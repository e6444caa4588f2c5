//! Real MCollective 2.12.5 (Debian `mcollective` + `mcollective-client`) against
//! `stampede-broker`: `tests/interop/mco_ping.sh` starts three `mcollectived` nodes, checks
//! that `mco ping` gets exactly one reply from each, and that a directed
//! `mco rpc rpcutil ping -I node-01 -I node-02` (queue `/queue/mcollective.nodes` with
//! `mc_identity` selectors) reaches exactly those two nodes.
//!
//! The broker runs with authentication on (`mcollective`/`marionette`), as deployments do.
//! Needs the Debian packages from `scripts/install-test-deps`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{AUTH_CONFIG, Broker};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mco_ping.sh");

/// mco_ping.sh bounds its own phases (30 s to subscribe, 30 s of ping retries, 60 s per
/// `mco` run); this is the outer limit.
const TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn mco_ping_and_directed_rpc_with_three_nodes() {
    common::require_mcollective();
    let broker = Broker::start_with_config("mco", AUTH_CONFIG);
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(SCRIPT)
        .args(["--host", &broker.host(), "--port", &broker.port()])
        .args(["--user", "mcollective", "--password", "marionette"])
        .args(["--nodes", "3"])
        // The script's work dir (node configs and logs) goes under the broker's temp dir.
        .env("TMPDIR", broker.dir());
    let run = common::run_bounded("mco_ping.sh with 3 nodes", cmd, TIMEOUT);
    common::assert_passed(&run, &broker);
}

/// MCollective's documented RabbitMQ setup: vhost `/mcollective` with the topic exchange
/// `mcollective_broadcast` and the direct exchange `mcollective_directed`.
const RABBITMQ_VHOST: &str = r#"
[[core.vhosts]]
name = "/mcollective"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "mcollective_broadcast"
type = "topic"

[[core.vhosts.exchanges]]
name = "mcollective_directed"
type = "direct"
"#;

/// The same with `connector = rabbitmq`: broadcasts through the topic exchange, directed
/// requests through the direct exchange, replies through `reply-to:/temp-queue/…` (which
/// `mco` never subscribes to itself) answered on `/reply-queue/…`.
#[test]
fn mco_ping_and_directed_rpc_with_the_rabbitmq_connector() {
    common::require_mcollective();
    let config = format!("{AUTH_CONFIG}{RABBITMQ_VHOST}");
    let broker = Broker::start_with_config("mco-rabbitmq", &config);
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(SCRIPT)
        .args(["--host", &broker.host(), "--port", &broker.port()])
        .args(["--user", "mcollective", "--password", "marionette"])
        .args([
            "--nodes",
            "3",
            "--connector",
            "rabbitmq",
            "--vhost",
            "/mcollective",
        ])
        .env("TMPDIR", broker.dir());
    let run = common::run_bounded(
        "mco_ping.sh --connector rabbitmq with 3 nodes",
        cmd,
        TIMEOUT,
    );
    common::assert_passed(&run, &broker);
}
