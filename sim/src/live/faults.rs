//! Faults on live brokers (`stampede load --faults-via CMD`).
//!
//! A scenario's `crash`, `restart`, `hold` and `release` faults are applied to the real
//! brokers of a live run by an external command, at the same times (from the start of the
//! measured window) as the simulator applies them from the start of a simulation, so that
//! one scenario's failover timeline can be measured in both worlds and compared.
//!
//! The command is run through `sh -c` as `CMD ACTION HOST:PORT`, once per broker, and must
//! return when the action is done; `scripts/peers/peer fault` is such a command for the
//! brokers that script starts:
//!
//! | action | the script does | the simulator does |
//! | --- | --- | --- |
//! | `crash` | SIGKILL (the kernel closes the broker's connections) | crashes the host |
//! | `restart` | starts the broker again and waits until it answers CONNECT | restarts it |
//! | `hold` | SIGSTOP: the process is frozen, its connections stay open | holds packets between the groups |
//! | `release` | SIGCONT | releases them |
//!
//! A `clock-skew`, an `isolate-nodes` or a `crash-nodes` acts on the load generator's own nodes, not on a
//! broker: a live run applies it itself at its time, with or without `--faults-via`
//! ([`client_side`]).
//!
//! `heal-all` restarts every broker the run crashed and releases every one it held. A held
//! broker is held from everyone, not only from the fault's other group. Faults the
//! live world cannot apply (power loss, partitions, latency, disk faults, the nemesis)
//! are dropped from the plan with a note ([`supported`]). When the run ends, brokers it
//! left crashed or held are restarted or released, so the next run finds them as the
//! run found them.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fault::{Op, Timeline};
use crate::history::Timebase;
use crate::scenario::FaultKind;
use crate::workload::{NodeLinks, RackClocks, apply_to_nodes};

/// How long one action may take (a restart waits for the broker to answer).
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(180);

/// What the fault command is asked to do to one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveAction {
    /// SIGKILL.
    Crash,
    /// Start again.
    Restart,
    /// SIGSTOP.
    Hold,
    /// SIGCONT.
    Release,
}

impl LiveAction {
    /// The word passed to the command.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveAction::Crash => "crash",
            LiveAction::Restart => "restart",
            LiveAction::Hold => "hold",
            LiveAction::Release => "release",
        }
    }
}

/// Whether a fault of this kind can be applied to live brokers.
pub fn supported(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::Crash
            | FaultKind::Restart
            | FaultKind::Hold
            | FaultKind::Release
            | FaultKind::HealAll
    ) || client_side(kind)
}

/// Whether a fault of this kind acts on the load generator's own simulated clients, not
/// on brokers or the network: a live run applies it itself, with or without
/// `--faults-via` ([`apply_client_side`]).
pub fn client_side(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::ClockSkew
            | FaultKind::IsolateNodes
            | FaultKind::CrashNodes
            | FaultKind::CrashClients
            | FaultKind::PacketLoss
    )
}

/// Applies `timeline`'s client-side actions (`clock-skew`, `isolate-nodes`, `packet-loss`, `crash-nodes`, `crash-clients`, and their
/// part of `heal-all`) to the generator's nodes through `clocks` and `links`, each at
/// `origin` plus its time.
/// Returns when the timeline is exhausted.
pub async fn apply_client_side(
    timeline: &Timeline,
    clocks: &RackClocks,
    links: &NodeLinks,
    timebase: Timebase,
    origin: Duration,
) {
    for a in timeline.actions.iter().filter(|a| a.op.acts_on_nodes()) {
        timebase
            .sleep_until(origin + Duration::from_millis(a.at_ms))
            .await;
        apply_to_nodes(&a.op, clocks, links);
    }
}

/// What happened to one action.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// When the timeline wanted it, ms from the start of the measured window.
    pub planned_ms: u64,
    /// When the command started, same origin.
    pub started_ms: u64,
    /// The action.
    pub action: LiveAction,
    /// The broker, `host:port`.
    pub server: String,
    /// How long the command took (ms), or why it failed.
    pub outcome: Result<u64, String>,
}

impl Applied {
    /// One line for people.
    pub fn describe(&self) -> String {
        let head = format!(
            "{} {} at {:.3} s (planned {:.3} s)",
            self.action.as_str(),
            self.server,
            self.started_ms as f64 / 1000.0,
            self.planned_ms as f64 / 1000.0
        );
        match &self.outcome {
            Ok(ms) => format!("{head}: done in {ms} ms"),
            Err(e) => format!("{head}: FAILED: {e}"),
        }
    }
}

/// Which brokers are crashed or held, so that a heal-all and the end of the run undo the
/// right things.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    crashed: BTreeSet<String>,
    held: BTreeSet<String>,
}

impl LiveState {
    /// The commands `op` stands for on live brokers `servers` (`host:port` names), in
    /// order, and the state after them. Operations that cannot be applied live give
    /// nothing (the plan has dropped their faults).
    pub fn commands(&mut self, op: &Op, servers: &[String]) -> Vec<(LiveAction, String)> {
        let brokers = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| servers.contains(n))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        match op {
            Op::Crash(b) => {
                for s in brokers(b) {
                    self.held.remove(&s);
                    self.crashed.insert(s.clone());
                    out.push((LiveAction::Crash, s));
                }
            }
            Op::Restart(b) => {
                for s in brokers(b) {
                    if self.crashed.remove(&s) {
                        out.push((LiveAction::Restart, s));
                    }
                }
            }
            Op::Hold(a, b) => {
                let mut both = brokers(a);
                both.extend(brokers(b));
                for s in both {
                    if !self.crashed.contains(&s) && self.held.insert(s.clone()) {
                        out.push((LiveAction::Hold, s));
                    }
                }
            }
            Op::Release(a, b) => {
                let mut both = brokers(a);
                both.extend(brokers(b));
                for s in both {
                    if self.held.remove(&s) {
                        out.push((LiveAction::Release, s));
                    }
                }
            }
            Op::HealAll => out = self.undo_all(),
            Op::PowerLoss(_)
            | Op::Partition(..)
            | Op::PartitionOneway(..)
            | Op::Heal(..)
            | Op::Latency(..)
            | Op::Disk(..)
            | Op::StoragePartition(..)
            | Op::ClockSkew(..)
            | Op::IsolateNodes(..)
            | Op::ReconnectNodes(..)
            | Op::PacketLoss(..)
            | Op::CrashNodes(_)
            | Op::StartNodes(_) => {}
        }
        out
    }

    /// Restart every crashed broker and release every held one.
    pub fn undo_all(&mut self) -> Vec<(LiveAction, String)> {
        let mut out: Vec<(LiveAction, String)> = std::mem::take(&mut self.held)
            .into_iter()
            .map(|s| (LiveAction::Release, s))
            .collect();
        out.extend(
            std::mem::take(&mut self.crashed)
                .into_iter()
                .map(|s| (LiveAction::Restart, s)),
        );
        out
    }
}

/// Runs `command ACTION SERVER` through `sh -c` and waits for it (at most
/// [`ACTION_TIMEOUT`]). Returns how long it took, or what went wrong with its last
/// lines of output.
pub async fn run_command(command: &str, action: LiveAction, server: &str) -> Result<u64, String> {
    let command = command.to_owned();
    let args = [action.as_str().to_owned(), server.to_owned()];
    let timebase = Timebase::Live(tokio::time::Instant::now());
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} \"$@\""))
            .arg("sh")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    });
    let output = match tokio::time::timeout(ACTION_TIMEOUT, child).await {
        Err(_) => return Err(format!("no answer within {ACTION_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("the command's task failed: {e}")),
        Ok(Ok(Err(e))) => return Err(format!("cannot run sh: {e}")),
        Ok(Ok(Ok(o))) => o,
    };
    let took_ms = timebase.now_us() / 1000;
    if output.status.success() {
        return Ok(took_ms);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!("{} ({})", output.status, tail.join(" / ")))
}

/// Applies `timeline`'s actions to `servers` with `command`, each at `origin` plus its
/// time on `timebase` (the live run's clock), and returns what was done in order. Runs
/// until the timeline is exhausted; the caller cancels it at the end of the run and undoes
/// what `state` says is still crashed or held ([`LiveState::undo_all`]).
pub async fn apply(
    command: &str,
    timeline: &Timeline,
    servers: &[String],
    timebase: Timebase,
    origin: Duration,
    state: &std::sync::Mutex<LiveState>,
    done: &std::sync::Mutex<Vec<Applied>>,
) {
    for a in &timeline.actions {
        let at = origin + Duration::from_millis(a.at_ms);
        timebase.sleep_until(at).await;
        let cmds = state
            .lock()
            .expect("the fault state lock")
            .commands(&a.op, servers);
        for (action, server) in cmds {
            let started_ms = (timebase.now_us() / 1000).saturating_sub(origin.as_millis() as u64);
            tracing::info!(action = action.as_str(), %server, "live fault");
            let outcome = run_command(command, action, &server).await;
            done.lock().expect("the applied list lock").push(Applied {
                planned_ms: a.at_ms,
                started_ms,
                action,
                server,
                outcome,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crash_restart_hold_and_heal_all_map_to_commands_on_brokers_only() {
        let servers = names(&["127.0.0.1:1", "127.0.0.1:2"]);
        let mut st = LiveState::default();
        assert_eq!(
            st.commands(&Op::Crash(names(&["127.0.0.1:1"])), &servers),
            [(LiveAction::Crash, "127.0.0.1:1".to_owned())]
        );
        // A restart of a broker that is not crashed does nothing.
        assert!(
            st.commands(&Op::Restart(names(&["127.0.0.1:2"])), &servers)
                .is_empty()
        );
        // Hold between a rack and both brokers: only the live one is held.
        let held = st.commands(
            &Op::Hold(names(&["rack-1"]), names(&["127.0.0.1:1", "127.0.0.1:2"])),
            &servers,
        );
        assert_eq!(held, [(LiveAction::Hold, "127.0.0.1:2".to_owned())]);
        assert!(
            st.commands(
                &Op::Partition(names(&["rack-1"]), servers.clone()),
                &servers
            )
            .is_empty()
        );
        assert_eq!(
            st.commands(&Op::HealAll, &servers),
            [
                (LiveAction::Release, "127.0.0.1:2".to_owned()),
                (LiveAction::Restart, "127.0.0.1:1".to_owned()),
            ]
        );
        assert!(st.undo_all().is_empty());
    }

    #[tokio::test]
    async fn the_command_gets_the_action_and_server_and_its_failure_is_reported() {
        let dir = std::env::temp_dir().join(format!("stampede-live-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let cmd = format!("echo >> {}", log.display());
        assert!(
            run_command(&cmd, LiveAction::Crash, "127.0.0.1:9")
                .await
                .is_ok()
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "crash 127.0.0.1:9\n"
        );
        let e = run_command("echo nope >&2; exit 3; true", LiveAction::Hold, "x:1")
            .await
            .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
