//! Replicated stores (`store.master_slave = "replicated"`): a group of brokers, each with
//! its own copy of the journal, one of them the leader (the master) by a majority's
//! votes.
//!
//! The design is Raft's, applied to the journal's files rather than to log entries:
//!
//! - **Terms and votes.** Every node keeps, durable in its `replica-state` file, the
//!   highest term it has seen, whom it voted for in it, and the term of the leader whose
//!   journal its files copy. A follower that hears nothing from a leader for a random time
//!   between `election_timeout_ms` and twice that stands for the next term; a node grants
//!   one vote per term, and only to a candidate whose journal is at least as up to date as
//!   its own ([`wire::Position`]: the copied leader's term, then the newest journal file's
//!   number and length). A majority's votes make the leader.
//! - **The stream.** The leader's store writes through a [`ReplicatingDisk`], which
//!   performs every file operation on the leader's own disk and numbers it into a bounded
//!   backlog. For each peer, the leader connects, sends a copy of every journal file
//!   (cut at the stream's current number), then the operations after it, and heart-beats
//!   when there are none. A follower applies them to its own directory in order and
//!   acknowledges each sync once it is durable.
//! - **Receipts wait for a majority.** After the store writer syncs, it awaits
//!   [`Disk::durable`]: until a majority (the leader included) has synced through that
//!   operation. A persistent SEND's RECEIPT goes out only then.
//! - **Fencing.** A leader that sees a higher term (a vote request, a follower's
//!   rejection), or that has not heard from a majority for `election_timeout_ms`, is
//!   deposed: its durability waits fail and its lock check fails, so its store writer stops
//!   and the broker stops without receipting anything more. Followers refuse a stream
//!   whose term is older than theirs, so a returning old leader cannot write to them, and
//!   without a majority it cannot receipt anything.
//! - **Catching up.** Every stream starts with a full copy of the leader's journal files,
//!   written beside the follower's own as `*.resync.tmp` and installed by renames that a
//!   crash midway finishes on the next start (the list is in `replica-state`), so a
//!   follower never holds a half-copied journal as its own.
//!
//! The leader rolls nothing back: what a deposed leader wrote and no majority synced was
//! never receipted, and a follower's next copy replaces it.

pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::net::SharedNet;
use crate::store::disk::{Durable, LOCK_FILE, REPLICA_PREFIX};
use crate::store::{AppendFile, Disk, ReplicationConfig, segment_seq};
use wire::{FileOp, Msg, Position};

/// The node's durable election state.
const STATE_FILE: &str = "replica-state";
/// Suffix of a snapshot's files until they are installed.
const RESYNC_SUFFIX: &str = ".resync.tmp";

/// A disk shared by the node (as follower) and the leader's store.
type SharedDisk = Arc<Mutex<Box<dyn Disk>>>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `name` is part of the replicated journal (not the lock, not the node's own
/// state, not a snapshot in transit).
fn replicated(name: &str) -> bool {
    name != LOCK_FILE && !name.starts_with(REPLICA_PREFIX) && !name.ends_with(RESYNC_SUFFIX)
}

/// The durable part of a node's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Durables {
    term: u64,
    voted_for: Option<String>,
    /// The term of the leader whose journal the files copy.
    log_term: u64,
    /// A snapshot being installed: its file names.
    pending: Option<Vec<String>>,
}

impl Durables {
    fn encode(&self) -> Vec<u8> {
        let body = format!(
            "term {}\nvoted_for {}\nlog_term {}\npending {}\n",
            self.term,
            self.voted_for.as_deref().unwrap_or("-"),
            self.log_term,
            self.pending
                .as_ref()
                .map_or("-".to_owned(), |p| format!("[{}]", p.join(",")))
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc {crc}\n").into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Durables, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let (body, crc_line) = text
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .ok_or("no checksum line")?;
        let body = format!("{body}\n");
        let crc: u32 = crc_line
            .strip_prefix("crc ")
            .and_then(|c| c.parse().ok())
            .ok_or("bad checksum line")?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("checksum mismatch".into());
        }
        let mut d = Durables::default();
        for line in body.lines() {
            let (k, v) = line.split_once(' ').ok_or("bad line")?;
            match k {
                "term" => d.term = v.parse().map_err(|_| "bad term")?,
                "voted_for" => d.voted_for = (v != "-").then(|| v.to_owned()),
                "log_term" => d.log_term = v.parse().map_err(|_| "bad log_term")?,
                "pending" => {
                    d.pending = match v {
                        "-" => None,
                        v => {
                            let inner = v
                                .strip_prefix('[')
                                .and_then(|v| v.strip_suffix(']'))
                                .ok_or("bad pending")?;
                            Some(if inner.is_empty() {
                                Vec::new()
                            } else {
                                inner.split(',').map(str::to_owned).collect()
                            })
                        }
                    }
                }
                _ => return Err(format!("unknown key {k}")),
            }
        }
        Ok(d)
    }
}

/// Writes `d` durably (a new file renamed over the old one).
fn persist(disk: &dyn Disk, d: &Durables) -> io::Result<()> {
    let tmp = format!("{STATE_FILE}.tmp");
    let mut f = disk.create(&tmp)?;
    f.append(&d.encode())?;
    f.sync()?;
    disk.rename(&tmp, STATE_FILE)?;
    disk.sync_dir()
}

/// The journal's position: the newest journal file and its length.
fn position(disk: &dyn Disk, log_term: u64) -> io::Result<Position> {
    let newest = disk.list()?.iter().filter_map(|n| segment_seq(n)).max();
    Ok(match newest {
        Some(seq) => Position {
            term: log_term,
            seq,
            len: disk.len(&crate::store::segment_name(seq))?,
        },
        None => Position {
            term: log_term,
            seq: 0,
            len: 0,
        },
    })
}

/// Finishes installing a snapshot a crash interrupted: every `*.resync.tmp` of the list
/// replaces its file, and replicated files not in the list go.
fn finish_install(disk: &dyn Disk, files: &[String]) -> io::Result<()> {
    let names = disk.list()?;
    let keep: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    for name in &names {
        if let Some(base) = name.strip_suffix(RESYNC_SUFFIX) {
            if keep.contains(base) {
                disk.rename(name, base)?;
            } else {
                disk.remove(name)?;
            }
        }
    }
    for name in disk.list()? {
        if replicated(&name) && !keep.contains(name.as_str()) {
            match disk.remove(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    disk.sync_dir()
}

/// Who a node is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    Leader,
}

struct State {
    durables: Durables,
    role: Role,
    /// When the node last heard from a leader (or granted a vote).
    last_heard: Instant,
    /// Bumped by every accepted leader stream; an older stream's handler stops.
    stream_epoch: u64,
    rng: SmallRng,
}

struct Shared {
    cfg: ReplicationConfig,
    net: SharedNet,
    disk: SharedDisk,
    state: Mutex<State>,
    /// Wakes `until_elected` when the node becomes leader.
    elected: Notify,
    /// The leader's stream, once elected.
    stream: Mutex<Option<Arc<LeaderStream>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        locked(&self.state)
    }

    /// Persists `s.durables` (the caller holds the state).
    fn persist(&self, s: &State) -> io::Result<()> {
        persist(&**locked(&self.disk), &s.durables)
    }

    /// Adopts a higher `term` seen from another node: no vote in it yet, and a leader
    /// steps down.
    fn observe_term(&self, s: &mut State, term: u64) -> io::Result<()> {
        if term <= s.durables.term {
            return Ok(());
        }
        s.durables.term = term;
        s.durables.voted_for = None;
        if s.role == Role::Leader
            && let Some(stream) = locked(&self.stream).as_ref()
        {
            stream.depose(format!("a peer is in the newer term {term}"));
        }
        s.role = Role::Follower;
        self.persist(s)
    }

    fn election_timeout(&self, s: &mut State) -> Duration {
        let base = self.cfg.election_timeout_ms;
        Duration::from_millis(s.rng.random_range(base..=2 * base))
    }
}

/// A running replica: its listener and election timer. Dropping it stops them.
pub struct Node {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl Node {
    /// Starts the node on `disk` (its store directory): finishes an interrupted snapshot,
    /// reads its state, binds `cfg.listen`, and starts as a follower.
    pub async fn start(
        cfg: ReplicationConfig,
        net: SharedNet,
        disk: Box<dyn Disk>,
    ) -> io::Result<Node> {
        let mut durables = match disk.read(STATE_FILE) {
            Ok(bytes) => Durables::decode(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged ({e}): move it away to start this node afresh (it will copy the journal from the leader)", disk.describe(STATE_FILE)),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Durables::default(),
            Err(e) => return Err(e),
        };
        if let Some(files) = durables.pending.take() {
            finish_install(disk.as_ref(), &files)?;
            persist(disk.as_ref(), &durables)?;
        }
        let pos = position(disk.as_ref(), durables.log_term)?;
        let seed = cfg.seed.unwrap_or_else(|| {
            u64::from(crc32fast::hash(cfg.node.as_bytes())) << 32 | u64::from(std::process::id())
        });
        let listener = net.bind(&cfg.listen).await?;
        tracing::info!(
            node = %cfg.node,
            term = durables.term,
            log_term = pos.term,
            newest_file = pos.seq,
            length = pos.len,
            "replica started as a follower"
        );
        let shared = Arc::new(Shared {
            cfg,
            net,
            disk: Arc::new(Mutex::new(disk)),
            state: Mutex::new(State {
                durables,
                role: Role::Follower,
                last_heard: Instant::now(),
                stream_epoch: 0,
                rng: SmallRng::seed_from_u64(seed),
            }),
            elected: Notify::new(),
            stream: Mutex::new(None),
        });
        let mut tasks = JoinSet::new();
        crate::task::spawn_into(&mut tasks, listen(shared.clone(), listener));
        crate::task::spawn_into(&mut tasks, elections(shared.clone()));
        Ok(Node { shared, tasks })
    }

    /// Waits until this node is the leader; returns the disk its store must write through.
    pub async fn until_elected(&mut self) -> ReplicatingDisk {
        loop {
            let notified = self.shared.elected.notified();
            if let Some(stream) = locked(&self.shared.stream).clone() {
                for peer in self.shared.cfg.peers.clone() {
                    crate::task::spawn_into(
                        &mut self.tasks,
                        feed(self.shared.clone(), stream.clone(), peer.name, peer.address),
                    );
                }
                crate::task::spawn_into(
                    &mut self.tasks,
                    watch_quorum(self.shared.clone(), stream.clone()),
                );
                return ReplicatingDisk {
                    disk: self.shared.disk.clone(),
                    stream,
                };
            }
            notified.await;
        }
    }
}

/// Accepts peers' connections: vote requests and leader streams. Its connections' tasks
/// end with it.
async fn listen(shared: Arc<Shared>, mut listener: Box<dyn crate::net::Listener>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    continue;
                };
                let shared = shared.clone();
                crate::task::spawn_into(&mut conns, async move {
                    if let Err(e) = serve_peer(&shared, stream).await {
                        tracing::debug!(node = %shared.cfg.node, "replication connection ended: {e}");
                    }
                });
            }
        }
    }
}

async fn serve_peer(shared: &Arc<Shared>, stream: crate::net::BoxStream) -> io::Result<()> {
    let (mut r, mut w) = tokio::io::split(stream);
    let Some(first) = wire::read(&mut r).await? else {
        return Ok(());
    };
    match first {
        Msg::VoteRequest {
            term,
            candidate,
            log,
        } => {
            let reply = {
                let mut s = shared.state();
                shared.observe_term(&mut s, term)?;
                let free = s
                    .durables
                    .voted_for
                    .as_ref()
                    .is_none_or(|v| *v == candidate);
                // The journal as it is on disk now (never a position remembered from
                // earlier: a deposed leader's would be as of its election).
                let mine = position(&**locked(&shared.disk), s.durables.log_term)?;
                let granted =
                    term == s.durables.term && s.role == Role::Follower && free && log >= mine;
                if granted {
                    s.durables.voted_for = Some(candidate.clone());
                    shared.persist(&s)?;
                    s.last_heard = Instant::now();
                }
                Msg::VoteReply {
                    term: s.durables.term,
                    granted,
                }
            };
            wire::write(&mut w, &reply).await
        }
        Msg::Hello { term, leader } => follow(shared, term, leader, r, w).await,
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected first replication frame {other:?}"),
        )),
    }
}

/// A follower's side of a leader's stream: the snapshot, then the operations.
async fn follow(
    shared: &Arc<Shared>,
    term: u64,
    leader: String,
    mut r: tokio::io::ReadHalf<crate::net::BoxStream>,
    mut w: tokio::io::WriteHalf<crate::net::BoxStream>,
) -> io::Result<()> {
    let admitted: Result<u64, u64> = {
        let mut s = shared.state();
        if term < s.durables.term {
            Err(s.durables.term)
        } else {
            shared.observe_term(&mut s, term)?;
            if s.role == Role::Leader {
                // Two leaders in one term cannot be; refuse.
                Err(s.durables.term + 1)
            } else {
                s.role = Role::Follower;
                s.last_heard = Instant::now();
                s.stream_epoch += 1;
                Ok(s.stream_epoch)
            }
        }
    };
    let epoch = match admitted {
        Ok(epoch) => epoch,
        Err(t) => return wire::write(&mut w, &Msg::Reject { term: t }).await,
    };
    tracing::info!(node = %shared.cfg.node, %leader, term, "following");
    let current = |shared: &Shared| {
        let mut s = shared.state();
        if s.stream_epoch != epoch || s.durables.term != term {
            return false;
        }
        s.last_heard = Instant::now();
        true
    };
    let mut staging: BTreeMap<String, Box<dyn AppendFile>> = BTreeMap::new();
    let mut files: BTreeMap<String, Box<dyn AppendFile>> = BTreeMap::new();
    let mut received: BTreeSet<String> = BTreeSet::new();
    let mut next: Option<u64> = None;
    // A leader heart-beats well within an election timeout; a stream silent for two has
    // been cut (a partition stalls a connection for good), and its task ends.
    let idle = Duration::from_millis(2 * shared.cfg.election_timeout_ms);
    while let Some(msg) = read_within(&mut r, idle).await? {
        if !current(shared) {
            return Ok(());
        }
        match msg {
            Msg::SnapshotBegin { files: names } => {
                staging.clear();
                received.clear();
                let disk = locked(&shared.disk);
                for name in names {
                    if !replicated(&name) {
                        return Err(bad(format!("the leader sent a file named {name}")));
                    }
                    let f = disk.create(&format!("{name}{RESYNC_SUFFIX}"))?;
                    staging.insert(name, f);
                }
            }
            Msg::SnapshotChunk { name, bytes } => {
                staging
                    .get_mut(&name)
                    .ok_or_else(|| bad(format!("a chunk of {name}, not in the snapshot")))?
                    .append(&bytes)?;
                received.insert(name);
            }
            Msg::SnapshotEnd { seq } => {
                for f in staging.values_mut() {
                    f.sync()?;
                }
                // A file that arrived empty was removed on the leader after the cut (a
                // later operation removes it here too): it is not installed.
                let names: Vec<String> = staging
                    .keys()
                    .filter(|n| received.contains(*n))
                    .cloned()
                    .collect();
                {
                    let mut s = shared.state();
                    let disk = locked(&shared.disk);
                    disk.sync_dir()?;
                    // From here the copy is this node's journal, even across a crash.
                    s.durables.log_term = term;
                    s.durables.pending = Some(names.clone());
                    persist(&**disk, &s.durables)?;
                    finish_install(&**disk, &names)?;
                    s.durables.pending = None;
                    persist(&**disk, &s.durables)?;
                    // Handles on the installed files (a handle need not follow a rename).
                    staging.clear();
                    files.clear();
                    for name in &names {
                        files.insert(name.clone(), disk.open_append(name)?);
                    }
                }
                next = Some(seq);
                wire::write(
                    &mut w,
                    &Msg::Ack {
                        term,
                        seq: seq.saturating_sub(1),
                    },
                )
                .await?;
            }
            Msg::Op { seq, op } => {
                let expected =
                    next.ok_or_else(|| bad("an operation before the snapshot".into()))?;
                if seq != expected {
                    return Err(bad(format!("operation {seq}, expected {expected}")));
                }
                next = Some(seq + 1);
                if op == FileOp::Barrier {
                    wire::write(&mut w, &Msg::Applied { term, seq }).await?;
                    continue;
                }
                let synced = apply(shared, &mut files, &op)?;
                if synced {
                    wire::write(&mut w, &Msg::Ack { term, seq }).await?;
                }
            }
            Msg::Heartbeat { .. } => {
                if let Some(n) = next {
                    wire::write(
                        &mut w,
                        &Msg::Ack {
                            term,
                            seq: n.saturating_sub(1),
                        },
                    )
                    .await?;
                }
            }
            other => return Err(bad(format!("unexpected frame {other:?} from the leader"))),
        }
    }
    Ok(())
}

/// Reads one frame, or fails when none comes within `idle`.
async fn read_within<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    idle: Duration,
) -> io::Result<Option<Msg>> {
    tokio::time::timeout(idle, wire::read(r))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing from the peer for {} ms", idle.as_millis()),
            ))
        })
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Applies one operation of the stream; whether it was a sync (to acknowledge).
fn apply(
    shared: &Shared,
    files: &mut BTreeMap<String, Box<dyn AppendFile>>,
    op: &FileOp,
) -> io::Result<bool> {
    let disk = locked(&shared.disk);
    let missing = |n: &str| bad(format!("an operation on {n}, which this copy lacks"));
    let synced = match op {
        FileOp::Create(n) => {
            files.insert(n.clone(), disk.create(n)?);
            false
        }
        FileOp::Append(n, b) => {
            files.get_mut(n).ok_or_else(|| missing(n))?.append(b)?;
            false
        }
        FileOp::Truncate(n, len) => {
            files.get_mut(n).ok_or_else(|| missing(n))?.truncate(*len)?;
            false
        }
        FileOp::Rename(a, b) => {
            disk.rename(a, b)?;
            if let Some(f) = files.remove(a) {
                files.insert(b.clone(), f);
            }
            false
        }
        FileOp::Remove(n) => {
            match disk.remove(n) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            files.remove(n);
            false
        }
        FileOp::Sync(n) => {
            files.get_mut(n).ok_or_else(|| missing(n))?.sync()?;
            true
        }
        FileOp::SyncDir => {
            disk.sync_dir()?;
            true
        }
        FileOp::Barrier => false,
    };
    Ok(synced)
}

/// Stands for election whenever no leader has been heard from for a random timeout.
async fn elections(shared: Arc<Shared>) {
    let mut timeout = {
        let mut s = shared.state();
        shared.election_timeout(&mut s)
    };
    loop {
        let deadline = shared.state().last_heard + timeout;
        if Instant::now() < deadline {
            tokio::time::sleep_until(deadline).await;
            continue;
        }
        if shared.state().role == Role::Leader {
            return;
        }
        match campaign(&shared).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(node = %shared.cfg.node, "election failed: {e}"),
        }
        let mut s = shared.state();
        s.last_heard = Instant::now();
        timeout = shared.election_timeout(&mut s);
    }
}

/// One candidacy: a new term, a vote for itself, then the peers' votes. `true` when it
/// won.
async fn campaign(shared: &Arc<Shared>) -> io::Result<bool> {
    let (term, log) = {
        let mut s = shared.state();
        s.durables.term += 1;
        s.durables.voted_for = Some(shared.cfg.node.clone());
        s.role = Role::Candidate;
        shared.persist(&s)?;
        let log = position(&**locked(&shared.disk), s.durables.log_term)?;
        (s.durables.term, log)
    };
    tracing::info!(node = %shared.cfg.node, term, "standing for election");
    let request = Msg::VoteRequest {
        term,
        candidate: shared.cfg.node.clone(),
        log,
    };
    let wait = Duration::from_millis(shared.cfg.election_timeout_ms);
    let mut asks = JoinSet::new();
    for peer in &shared.cfg.peers {
        let (net, address, request) = (shared.net.clone(), peer.address.clone(), request.clone());
        crate::task::spawn_into(&mut asks, async move {
            tokio::time::timeout(wait, async move {
                let stream = net.connect(&address).await?;
                let (mut r, mut w) = tokio::io::split(stream);
                wire::write(&mut w, &request).await?;
                wire::read(&mut r).await
            })
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        });
    }
    let mut votes = 1;
    while let Some(reply) = asks.join_next().await {
        let Ok(Ok(Some(Msg::VoteReply {
            term: theirs,
            granted,
        }))) = reply
        else {
            continue;
        };
        let mut s = shared.state();
        if theirs > term {
            shared.observe_term(&mut s, theirs)?;
            return Ok(false);
        }
        if s.durables.term != term || s.role != Role::Candidate {
            return Ok(false);
        }
        if granted {
            votes += 1;
        }
        if votes >= shared.cfg.quorum() {
            s.role = Role::Leader;
            s.durables.log_term = term;
            shared.persist(&s)?;
            let stream = Arc::new(LeaderStream::new(
                term,
                shared.cfg.quorum(),
                shared.cfg.backlog_bytes_max as usize,
            ));
            *locked(&shared.stream) = Some(stream);
            drop(s);
            tracing::info!(node = %shared.cfg.node, term, votes, "elected leader");
            shared.elected.notify_one();
            return Ok(true);
        }
    }
    let mut s = shared.state();
    if s.role == Role::Candidate {
        s.role = Role::Follower;
    }
    Ok(false)
}

/// What a follower has acknowledged.
#[derive(Clone, Copy, Debug)]
struct Ack {
    durable: u64,
    applied: u64,
    at: Instant,
}

/// The leader's numbered file operations and its followers' acknowledgements.
pub struct LeaderStream {
    inner: Mutex<StreamInner>,
    /// Bumped on every new operation, acknowledgement or deposition.
    changed: watch::Sender<u64>,
}

struct StreamInner {
    term: u64,
    quorum: usize,
    next_seq: u64,
    backlog: VecDeque<(u64, FileOp)>,
    backlog_bytes: usize,
    backlog_max: usize,
    /// Per follower: the highest durable operation, the highest written one, and when it
    /// last answered.
    acks: BTreeMap<String, Ack>,
    /// Why this node is no longer the leader.
    deposed: Option<String>,
    /// When the leadership began.
    since: Instant,
}

impl LeaderStream {
    fn new(term: u64, quorum: usize, backlog_max: usize) -> LeaderStream {
        LeaderStream {
            inner: Mutex::new(StreamInner {
                term,
                quorum,
                next_seq: 1,
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                backlog_max,
                acks: BTreeMap::new(),
                deposed: None,
                since: Instant::now(),
            }),
            changed: watch::Sender::new(0),
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn push(&self, op: FileOp) {
        let mut i = locked(&self.inner);
        let seq = i.next_seq;
        i.next_seq += 1;
        i.backlog_bytes += op.weight();
        i.backlog.push_back((seq, op));
        while i.backlog_bytes > i.backlog_max {
            let Some((_, old)) = i.backlog.pop_front() else {
                break;
            };
            i.backlog_bytes -= old.weight();
        }
        drop(i);
        self.bump();
    }

    fn depose(&self, why: String) {
        let mut i = locked(&self.inner);
        if i.deposed.is_none() {
            tracing::warn!("no longer the replication leader: {why}");
            i.deposed = Some(why);
        }
        drop(i);
        self.bump();
    }

    fn deposed(&self) -> Option<String> {
        locked(&self.inner).deposed.clone()
    }

    /// Whether a majority (this node included) has everything through `seq` durable (or,
    /// `written`, only written).
    fn majority_through(&self, seq: u64, written: bool) -> bool {
        let i = locked(&self.inner);
        let has = |a: &Ack| if written { a.applied } else { a.durable } >= seq;
        1 + i.acks.values().filter(|a| has(a)).count() >= i.quorum
    }

    /// A follower's acknowledgement.
    fn acknowledged(&self, peer: &str, durable: Option<u64>, applied: u64) {
        let mut i = locked(&self.inner);
        let now = Instant::now();
        let a = i.acks.entry(peer.to_owned()).or_insert(Ack {
            durable: 0,
            applied: 0,
            at: now,
        });
        if let Some(d) = durable {
            a.durable = d;
        }
        a.applied = a.applied.max(applied).max(a.durable);
        a.at = now;
        drop(i);
        self.bump();
    }

    /// A future that ends when a majority has `seq` (durable, or only `written`).
    fn wait_majority(self: &Arc<Self>, seq: u64, written: bool) -> Durable {
        let stream = self.clone();
        Box::pin(async move {
            let mut changes = stream.changed.subscribe();
            loop {
                if let Some(why) = stream.deposed() {
                    return Err(io::Error::other(format!(
                        "no longer the replication leader: {why}"
                    )));
                }
                if stream.majority_through(seq, written) {
                    return Ok(());
                }
                if changes.changed().await.is_err() {
                    return Err(io::Error::other("the replication stream ended"));
                }
            }
        })
    }
}

/// The leader's store disk: every operation on its own disk, numbered into the stream.
pub struct ReplicatingDisk {
    disk: SharedDisk,
    stream: Arc<LeaderStream>,
}

struct ReplicatingFile {
    name: String,
    file: Box<dyn AppendFile>,
    disk: SharedDisk,
    stream: Arc<LeaderStream>,
}

impl ReplicatingFile {
    /// Performs `f` on the file and numbers `op` while the disk is held, so that a
    /// snapshot sees the files exactly as of an operation number.
    fn with(
        &mut self,
        op: FileOp,
        f: impl FnOnce(&mut Box<dyn AppendFile>) -> io::Result<()>,
    ) -> io::Result<()> {
        let _held = locked(&self.disk);
        f(&mut self.file)?;
        self.stream.push(op);
        Ok(())
    }
}

impl AppendFile for ReplicatingFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let op = FileOp::Append(self.name.clone(), bytes::Bytes::copy_from_slice(bytes));
        self.with(op, |f| f.append(bytes))
    }

    fn sync(&mut self) -> io::Result<()> {
        let op = FileOp::Sync(self.name.clone());
        self.with(op, |f| f.sync())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let op = FileOp::Truncate(self.name.clone(), len);
        self.with(op, |f| f.truncate(len))
    }
}

impl ReplicatingDisk {
    fn mutate(&self, op: FileOp, f: impl FnOnce(&dyn Disk) -> io::Result<()>) -> io::Result<()> {
        let disk = locked(&self.disk);
        f(&**disk)?;
        self.stream.push(op);
        Ok(())
    }
}

impl Disk for ReplicatingDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        locked(&self.disk).list()
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        locked(&self.disk).read(name)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        let disk = locked(&self.disk);
        let file = disk.create(name)?;
        self.stream.push(FileOp::Create(name.to_owned()));
        Ok(Box::new(ReplicatingFile {
            name: name.to_owned(),
            file,
            disk: self.disk.clone(),
            stream: self.stream.clone(),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.mutate(FileOp::Rename(from.to_owned(), to.to_owned()), |d| {
            d.rename(from, to)
        })
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.mutate(FileOp::Remove(name.to_owned()), |d| d.remove(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.mutate(FileOp::SyncDir, |d| d.sync_dir())
    }

    fn describe(&self, name: &str) -> String {
        locked(&self.disk).describe(name)
    }

    fn take_sync_delay(&self) -> Duration {
        locked(&self.disk).take_sync_delay()
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        locked(&self.disk).len(name)
    }

    /// The leader still leads. (Its own directory is local and flock-ed against a second
    /// process; it needs no heart-beat.)
    fn keep_alive(&self) -> io::Result<()> {
        match self.stream.deposed() {
            Some(why) => Err(io::Error::other(format!(
                "no longer the replication leader: {why}"
            ))),
            None => Ok(()),
        }
    }

    fn durable(&self) -> Option<Durable> {
        let target = locked(&self.stream.inner).next_seq.saturating_sub(1);
        Some(self.stream.wait_majority(target, false))
    }

    fn replicated(&self) -> Option<Durable> {
        let target = {
            let _held = locked(&self.disk);
            self.stream.push(FileOp::Barrier);
            locked(&self.stream.inner).next_seq.saturating_sub(1)
        };
        Some(self.stream.wait_majority(target, true))
    }
}

/// Deposes the leader when a majority has not answered for an election timeout.
async fn watch_quorum(shared: Arc<Shared>, stream: Arc<LeaderStream>) {
    let period = Duration::from_millis(shared.cfg.heartbeat_interval_ms);
    let timeout = Duration::from_millis(shared.cfg.election_timeout_ms);
    loop {
        tokio::time::sleep(period).await;
        let now = Instant::now();
        let (alive, since, quorum) = {
            let i = locked(&stream.inner);
            if i.deposed.is_some() {
                return;
            }
            let alive = i
                .acks
                .values()
                .filter(|a| now.duration_since(a.at) < timeout)
                .count();
            (alive, i.since, i.quorum)
        };
        if now.duration_since(since) >= timeout && alive + 1 < quorum {
            stream.depose(format!(
                "heard from {alive} of the {} peers within {} ms; a majority needs {}",
                shared.cfg.peers.len(),
                timeout.as_millis(),
                quorum - 1
            ));
            return;
        }
    }
}

/// Streams the journal to one peer: connect, snapshot, operations and heart-beats; on any
/// failure, again from a fresh snapshot.
async fn feed(shared: Arc<Shared>, stream: Arc<LeaderStream>, peer: String, address: String) {
    let retry = Duration::from_millis(shared.cfg.heartbeat_interval_ms);
    loop {
        if stream.deposed().is_some() {
            return;
        }
        if let Err(e) = feed_once(&shared, &stream, &peer, &address).await {
            tracing::debug!(node = %shared.cfg.node, %peer, "replication stream ended: {e}");
        }
        tokio::time::sleep(retry).await;
    }
}

async fn feed_once(
    shared: &Arc<Shared>,
    stream: &Arc<LeaderStream>,
    peer: &str,
    address: &str,
) -> io::Result<()> {
    let term = locked(&stream.inner).term;
    let conn = tokio::time::timeout(
        Duration::from_millis(shared.cfg.election_timeout_ms),
        shared.net.connect(address),
    )
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let (mut r, mut w) = tokio::io::split(conn);
    wire::write(
        &mut w,
        &Msg::Hello {
            term,
            leader: shared.cfg.node.clone(),
        },
    )
    .await?;
    // The snapshot's cut: file names and lengths as of operation `from - 1`.
    let (cut, from) = {
        let disk = locked(&shared.disk);
        let mut cut = Vec::new();
        for name in disk.list()? {
            if replicated(&name) {
                cut.push((name.clone(), disk.len(&name)?));
            }
        }
        cut.sort();
        (cut, locked(&stream.inner).next_seq)
    };
    // Acknowledgements come back while the stream goes out.
    // Set once the snapshot is out: the follower says nothing while it receives one
    // (however long a large journal takes), and answers every heart-beat after it.
    let snapshot_sent = std::sync::atomic::AtomicBool::new(false);
    let acks = async {
        // A follower silent for an election timeout after its snapshot is cut off, and
        // the stream starts again (with a fresh copy) once it can be reached.
        let idle = Duration::from_millis(shared.cfg.election_timeout_ms);
        loop {
            let msg = if snapshot_sent.load(std::sync::atomic::Ordering::Relaxed) {
                read_within(&mut r, idle).await?
            } else {
                wire::read(&mut r).await?
            };
            let Some(msg) = msg else {
                break;
            };
            match msg {
                Msg::Ack { seq, .. } => stream.acknowledged(peer, Some(seq), seq),
                Msg::Applied { seq, .. } => stream.acknowledged(peer, None, seq),
                Msg::Reject { term: theirs } => {
                    let mut s = shared.state();
                    shared.observe_term(&mut s, theirs)?;
                    stream.depose(format!("{peer} is in the newer term {theirs}"));
                    return Ok(());
                }
                other => return Err(bad(format!("unexpected frame {other:?} from {peer}"))),
            }
        }
        Ok(())
    };
    let send = async {
        wire::write(
            &mut w,
            &Msg::SnapshotBegin {
                files: cut.iter().map(|(n, _)| n.clone()).collect(),
            },
        )
        .await?;
        for (name, len) in &cut {
            let bytes = match locked(&shared.disk).read(name) {
                Ok(b) => b,
                // Removed since the cut: a later operation removes it on the follower too.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let upto = (*len as usize).min(bytes.len());
            for chunk in bytes[..upto].chunks(wire::CHUNK_BYTES) {
                wire::write(
                    &mut w,
                    &Msg::SnapshotChunk {
                        name: name.clone(),
                        bytes: chunk.to_vec(),
                    },
                )
                .await?;
            }
        }
        wire::write(&mut w, &Msg::SnapshotEnd { seq: from }).await?;
        snapshot_sent.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut next = from;
        let mut changes = stream.changed.subscribe();
        let heartbeat = Duration::from_millis(shared.cfg.heartbeat_interval_ms);
        loop {
            if stream.deposed().is_some() {
                return Ok(());
            }
            let batch: Vec<(u64, FileOp)> = {
                let i = locked(&stream.inner);
                if i.backlog.front().is_some_and(|(s, _)| *s > next)
                    || (i.backlog.is_empty() && i.next_seq > next)
                {
                    return Err(io::Error::other(format!(
                        "{peer} fell behind the backlog ({} bytes): copying the journal again",
                        i.backlog_max
                    )));
                }
                // Operation numbers are consecutive: `next` is this far into the backlog.
                let skip = i
                    .backlog
                    .front()
                    .map_or(0, |(first, _)| (next - first) as usize);
                i.backlog
                    .range(skip.min(i.backlog.len())..)
                    .take(256)
                    .cloned()
                    .collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    c = changes.changed() => {
                        if c.is_err() {
                            return Ok(());
                        }
                    }
                    () = tokio::time::sleep(heartbeat) => {
                        wire::write(&mut w, &Msg::Heartbeat { term }).await?;
                    }
                }
                continue;
            }
            for (seq, op) in batch {
                wire::write(&mut w, &Msg::Op { seq, op }).await?;
                next = seq + 1;
            }
        }
    };
    tokio::select! {
        biased;
        r = acks => r,
        r = send => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_damage_is_refused() {
        let d = Durables {
            term: 7,
            voted_for: Some("broker-2".into()),
            log_term: 6,
            pending: Some(vec!["journal-a".into(), "journal-b".into()]),
        };
        let bytes = d.encode();
        assert_eq!(Durables::decode(&bytes).unwrap(), d);
        let empty = Durables {
            pending: Some(Vec::new()),
            ..Durables::default()
        };
        assert_eq!(Durables::decode(&empty.encode()).unwrap(), empty);
        let mut bad = bytes.clone();
        bad[5] ^= 1;
        assert!(Durables::decode(&bad).is_err());
    }

    fn write(disk: &dyn Disk, name: &str, bytes: &[u8]) {
        let mut f = disk.create(name).unwrap();
        f.append(bytes).unwrap();
    }

    /// A crash between a snapshot's durable list and its last rename: the next start
    /// finishes the install (every staged copy replaces its file, journal files the
    /// snapshot lacks go) and leaves the lock and the node's own state alone.
    #[tokio::test]
    async fn a_start_finishes_an_interrupted_snapshot_install() {
        use crate::store::disk::mem::MemDisk;
        let disk = MemDisk::default();
        write(&disk, "journal-00000000000000000001.log", b"old-1");
        write(&disk, "journal-00000000000000000002.log", b"old-2");
        write(
            &disk,
            "journal-00000000000000000003.log",
            b"old-3, not in the snapshot",
        );
        write(
            &disk,
            "journal-00000000000000000002.log.resync.tmp",
            b"new-2",
        );
        write(
            &disk,
            "journal-00000000000000000004.log.resync.tmp",
            b"new-4",
        );
        write(
            &disk,
            "journal-00000000000000000009.log.resync.tmp",
            b"left over",
        );
        write(&disk, LOCK_FILE, b"");
        let d = Durables {
            term: 5,
            voted_for: None,
            log_term: 5,
            pending: Some(vec![
                "journal-00000000000000000001.log".into(),
                "journal-00000000000000000002.log".into(),
                "journal-00000000000000000004.log".into(),
            ]),
        };
        persist(&disk, &d).unwrap();
        let cfg = ReplicationConfig {
            node: "a".into(),
            listen: "127.0.0.1:0".into(),
            seed: Some(1),
            ..ReplicationConfig::default()
        };
        let net: SharedNet = Arc::new(crate::net::TokioNet);
        let node = Node::start(cfg, net, Box::new(disk.clone())).await.unwrap();
        let mut names = disk.list().unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                "journal-00000000000000000001.log",
                "journal-00000000000000000002.log",
                "journal-00000000000000000004.log",
                LOCK_FILE,
                STATE_FILE,
            ]
        );
        assert_eq!(
            disk.read("journal-00000000000000000001.log").unwrap(),
            b"old-1"
        );
        assert_eq!(
            disk.read("journal-00000000000000000002.log").unwrap(),
            b"new-2"
        );
        assert_eq!(
            disk.read("journal-00000000000000000004.log").unwrap(),
            b"new-4"
        );
        let after = Durables::decode(&disk.read(STATE_FILE).unwrap()).unwrap();
        assert_eq!(after.pending, None);
        assert_eq!(
            position(&**locked(&node.shared.disk), 5).unwrap(),
            Position {
                term: 5,
                seq: 4,
                len: 5
            }
        );
    }

    /// A damaged `replica-state` stops the start with an error naming the file and what to
    /// do, rather than a node that forgot its votes.
    #[tokio::test]
    async fn a_damaged_state_file_is_a_clear_error() {
        use crate::store::disk::mem::MemDisk;
        let disk = MemDisk::default();
        write(&disk, STATE_FILE, b"term 3\nvoted_for b\n");
        let cfg = ReplicationConfig {
            node: "a".into(),
            listen: "127.0.0.1:0".into(),
            ..ReplicationConfig::default()
        };
        let net: SharedNet = Arc::new(crate::net::TokioNet);
        let Err(e) = Node::start(cfg, net, Box::new(disk)).await else {
            panic!("a damaged state file was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains("mem:replica-state is damaged") && text.contains("move it away"),
            "{text}"
        );
    }
}
