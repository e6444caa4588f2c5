//! The message store: an append-only journal of checksummed records behind one disk
//! seam ([`Disk`]).
//!
//! The core never touches it: it emits [`Record`]s as `Output::Persist` for persistent
//! messages, and the server shell appends them here, syncs per `[store] sync`, and
//! reports back with `Broker::handle_synced`. On start, [`Store::open`] reads every
//! journal file in order and returns what is still live ([`Recovered`]): the messages not
//! yet acknowledged in every queue they were put in, and the durable subscriptions.
//!
//! Files are `journal-<20-digit sequence>.log` ([`segment_name`]), each starting with the
//! format header of [`record`]. Writing goes to the newest; past `segment_bytes_max` it is
//! synced and a new one begins, which first repeats the live durable subscriptions, so
//! that only messages keep old files alive. Compaction deletes the oldest files while
//! none of the messages enqueued in them is still live (acknowledgements in a deleted
//! file can only concern messages of that file or older ones).
//!
//! Recovery rules. After every sync the next write starts with a *sync mark*: how many
//! bytes of the file were durable then. Damage in the newest file that no later sync mark
//! vouches for (no mark after it claims the damaged bytes synced) is a torn tail: writes
//! the disk had not synced when the power went, whatever state they reached the platter
//! in (cut short, zero-filled holes, later blocks present and earlier ones missing). It
//! and everything after it are discarded and the file is rewritten without them; they
//! were never acknowledged as durable. Damage in synced bytes, or in any older file
//! (a file is synced before the next one starts), is corruption, and [`Store::open`]
//! refuses with the file and byte offset unless `skip_corrupt` is set. Files written in
//! format version 1, which has no marks, keep the old rule: only a record cut short at
//! the very end of the newest file is torn.
//! A journal written by a newer format version is refused by name. Other files in the
//! directory are left alone (logged once).

pub mod config;
pub mod disk;
pub mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use thiserror::Error;

pub use config::{
    DiskFullPolicy, FullPolicy, MasterSlave, ReplicaPeer, ReplicationConfig, StoreConfig,
    SyncPolicy,
};
pub use disk::{AppendFile, Disk, Durable, StdDisk};
pub use record::{DurableSub, Record, StoredMessage, durable_queue_name};

/// Why the store cannot go on (or start).
#[derive(Debug, Error)]
pub enum StoreError {
    /// An operating-system error.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Another process holds the store directory's lock.
    #[error(
        "the store directory {dir} is in use by another broker (its lock file is held); \
         stop that broker or give this one another store.dir"
    )]
    Locked {
        /// The directory.
        dir: String,
    },
    /// The master's check that it still holds the directory's lock failed (see
    /// [`Disk::keep_alive`]): another broker may be the master now.
    #[error(
        "lost the store directory's lock ({why}): stopping, so that the broker holding it \
         now is the only master"
    )]
    LockLost {
        /// What the check met.
        why: String,
    },
    /// A record in the middle of a journal file fails its check.
    #[error(
        "journal {file} is corrupt at byte offset {offset}: {why} (set store.skip_corrupt = true \
         to skip damaged records and start anyway; they are lost)"
    )]
    Corrupt {
        /// The file's path.
        file: String,
        /// Byte offset of the bad record in the file.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A journal written by a newer format.
    #[error(
        "journal {file} was written in format version {version}; this broker reads version {} \
         and older (run a newer stampede-broker on this store)",
        record::FORMAT_VERSION
    )]
    NewerFormat {
        /// The file's path.
        file: String,
        /// Its version.
        version: u32,
    },
    /// A file named like a journal that is not one.
    #[error("{file} is named like a journal file but is not one (no journal header)")]
    NotJournal {
        /// The file's path.
        file: String,
    },
}

impl StoreError {
    /// Whether this is a full disk (ENOSPC) met by an append that took itself back:
    /// nothing was written, and the same append can be tried again once there is room.
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::Io { what, source } => {
                what.starts_with("append to ")
                    && (source.kind() == io::ErrorKind::StorageFull
                        || source.raw_os_error() == Some(ENOSPC))
            }
            _ => false,
        }
    }
}

/// Linux's "no space left on device".
const ENOSPC: i32 = 28;

/// Settings the store itself needs (from `[store]`).
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Roll over to a new file past this many bytes.
    pub segment_bytes_max: u64,
    /// Skip corrupt records instead of refusing to start.
    pub skip_corrupt: bool,
}

impl From<&StoreConfig> for StoreOptions {
    fn from(c: &StoreConfig) -> StoreOptions {
        StoreOptions {
            segment_bytes_max: c.segment_bytes_max,
            skip_corrupt: c.skip_corrupt,
        }
    }
}

/// What the journal held when the store was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Messages still live, in store-id order, each with the queues still holding it.
    pub messages: Vec<StoredMessage>,
    /// Live durable subscriptions, in (client-id, name) order.
    pub durables: Vec<DurableSub>,
    /// The next store id to give.
    pub next_id: u64,
    /// A torn record discarded at the end of the newest file: (file, offset).
    pub torn_tail: Option<(String, u64)>,
    /// Corrupt records skipped with `skip_corrupt`: (file, offset).
    pub skipped: Vec<(String, u64)>,
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("journal-{seq:020}.log")
}

/// The sequence number of journal file `name`, if it is one.
pub fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("journal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the store knows of live records (the index), without message bodies.
#[derive(Default)]
struct Index {
    /// Live message → (segment of its enqueue, queues still holding it).
    live: BTreeMap<u64, (u64, BTreeSet<Arc<str>>)>,
    /// Live messages per segment (every segment has an entry, possibly 0).
    per_segment: BTreeMap<u64, u64>,
    /// Durable subscriptions by (client-id, name).
    durables: BTreeMap<(String, String), DurableSub>,
    /// The highest store id seen.
    max_id: u64,
}

impl Index {
    /// Applies `record`, written in `segment`; with `bodies`, keeps enqueued messages.
    fn apply(
        &mut self,
        segment: u64,
        record: &Record,
        bodies: &mut Option<&mut BTreeMap<u64, StoredMessage>>,
    ) {
        match record {
            Record::Enqueue(m) => {
                self.max_id = self.max_id.max(m.id);
                let queues: BTreeSet<Arc<str>> = m.queues.iter().cloned().collect();
                if queues.is_empty() {
                    return;
                }
                if self.live.insert(m.id, (segment, queues)).is_none() {
                    *self.per_segment.entry(segment).or_insert(0) += 1;
                }
                if let Some(b) = bodies.as_deref_mut() {
                    b.insert(m.id, m.clone());
                }
            }
            Record::Ack { id, queue } => {
                self.max_id = self.max_id.max(*id);
                self.ack(*id, queue, bodies);
            }
            Record::Commit(ops) => {
                for op in ops {
                    self.apply(segment, op, bodies);
                }
            }
            Record::DurableAdd(d) => {
                self.durables
                    .insert((d.client_id.clone(), d.name.clone()), d.clone());
            }
            Record::DurableRemove { client_id, name } => {
                self.durables.remove(&(client_id.clone(), name.clone()));
                let queue: Arc<str> = Arc::from(durable_queue_name(client_id, name));
                let holding: Vec<u64> = self
                    .live
                    .iter()
                    .filter(|(_, (_, qs))| qs.contains(&queue))
                    .map(|(id, _)| *id)
                    .collect();
                for id in holding {
                    self.ack(id, &queue, bodies);
                }
            }
        }
    }

    fn ack(
        &mut self,
        id: u64,
        queue: &Arc<str>,
        bodies: &mut Option<&mut BTreeMap<u64, StoredMessage>>,
    ) {
        let Some((segment, queues)) = self.live.get_mut(&id) else {
            return;
        };
        queues.remove(queue);
        if queues.is_empty() {
            let segment = *segment;
            self.live.remove(&id);
            if let Some(n) = self.per_segment.get_mut(&segment) {
                *n = n.saturating_sub(1);
            }
            if let Some(b) = bodies.as_deref_mut() {
                b.remove(&id);
            }
        }
    }
}

/// The open journal.
pub struct Store {
    disk: Box<dyn Disk>,
    options: StoreOptions,
    active: Box<dyn AppendFile>,
    active_seq: u64,
    active_bytes: u64,
    index: Index,
    /// Encoding buffer, reused.
    buf: Vec<u8>,
    /// Appended since the last sync.
    dirty: bool,
    /// The active file's length at its last sync.
    synced_bytes: u64,
    /// A sync happened since the last sync mark: the next write starts with one.
    mark_due: bool,
}

impl Store {
    /// Reads the journal in `disk`, discards a torn tail, starts a new file, and returns
    /// the store with what it held.
    pub fn open(
        disk: Box<dyn Disk>,
        options: StoreOptions,
    ) -> Result<(Store, Recovered), StoreError> {
        let io = |what: String| move |source| StoreError::Io { what, source };
        let names = disk
            .list()
            .map_err(io(format!("list {}", disk.describe(""))))?;
        let mut segments: Vec<(u64, String)> = Vec::new();
        for name in names {
            match segment_seq(&name) {
                Some(seq) => segments.push((seq, name)),
                None if name == disk::LOCK_FILE
                    || name.ends_with(".tmp")
                    || name.starts_with(disk::REPLICA_PREFIX) => {}
                None => tracing::warn!(
                    file = %disk.describe(&name),
                    "not a journal file; the store leaves it alone"
                ),
            }
        }
        segments.sort();
        let mut index = Index::default();
        let mut bodies = BTreeMap::new();
        let mut recovered = Recovered::default();
        let last = segments.last().map(|(seq, _)| *seq);
        for (seq, name) in &segments {
            index.per_segment.entry(*seq).or_insert(0);
            let bytes = disk
                .read(name)
                .map_err(io(format!("read {}", disk.describe(name))))?;
            let file = disk.describe(name);
            let valid = read_segment(
                &bytes,
                &file,
                Some(*seq) == last,
                options.skip_corrupt,
                &mut recovered,
                |record| index.apply(*seq, &record, &mut Some(&mut bodies)),
            )?;
            if valid < record::FILE_HEADER_BYTES {
                // Created, its header never whole (a crash right after a rollover): it
                // holds nothing, and left in place it would no longer be the newest file
                // once this start adds one, and the next start would refuse it.
                disk.remove(name)
                    .and_then(|()| disk.sync_dir())
                    .map_err(io(format!("remove the empty {file}")))?;
                index.per_segment.remove(seq);
            } else if valid < bytes.len() {
                // A torn tail: keep the valid prefix only, so that the file is whole
                // before newer files follow it.
                let tmp = format!("{name}.tmp");
                let mut f = disk
                    .create(&tmp)
                    .map_err(io(format!("create {}", disk.describe(&tmp))))?;
                f.append(&bytes[..valid])
                    .and_then(|()| f.sync())
                    .map_err(io(format!("write {}", disk.describe(&tmp))))?;
                disk.rename(&tmp, name)
                    .and_then(|()| disk.sync_dir())
                    .map_err(io(format!("replace {file}")))?;
            }
        }
        let active_seq = last.map_or(1, |s| s + 1);
        let active = new_segment(disk.as_ref(), active_seq)?;
        index.per_segment.insert(active_seq, 0);
        recovered.next_id = index.max_id + 1;
        recovered.messages = bodies
            .into_iter()
            .filter_map(|(id, mut m)| {
                let (_, queues) = index.live.get(&id)?;
                m.queues = queues.iter().cloned().collect();
                Some(m)
            })
            .collect();
        recovered.durables = index.durables.values().cloned().collect();
        let mut store = Store {
            disk,
            options,
            active,
            active_seq,
            active_bytes: record::FILE_HEADER_BYTES as u64,
            index,
            buf: Vec::new(),
            dirty: false,
            synced_bytes: record::FILE_HEADER_BYTES as u64,
            mark_due: false,
        };
        store.write_durables()?;
        store.sync()?;
        store.compact()?;
        Ok((store, recovered))
    }

    /// Appends `record` (not yet synced). Rolls over to a new file when the current one
    /// is full.
    ///
    /// A record that cannot be written leaves nothing behind: what the failed append
    /// wrote of it is cut off again, and the index does not count it, so the same record
    /// can be appended again later (after [`StoreError::is_no_space`], once the disk has
    /// room).
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        if self.active_bytes >= self.options.segment_bytes_max {
            self.roll()?;
        }
        self.write(record)?;
        self.index.apply(self.active_seq, record, &mut None);
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let name = segment_name(self.active_seq);
        self.active.sync().map_err(|source| StoreError::Io {
            what: format!("sync {}", self.disk.describe(&name)),
            source,
        })?;
        self.dirty = false;
        self.synced_bytes = self.active_bytes;
        self.mark_due = true;
        Ok(())
    }

    /// Checks that the store's directory lock is still this broker's ([`Disk::keep_alive`]).
    pub fn keep_alive(&self) -> Result<(), StoreError> {
        self.disk
            .keep_alive()
            .map_err(|e| StoreError::LockLost { why: e.to_string() })
    }

    /// A future that ends when everything synced so far is durable beyond this disk
    /// ([`Disk::durable`]: on a quorum of replicas), if the disk is replicated.
    pub fn durable(&self) -> Option<disk::Durable> {
        self.disk.durable()
    }

    /// A future that ends when everything written so far has reached a majority of
    /// replicas ([`Disk::replicated`]), if the disk is replicated.
    pub fn replicated(&self) -> Option<disk::Durable> {
        self.disk.replicated()
    }

    /// Extra time the syncs since the last call took, to be waited out by the caller
    /// (nonzero only on a simulated slow disk: [`Disk::take_sync_delay`]).
    pub fn take_sync_delay(&self) -> std::time::Duration {
        self.disk.take_sync_delay()
    }

    /// Journal files in use now (for logs and tests).
    pub fn segment_count(&self) -> usize {
        self.index.per_segment.len()
    }

    /// Messages live in the journal now.
    pub fn live_messages(&self) -> usize {
        self.index.live.len()
    }

    fn write(&mut self, record: &Record) -> Result<(), StoreError> {
        self.buf.clear();
        let mark = std::mem::take(&mut self.mark_due);
        if mark {
            record::encode_sync_mark(self.synced_bytes, &mut self.buf);
        }
        record::encode(record, &mut self.buf);
        let name = segment_name(self.active_seq);
        if let Err(source) = self.active.append(&self.buf) {
            // Take back whatever part of the record reached the file, so that the file
            // ends with a whole record again; if even that fails, the file's end is
            // unknown and the error is not one to wait out.
            let error = match self.active.truncate(self.active_bytes) {
                Ok(()) => source,
                Err(e) => io::Error::other(format!(
                    "{source}, and cutting off the partial record failed: {e}"
                )),
            };
            self.mark_due = mark;
            return Err(StoreError::Io {
                what: format!("append to {}", self.disk.describe(&name)),
                source: error,
            });
        }
        self.active_bytes += self.buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    fn write_durables(&mut self) -> Result<(), StoreError> {
        let durables: Vec<DurableSub> = self.index.durables.values().cloned().collect();
        for d in durables {
            self.write(&Record::DurableAdd(d))?;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let seq = self.active_seq + 1;
        self.active = new_segment(self.disk.as_ref(), seq)?;
        self.active_seq = seq;
        self.active_bytes = record::FILE_HEADER_BYTES as u64;
        // The new file was created durable with its header; nothing more to vouch for.
        self.synced_bytes = self.active_bytes;
        self.mark_due = false;
        self.index.per_segment.insert(seq, 0);
        // A new file without its durable subscriptions must not be appended to later:
        // no failure here is one to wait out (`is_no_space` is false for it).
        self.write_durables().map_err(|e| match e {
            StoreError::Io { what, source } => StoreError::Io {
                what: format!("roll over to {}: {what}", segment_name(seq)),
                source,
            },
            e => e,
        })?;
        self.compact()
    }

    /// Deletes the oldest files while nothing enqueued in them is live.
    fn compact(&mut self) -> Result<(), StoreError> {
        let mut removed = false;
        while let Some((&seq, &live)) = self.index.per_segment.first_key_value() {
            if seq == self.active_seq || live > 0 {
                break;
            }
            let name = segment_name(seq);
            match self.disk.remove(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        what: format!("remove {}", self.disk.describe(&name)),
                        source,
                    });
                }
            }
            self.index.per_segment.remove(&seq);
            removed = true;
        }
        if removed {
            self.disk.sync_dir().map_err(|source| StoreError::Io {
                what: format!("sync {}", self.disk.describe("")),
                source,
            })?;
        }
        Ok(())
    }
}

/// Creates segment `seq` with its header, durable (file and directory entry).
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("active_seq", &self.active_seq)
            .field("active_bytes", &self.active_bytes)
            .field("live_messages", &self.index.live.len())
            .finish()
    }
}

fn new_segment(disk: &dyn Disk, seq: u64) -> Result<Box<dyn AppendFile>, StoreError> {
    let name = segment_name(seq);
    let mut header = Vec::with_capacity(record::FILE_HEADER_BYTES);
    header.extend_from_slice(record::MAGIC);
    header.extend_from_slice(&record::FORMAT_VERSION.to_le_bytes());
    let f = disk
        .create(&name)
        .and_then(|mut f| {
            f.append(&header)?;
            f.sync()?;
            Ok(f)
        })
        .map_err(|source| StoreError::Io {
            what: format!("create {}", disk.describe(&name)),
            source,
        })?;
    disk.sync_dir().map_err(|source| StoreError::Io {
        what: format!("sync the directory of {}", disk.describe(&name)),
        source,
    })?;
    Ok(f)
}

/// Whether a sync mark after byte `at` of `bytes` claims `at` synced. Damage can leave
/// later entries unframed, so every offset is tried: a mark is found by its fixed frame
/// and checksum, and counts only if it claims no more than its own offset (a mark can
/// only vouch for bytes before it).
fn vouched_for(bytes: &[u8], at: usize) -> bool {
    (at + 1..bytes.len()).any(|x| {
        record::sync_mark_at(&bytes[x..])
            .is_some_and(|claim| claim > at as u64 && claim <= x as u64)
    })
}

/// Reads one file's records into `apply`; returns how many bytes are valid (less than the
/// file only for a torn tail of the newest file).
fn read_segment(
    bytes: &[u8],
    file: &str,
    newest: bool,
    skip_corrupt: bool,
    recovered: &mut Recovered,
    mut apply: impl FnMut(Record),
) -> Result<usize, StoreError> {
    if bytes.len() < record::FILE_HEADER_BYTES {
        if newest && record::MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            // Created, header not yet whole: a crash right after a rollover.
            recovered.torn_tail = Some((file.to_owned(), 0));
            return Ok(0);
        }
        return Err(StoreError::NotJournal {
            file: file.to_owned(),
        });
    }
    if &bytes[..8] != record::MAGIC {
        return Err(StoreError::NotJournal {
            file: file.to_owned(),
        });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > record::FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            file: file.to_owned(),
            version,
        });
    }
    let mut at = record::FILE_HEADER_BYTES;
    while at < bytes.len() {
        match record::decode_entry(&bytes[at..]) {
            Ok((record::Entry::Record(rec), used)) => {
                apply(rec);
                at += used;
            }
            Ok((record::Entry::SyncedTo(_), used)) => at += used,
            Err(e) => {
                let len = bytes
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                let end = len.map(|l| at + record::RECORD_HEADER_BYTES + l);
                let bad_length = matches!(e, record::DecodeError::Length(_));
                let torn = if version >= record::SYNC_MARKS_SINCE {
                    // Nothing after it says these bytes were ever synced.
                    newest && !vouched_for(bytes, at)
                } else {
                    // Version 1: the newest file ends inside this record, or right after it.
                    newest && end.is_none_or(|end| end >= bytes.len()) && !bad_length
                };
                if torn {
                    recovered.torn_tail = Some((file.to_owned(), at as u64));
                    tracing::warn!(
                        file,
                        offset = at,
                        discarded_bytes = bytes.len() - at,
                        "discarding a torn tail of the journal (written after its last sync)"
                    );
                    return Ok(at);
                }
                if !skip_corrupt {
                    return Err(StoreError::Corrupt {
                        file: file.to_owned(),
                        offset: at as u64,
                        why: e.to_string(),
                    });
                }
                tracing::error!(file, offset = at, "skipping a corrupt journal record: {e}");
                recovered.skipped.push((file.to_owned(), at as u64));
                match end {
                    Some(end) if !bad_length && end <= bytes.len() => at = end,
                    // The length itself is unusable: nothing after it can be framed.
                    _ => return Ok(bytes.len()),
                }
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests;
