//! `--shard i/n`: one scenario's load split over `n` generator processes (or machines,
//! started by any job runner), each measuring a self-contained part, so that
//! `stampede merge` can add their histograms and counts into one report.
//!
//! Shard `i` of `n` (1-based) runs:
//!
//! - MCollective: every `n`th node of every rack (nodes `i-1`, `i-1+n`, …; identities
//!   get an `s<i>of<n>-` prefix) and its own copy of every `mco` client, in the
//!   sub-collective `<collective>_s<i>of<n>`. A round's fan-out is split, not repeated:
//!   `n` shards together deliver each round to as many nodes as one process would, from
//!   `n` broadcasts to `n` topics of `N/n` subscribers each.
//! - Queue workloads on `/queue/`: every `n`th producer and consumer (there must be at
//!   least `n` of each), on the destination `<destination>.s<i>of<n>`.
//! - Topic workloads on `/topic/`: every producer (so that each consumer still gets every
//!   message stream) and every `n`th consumer, on `<destination>.s<i>of<n>`.
//!
//! Each shard's own destinations keep its accounting exact: what its producers send only
//! its consumers can receive.

use std::fmt;
use std::str::FromStr;

use crate::scenario::Scenario;

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 1, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard wants i/n, got '{s}'"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index '{i}'"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count '{n}'"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("--shard {s}: needs 1 <= i <= n"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether this is the whole run.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// The suffix of this shard's names, `s<i>of<n>`.
    pub fn tag(self) -> String {
        format!("s{}of{}", self.index, self.count)
    }

    /// How many of `total` items (items `k` with `k mod n == i-1`) fall in this shard.
    pub fn slice(self, total: u32) -> u32 {
        let k = self.index - 1;
        total / self.count + u32::from(k < total % self.count)
    }

    /// Narrows `scenario` to this shard (see the module documentation).
    pub fn apply(self, scenario: &mut Scenario) -> Result<(), String> {
        if self.is_whole() {
            return Ok(());
        }
        let tag = self.tag();
        for rack in &mut scenario.racks {
            let prefix = rack
                .identity_prefix
                .clone()
                .unwrap_or_else(|| format!("{}-node-", rack.name));
            rack.identity_prefix = Some(format!("{tag}-{prefix}"));
            rack.nodes = self.slice(rack.nodes);
        }
        scenario.racks.retain(|r| r.nodes > 0);
        if let Some(m) = &mut scenario.workload.mcollective {
            m.collective = format!("{}_{tag}", m.collective);
            for c in &mut m.clients {
                c.name = format!("{}-{tag}", c.name);
            }
            if scenario.racks.is_empty() {
                return Err(format!(
                    "--shard {self}: no MCollective node falls in this shard"
                ));
            }
        }
        for q in &mut scenario.workload.queues {
            let topic = q.destination.starts_with("/topic/");
            if !topic && (q.producers < self.count || q.consumers < self.count) {
                return Err(format!(
                    "--shard {self}: queue workload '{}' has {} producer(s) and {} consumer(s); \
                     sharding a queue needs at least {} of each",
                    q.name, q.producers, q.consumers, self.count
                ));
            }
            if !topic {
                q.producers = self.slice(q.producers);
            }
            q.consumers = self.slice(q.consumers);
            q.destination = format!("{}.{tag}", q.destination);
            q.name = format!("{}-{tag}", q.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_slice_everything_once() {
        assert_eq!(
            "2/3".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 3 }
        );
        for bad in ["0/2", "3/2", "1/0", "x", "1/x"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        for total in [0, 1, 7, 800, 801] {
            for count in 1..=4 {
                let sum: u32 = (1..=count)
                    .map(|index| Shard { index, count }.slice(total))
                    .sum();
                assert_eq!(sum, total, "{total} over {count}");
            }
        }
    }

    #[test]
    fn a_shard_has_its_own_collective_destinations_and_identities() {
        let text = r#"
name = "t"
duration_s = 10
[[brokers]]
name = "b"
[[racks]]
name = "r"
nodes = 5
servers = ["b"]
[workload.mcollective]
clients = [{ name = "mco", servers = ["b"] }]
[[workload.queues]]
name = "q"
destination = "/queue/work"
producers = 2
consumers = 3
rate_per_s = 10
producer_servers = ["b"]
consumer_servers = ["b"]
[[workload.queues]]
name = "t"
destination = "/topic/fan"
producers = 1
consumers = 5
rate_per_s = 10
producer_servers = ["b"]
consumer_servers = ["b"]
"#;
        let mut s = Scenario::parse(text, "t.toml").unwrap();
        let shard = Shard { index: 2, count: 2 };
        shard.apply(&mut s).unwrap();
        assert_eq!(s.racks[0].nodes, 2);
        assert_eq!(s.racks[0].identity_prefix.as_deref(), Some("s2of2-r-node-"));
        let m = s.workload.mcollective.as_ref().unwrap();
        assert_eq!(m.collective, "mcollective_s2of2");
        assert_eq!(m.clients[0].name, "mco-s2of2");
        let q = &s.workload.queues[0];
        assert_eq!((q.producers, q.consumers), (1, 1));
        assert_eq!(q.destination, "/queue/work.s2of2");
        let t = &s.workload.queues[1];
        assert_eq!((t.producers, t.consumers), (1, 2));
        let mut s = Scenario::parse(text, "t.toml").unwrap();
        let e = Shard { index: 1, count: 3 }.apply(&mut s).unwrap_err();
        assert!(e.contains("at least 3"), "{e}");
    }
}
