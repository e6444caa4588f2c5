//! `[store]`: where persistent messages are kept and how hard the broker tries.

use serde::{Deserialize, Serialize};

use crate::toml_config::{InvalidSetting, KeyPath, positive};

/// When the journal is synced to disk, and so when a persistent SEND's RECEIPT goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum SyncPolicy {
    /// Every record is synced before its RECEIPT: what was written while a sync ran
    /// shares the next one. No receipted persistent message is lost on power failure.
    #[serde(rename = "always")]
    Always,
    /// Group commit: records wait up to `group_window_ms` (or until `group_batch_max`
    /// records wait) for one sync, then their RECEIPTs go out. Same promise as `always`,
    /// fewer syncs, some latency.
    #[serde(rename = "group")]
    Group,
    /// Records are written at once and synced every `interval_ms`; RECEIPTs go out after
    /// the write, before the sync (ActiveMQ's `enableJournalDiskSyncs=false`): a process
    /// crash loses nothing, a power failure loses up to `interval_ms` of receipted messages.
    /// On a replicated store RECEIPTs wait until a majority of the group has written the
    /// records (ActiveMQ's replicated `quorum_mem`): only a majority's power loss at once
    /// can lose them.
    #[serde(rename = "interval_ms")]
    IntervalMs,
}

/// What a persistent SEND gets when the store holds `bytes_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// It waits like a SEND that finds memory full (producer flow control), and gets an
    /// ERROR after `core.limits.send_fail_if_no_space_after_ms`.
    Block,
    /// It gets an ERROR at once, naming `store.bytes_max`.
    Error,
}

/// What the broker does when its store's disk is full (an append fails with ENOSPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFullPolicy {
    /// It waits for space, as ActiveMQ's default IOException handler does for a "no space"
    /// error: the record that did not fit is tried again every
    /// `disk_full_retry_interval_ms`, persistent SENDs get their RECEIPTs once it is
    /// written, and meanwhile the core stops taking new frames once the store writer's
    /// queue is full (producer flow control). Nothing receipted is lost.
    Wait,
    /// It stops, like a failing disk (EIO), so that a slave can take over.
    Stop,
}

/// What a broker does when another broker holds its store directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MasterSlave {
    /// It refuses to start: one broker per store.
    None,
    /// Shared-store master/slave, as ActiveMQ's shared file system master/slave: the broker
    /// that holds the directory's lock is the master; another one on the same directory
    /// waits as its slave, with no listener open, tries the lock every
    /// `lock_acquire_interval_ms`, and when the master dies (the operating system releases
    /// its lock) recovers the store and opens its listeners. Clients find whichever is
    /// master through a failover list naming both.
    SharedStore,
    /// Replicated stores: each broker of a group (`[store.replication]`: this node and its
    /// peers, three or more) keeps its own copy of the journal. The group elects a leader
    /// (a majority's votes, terms as fencing tokens); the leader is the master, opens its
    /// listeners and streams every journal write to the others, and a persistent SEND's
    /// RECEIPT waits until a majority has synced it. When the leader is gone (or cut off
    /// from the majority, which makes it step down), the others elect the most up-to-date
    /// of them, which recovers the journal and serves.
    Replicated,
}

/// `[store.replication]`: a replicated store's group.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// This broker's name in the group (unique in it).
    pub node: String,
    /// Where this broker listens for its peers (votes, and the leader's stream).
    pub listen: String,
    /// The other brokers of the group.
    pub peers: Vec<ReplicaPeer>,
    /// Milliseconds between the leader's heart-beats to each follower.
    pub heartbeat_interval_ms: u64,
    /// Milliseconds without word from a leader after which a follower stands for election
    /// (each waits a random time between this and twice this); a leader that has not heard
    /// from a majority for this long steps down.
    pub election_timeout_ms: u64,
    /// Bytes of journal operations the leader keeps for followers that fall behind; one
    /// further behind is sent a fresh copy of the journal.
    pub backlog_bytes_max: u64,
    /// Seed of the election timers' randomness (the simulator sets it from the scenario's
    /// seed); unset, it is drawn from the node's name and the process id.
    pub seed: Option<u64>,
}

/// One peer of a replicated store's group.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaPeer {
    /// Its `node` name.
    pub name: String,
    /// Its `listen` address as this broker reaches it (`host:port`).
    pub address: String,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            node: String::new(),
            listen: "0.0.0.0:61619".to_owned(),
            peers: Vec::new(),
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1_000,
            backlog_bytes_max: 64 * 1024 * 1024,
            seed: None,
        }
    }
}

impl ReplicationConfig {
    /// Votes (this node's included) that make a majority of the group.
    pub fn quorum(&self) -> usize {
        // A strict majority of the group (peers and this node).
        self.peers.len().div_ceil(2) + 1
    }
}

/// `[store]`. Without `dir` nothing is stored: `persistent:true` messages live in memory
/// only, as before.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The store directory (created if missing, locked while the broker runs).
    pub dir: Option<String>,
    /// When records are synced.
    pub sync: SyncPolicy,
    /// `group`: the longest a record waits for its sync, in milliseconds.
    pub group_window_ms: u64,
    /// `group`: sync at once when this many records wait.
    pub group_batch_max: usize,
    /// `interval_ms`: milliseconds between syncs.
    pub interval_ms: u64,
    /// Bytes of persistent messages the store may hold (not yet acknowledged).
    pub bytes_max: u64,
    /// What a persistent SEND gets when the store is full.
    pub full_policy: FullPolicy,
    /// What the broker does when the disk under the store is full.
    pub disk_full: DiskFullPolicy,
    /// `disk_full = "wait"`: milliseconds between attempts to write to a full disk.
    pub disk_full_retry_interval_ms: u64,
    /// Journal files roll over at this size; fully acknowledged old files are deleted.
    pub segment_bytes_max: u64,
    /// On start, skip a record whose checksum fails in the middle of a journal file
    /// (logged with file and offset) instead of refusing to start. Skipped records are
    /// lost: use it to get a broker back up after looking at the damage.
    pub skip_corrupt: bool,
    /// `none` refuses to start on a directory another broker holds; `shared-store` waits
    /// for it as a slave.
    pub master_slave: MasterSlave,
    /// `shared-store`: milliseconds between a slave's attempts to take the lock
    /// (ActiveMQ's `lockAcquireSleepInterval`, 10 s there; a try here is one system call).
    pub lock_acquire_interval_ms: u64,
    /// `shared-store`: milliseconds between the master's checks that it still holds the
    /// lock (ActiveMQ's `lockKeepAlivePeriod`); 0 turns them off. Each check finds the
    /// lock file still the one it locked and writes and syncs a heartbeat into it, so an
    /// unreachable or fenced shared store (an NFS lease lost in a partition) fails it,
    /// and a master that fails it stops serving: its clients fail over to the broker that
    /// holds the lock now.
    pub lock_keepalive_period_ms: u64,
    /// `replicated`: the group.
    pub replication: ReplicationConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: None,
            sync: SyncPolicy::Always,
            group_window_ms: 2,
            group_batch_max: 256,
            interval_ms: 1_000,
            bytes_max: 10 * 1024 * 1024 * 1024,
            full_policy: FullPolicy::Block,
            disk_full: DiskFullPolicy::Wait,
            disk_full_retry_interval_ms: 500,
            segment_bytes_max: 32 * 1024 * 1024,
            skip_corrupt: false,
            master_slave: MasterSlave::None,
            lock_acquire_interval_ms: 1_000,
            lock_keepalive_period_ms: 2_000,
            replication: ReplicationConfig::default(),
        }
    }
}

impl StoreConfig {
    /// A production broker's replicated store names its directory, itself and its peers
    /// (the simulator fills them in from the scenario).
    pub fn validate_group(&self) -> Result<(), InvalidSetting> {
        if self.master_slave != MasterSlave::Replicated {
            return Ok(());
        }
        let r = &self.replication;
        let at = KeyPath::root().key("replication");
        if self.dir.is_none() {
            return Err(InvalidSetting::new(
                KeyPath::root().key("dir"),
                "a replicated store needs its directory",
            ));
        }
        if r.node.trim().is_empty() {
            return Err(InvalidSetting::new(
                at.key("node"),
                "must name this broker in its replication group",
            ));
        }
        if r.peers.is_empty() {
            return Err(InvalidSetting::new(
                at.key("peers"),
                "a replicated store needs peers (two or more, so that a majority survives one loss)",
            ));
        }
        let mut names = std::collections::BTreeSet::from([r.node.as_str()]);
        for (i, p) in r.peers.iter().enumerate() {
            if !names.insert(p.name.as_str()) {
                return Err(InvalidSetting::new(
                    at.key("peers").index(i).key("name"),
                    "names a node twice (node names must be unique in the group)",
                ));
            }
        }
        Ok(())
    }

    /// Checks what deserialization accepts but the store cannot use.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(dir) = &self.dir
            && dir.trim().is_empty()
        {
            return Err(InvalidSetting::new(
                KeyPath::root().key("dir"),
                "must be a directory path (leave the key out to store nothing)",
            ));
        }
        positive(self.group_window_ms, "group_window_ms")?;
        positive(self.group_batch_max, "group_batch_max")?;
        positive(self.interval_ms, "interval_ms")?;
        positive(self.bytes_max, "bytes_max")?;
        positive(self.lock_acquire_interval_ms, "lock_acquire_interval_ms")?;
        positive(
            self.disk_full_retry_interval_ms,
            "disk_full_retry_interval_ms",
        )?;
        if self.lock_acquire_interval_ms > 3_600_000 {
            return Err(InvalidSetting::new(
                KeyPath::root().key("lock_acquire_interval_ms"),
                "must be at most 3600000 (an hour)",
            ));
        }
        if self.lock_keepalive_period_ms > 3_600_000 {
            return Err(InvalidSetting::new(
                KeyPath::root().key("lock_keepalive_period_ms"),
                "must be at most 3600000 (an hour); 0 turns the checks off",
            ));
        }
        if self.master_slave == MasterSlave::Replicated {
            let r = &self.replication;
            let at = KeyPath::root().key("replication");
            if r.heartbeat_interval_ms == 0 || r.election_timeout_ms < 2 * r.heartbeat_interval_ms {
                return Err(InvalidSetting::new(
                    at.key("election_timeout_ms"),
                    "must be at least twice heartbeat_interval_ms (which must be positive)",
                ));
            }
            if r.backlog_bytes_max < 1024 * 1024 {
                return Err(InvalidSetting::new(
                    at.key("backlog_bytes_max"),
                    "must be at least 1048576",
                ));
            }
        }
        if self.segment_bytes_max < 4096 {
            return Err(InvalidSetting::new(
                KeyPath::root().key("segment_bytes_max"),
                "must be at least 4096",
            ));
        }
        Ok(())
    }
}
