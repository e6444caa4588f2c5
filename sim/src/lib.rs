//! Stampede's simulator: broker networks and client fleets on turmoil, faults from a
//! schedule or a seed, a checker in Jepsen's vocabulary, and reports.
//!
//! # Layout
//!
//! - [`scenario`]: the strict TOML scenario model (`scenarios/*.toml`).
//! - [`seed`]: one seed, many independent random streams.
//! - [`net`]: [`net::TurmoilNet`], the broker's `Net` over simulated TCP (the only module
//!   that touches `turmoil::net`).
//! - [`disk`]: [`disk::SimDisk`], the message store's `Disk` on turmoil's simulated file
//!   system (the only module that touches `turmoil::fs`), and the flush that tells a
//!   process crash from a power loss.
//! - [`world`]: builds the turmoil world (broker hosts run the real broker server; racks
//!   carry many client nodes each) and steps it, applying faults.
//! - [`fault`]: the fault timeline (explicit faults and the seeded nemesis) and its windows.
//! - [`workload`]: MCollective nodes and `mco` clients; producers and consumers.
//! - [`dialect`]: how workloads talk to a target broker (STOMP with ActiveMQ's or
//!   RabbitMQ's conventions, or Redis pub/sub).
//! - [`live`]: `stampede load`: the same workloads against real brokers over real TCP.
//! - [`calibrate`]: `stampede calibrate`: a broker's cost profile fitted from live runs.
//! - [`history`]: what clients attempted and observed, in simulated time.
//! - [`checker`]: counts, losses by fault window, reorders, failover times, expectations.
//! - [`run`]: one run from scenario to report.
//! - [`overrides`]: `--set KEY=VALUE`, editing a scenario's TOML before validation.
//! - [`explore`]: many seeds in parallel processes (`stampede explore`) and shrinking a
//!   failing run to a minimal scenario (`stampede shrink`).
//! - [`sweep`]: grids of `--set` overrides in parallel processes, an objective, and the
//!   knee (`stampede sweep`).
//!
//! # Determinism
//!
//! Same scenario and seed give byte-identical reports (except `wall_seconds`): turmoil is
//! seeded and given a fixed epoch, every random draw comes from a stream derived from the
//! seed, time comes from `tokio::time` (simulated), maps are ordered, and the workspace is
//! built with `--cfg tokio_unstable` so that turmoil seeds tokio's `select!`.

// Without `--cfg tokio_unstable`, turmoil cannot seed tokio's `select!` branch choice and
// runs stop being reproducible, silently. The flag comes from `.cargo/config.toml`, which
// cargo ignores as soon as RUSTFLAGS is set in the environment, so refuse to build instead.
#[cfg(not(tokio_unstable))]
compile_error!(
    "stampede-sim must be built with `--cfg tokio_unstable` (without it turmoil cannot seed \
     tokio and simulations are not reproducible). .cargo/config.toml sets it, but a RUSTFLAGS \
     (or CARGO_ENCODED_RUSTFLAGS) variable in the environment replaces that setting: unset it, \
     or add the flag to it, e.g. RUSTFLAGS=\"$RUSTFLAGS --cfg tokio_unstable\"."
);

pub mod calibrate;
pub mod checker;
pub mod dialect;
pub mod disk;
pub mod explore;
pub mod fault;
pub mod history;
pub mod live;
pub mod net;
pub mod overrides;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod sweep;
pub mod workload;
pub mod world;
