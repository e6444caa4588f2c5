//! [`SimDisk`]: the message store's [`Disk`] on turmoil's simulated file system
//! (`unstable-fs`), so that a simulated broker keeps its journal the way a real one does and
//! a restart recovers it. This is the only module that touches `turmoil::fs`.
//!
//! Every call runs on the calling task, inside the broker's simulated host (the store
//! writer task calls it; there are no threads): turmoil finds the host's file system
//! through the simulation's current host. Each host has its own file system, which
//! outlives the host's crashes.
//!
//! Durability is turmoil's: a write is *pending* until the file is synced, a creation,
//! rename or removal until the directory is synced. What a crash keeps depends on the
//! fault:
//!
//! - **Process crash** (`crash`): the operating system survives and keeps what it accepted
//!   (its page cache reaches the disk later), so everything written survives, synced or
//!   not. turmoil's own crash drops pending writes (a power loss), so before a process
//!   crash the world calls [`DiskSlot::flush`], which syncs every file of the store
//!   directory and the directory itself, and only then crashes the host.
//! - **Power loss** (`power-loss`): turmoil's crash as it is: pending writes and entries
//!   never synced are gone, or torn (a prefix of their blocks survives, `[disk]
//!   torn_write_block_bytes`); what was synced survives.
//!
//! Brokers with `store.master_slave = "shared-store"` and the same `dir` mount one
//! [`SharedStorage`] instead: a directory outside every host, as a SAN or an NFS export is,
//! with the directory's lock that makes one of them the master. Its rules are NFS's: a
//! creation, rename or removal is done when the call returns (NFS makes them synchronous),
//! and data written is safe once synced (COMMIT). A broker's process crash loses nothing it
//! wrote (its operating system sends it on); its power loss loses what it had written and
//! not synced (whole: no torn blocks), and releases its lock.
//!
//! Disk faults (`disk-error`, `disk-full`, `slow-disk`) act through the [`DiskSlot`]'s
//! shared [`DiskFault`]: every operation checks it, so an EIO or ENOSPC reaches the store
//! exactly as a real one would, and a slow disk reports its extra sync time through
//! [`Disk::take_sync_delay`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede_broker::store::{AppendFile, Disk, MasterSlave};
use turmoil::fs::FsHandle;
use turmoil::fs::shim::std::fs;

use crate::fault::DiskFault;
use crate::scenario::Scenario;

/// The store directory on a simulated host when the scenario names none.
pub const DEFAULT_DIR: &str = "/var/lib/stampede/store";

/// A disk fault and the sync time it owes, shared by a slot, its disk and its files.
#[derive(Debug, Default)]
struct FaultState {
    fault: DiskFault,
    /// Extra sync time not yet reported through `take_sync_delay`.
    owed: Duration,
}

type SharedFault = Arc<Mutex<FaultState>>;

fn lock(f: &SharedFault) -> std::sync::MutexGuard<'_, FaultState> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error `op` meets under the current fault, if any (`write`: it would take space).
fn injected(f: &SharedFault, write: bool) -> io::Result<()> {
    match lock(f).fault {
        DiskFault::Error => Err(io::Error::from_raw_os_error(EIO)),
        DiskFault::Full if write => Err(io::Error::from_raw_os_error(ENOSPC)),
        _ => Ok(()),
    }
}

/// EIO and ENOSPC, as Linux numbers them.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// A store directory on the current simulated host's file system.
#[derive(Debug)]
pub struct SimDisk {
    dir: PathBuf,
    fault: SharedFault,
}

impl SimDisk {
    /// Opens `dir` on the current host's file system, creating it (and its parents) if
    /// needed and making their entries durable, as an installer would have. Must run
    /// inside a simulated host.
    pub fn open(dir: &str) -> io::Result<SimDisk> {
        SimDisk::open_with(dir, SharedFault::default())
    }

    fn open_with(dir: &str, fault: SharedFault) -> io::Result<SimDisk> {
        injected(&fault, false)?;
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the simulated store directory must be absolute: {}",
                    dir.display()
                ),
            ));
        }
        fs::create_dir_all(&dir)?;
        // Each new directory's entry lives in its parent: sync from the root down.
        let mut chain: Vec<&Path> = dir.ancestors().collect();
        chain.reverse();
        for d in chain {
            fs::sync_dir(d)?;
        }
        Ok(SimDisk { dir, fault })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A simulated file open for appending.
struct SimFile(fs::File, SharedFault);

impl AppendFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        injected(&self.1, true)?;
        self.0.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        injected(&self.1, false)?;
        self.0.sync_data()?;
        let mut f = lock(&self.1);
        if let DiskFault::SlowMs(ms) = f.fault {
            f.owed += Duration::from_millis(ms);
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        injected(&self.1, false)?;
        self.0.set_len(len)?;
        self.0.seek(io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl Disk for SimDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        // turmoil lists a directory in hash order; the store must not depend on it.
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        injected(&self.fault, false)?;
        let mut bytes = Vec::new();
        fs::File::open(self.path(name))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        injected(&self.fault, true)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(self.path(name))?;
        Ok(Box::new(SimFile(file, self.fault.clone())))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        injected(&self.fault, false)?;
        fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        injected(&self.fault, false)?;
        fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        injected(&self.fault, false)?;
        fs::sync_dir(&self.dir)
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn take_sync_delay(&self) -> Duration {
        std::mem::take(&mut lock(&self.fault).owed)
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        injected(&self.fault, false)?;
        let file = fs::OpenOptions::new().append(true).open(self.path(name))?;
        Ok(Box::new(SimFile(file, self.fault.clone())))
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        injected(&self.fault, false)?;
        fs::metadata(self.path(name)).map(|m| m.len())
    }
}

/// A [`DiskSlot`] for every broker of `scenario` that has a `[brokers.store]`, by name.
/// Brokers with `master_slave = "shared-store"` and the same `dir` share one
/// [`SharedStorage`] (and its disk faults).
pub fn slots(scenario: &Scenario) -> BTreeMap<String, DiskSlot> {
    let mut shared: BTreeMap<String, (SharedStorage, SharedFault)> = BTreeMap::new();
    let (lease_ms, fencing) = (scenario.disk.lease_ms, scenario.disk.shared_fencing);
    scenario
        .brokers
        .iter()
        .filter_map(|b| {
            let store = b.store.as_ref()?;
            let dir = store.dir.as_deref().unwrap_or(DEFAULT_DIR);
            let mut slot = DiskSlot::new(dir);
            if store.master_slave == MasterSlave::SharedStore {
                let (storage, fault) = shared
                    .entry(dir.to_owned())
                    .or_insert_with(|| {
                        (
                            SharedStorage::new(lease_ms, fencing),
                            SharedFault::default(),
                        )
                    })
                    .clone();
                slot.fault = fault;
                slot.shared = Some(SharedState {
                    storage,
                    broker: b.name.clone(),
                    retry: Duration::from_millis(store.lock_acquire_interval_ms),
                    epoch: Arc::default(),
                });
            }
            Some((b.name.clone(), slot))
        })
        .collect()
}

/// A store directory on shared storage that several simulated brokers mount (see the
/// module's documentation). Cheap to clone; clones are the same directory.
#[derive(Clone, Debug)]
pub struct SharedStorage(Arc<Mutex<SharedDir>>);

#[derive(Debug)]
struct SharedDir {
    /// The directory's entries.
    files: BTreeMap<String, Inode>,
    /// The directory's lock: the master's lease.
    lock: Option<Lease>,
    /// Epochs granted so far (each grant of the lock takes the next).
    epochs: u64,
    /// Brokers cut off from the storage by a partition.
    partitioned: BTreeSet<String>,
    /// Brokers whose machine's power is off.
    powered_off: BTreeSet<String>,
    /// Brokers whose process ended while cut off: their unlock arrives when they are back.
    unlock_pending: BTreeSet<String>,
    /// The storage's clock (simulated ms since the start), set by the world's step loop.
    now_ms: u64,
    /// How long a lease lasts without renewal.
    lease_ms: u64,
    /// Whether calls under a superseded epoch fail.
    fencing: bool,
}

/// Who holds the lock, under which epoch, renewed when.
#[derive(Clone, Debug)]
struct Lease {
    holder: String,
    epoch: u64,
    renewed_ms: u64,
}

/// A file's contents, shared by its directory entry and its open handles (a renamed or
/// removed file stays writable through a handle, as on a real file system).
type Inode = Arc<Mutex<SharedFile>>;

#[derive(Debug, Default)]
struct SharedFile {
    bytes: Vec<u8>,
    /// How many of `bytes` were synced.
    synced: usize,
    /// Who wrote the bytes after `synced` (their client cache holds them until a sync).
    writer: Option<String>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedDir {
    fn reachable(&self, broker: &str) -> bool {
        !self.partitioned.contains(broker) && !self.powered_off.contains(broker)
    }

    /// A broker back in touch: an unlock it owes arrives now.
    fn reconnected(&mut self, broker: &str) {
        if self.reachable(broker) && self.unlock_pending.remove(broker) {
            self.unlock(broker);
        }
    }

    fn unlock(&mut self, broker: &str) {
        if self.lock.as_ref().is_some_and(|l| l.holder == broker) {
            self.lock = None;
        }
    }
}

impl SharedStorage {
    /// Storage whose leases last `lease_ms` unrenewed, fencing superseded epochs or not.
    pub fn new(lease_ms: u64, fencing: bool) -> SharedStorage {
        SharedStorage(Arc::new(Mutex::new(SharedDir {
            files: BTreeMap::new(),
            lock: None,
            epochs: 0,
            partitioned: BTreeSet::new(),
            powered_off: BTreeSet::new(),
            unlock_pending: BTreeSet::new(),
            now_ms: 0,
            lease_ms,
            fencing,
        })))
    }

    /// Takes the lock for `broker` (a new process: a new epoch) if it reaches the storage
    /// and nobody else holds a live lease; returns the epoch.
    pub fn try_lock(&self, broker: &str) -> Option<u64> {
        let mut dir = locked(&self.0);
        if !dir.reachable(broker) {
            return None;
        }
        let free = match &dir.lock {
            None => true,
            // Its own old lock: the process that held it is gone.
            Some(l) if l.holder == broker => true,
            Some(l) => dir.now_ms.saturating_sub(l.renewed_ms) >= dir.lease_ms,
        };
        if !free {
            return None;
        }
        dir.epochs += 1;
        let epoch = dir.epochs;
        let now_ms = dir.now_ms;
        dir.lock = Some(Lease {
            holder: broker.to_owned(),
            epoch,
            renewed_ms: now_ms,
        });
        Some(epoch)
    }

    /// Releases `broker`'s lock, if it holds it (its process ended); a broker cut off from
    /// the storage sends the unlock when it is back.
    pub fn release(&self, broker: &str) {
        let mut dir = locked(&self.0);
        if dir.reachable(broker) {
            dir.unlock(broker);
        } else {
            dir.unlock_pending.insert(broker.to_owned());
        }
    }

    /// The storage's clock moves on to `now_ms`; the holder renews its lease if it reaches
    /// the storage.
    pub fn tick(&self, now_ms: u64) {
        let mut dir = locked(&self.0);
        dir.now_ms = now_ms;
        let holder_reaches = dir.lock.as_ref().is_some_and(|l| dir.reachable(&l.holder));
        if holder_reaches && let Some(l) = dir.lock.as_mut() {
            l.renewed_ms = now_ms;
        }
    }

    /// Cuts `broker` off from the storage (a partition), or connects it again.
    pub fn set_partitioned(&self, broker: &str, cut: bool) {
        let mut dir = locked(&self.0);
        if cut {
            dir.partitioned.insert(broker.to_owned());
        } else {
            dir.partitioned.remove(broker);
            dir.reconnected(broker);
        }
    }

    /// `broker`'s machine lost its power (`true`) or is up again. A machine back from a
    /// power loss has lost its old lock: the storage drops a rebooted client's state.
    pub fn set_powered_off(&self, broker: &str, off: bool) {
        let mut dir = locked(&self.0);
        if off {
            dir.powered_off.insert(broker.to_owned());
        } else {
            dir.powered_off.remove(broker);
            dir.unlock_pending.remove(broker);
            dir.unlock(broker);
        }
    }

    /// Whether a call from `broker` under `epoch` reaches the storage and is allowed: EIO
    /// when it is cut off, or (with fencing) when its epoch is no longer the lock's.
    fn check(&self, broker: &str, epoch: u64) -> io::Result<()> {
        let dir = locked(&self.0);
        if !dir.reachable(broker) {
            return Err(io::Error::other("the shared storage does not answer (EIO)"));
        }
        if dir.fencing
            && !dir
                .lock
                .as_ref()
                .is_some_and(|l| l.holder == broker && l.epoch == epoch)
        {
            return Err(io::Error::other(format!(
                "the storage fenced epoch {epoch}: the lock has another holder (EIO)"
            )));
        }
        Ok(())
    }

    /// `broker`'s power failed: what it wrote and had not synced never reached the storage.
    pub fn drop_unsynced(&self, broker: &str) {
        let dir = locked(&self.0);
        for inode in dir.files.values() {
            let mut f = locked(inode);
            if f.writer.as_deref() == Some(broker) {
                let synced = f.synced;
                f.bytes.truncate(synced);
                f.writer = None;
            }
        }
    }
}

/// One broker's mount of a [`SharedStorage`].
#[derive(Debug)]
struct SharedDisk {
    storage: SharedStorage,
    broker: String,
    /// The epoch of the lock this incarnation took.
    epoch: u64,
    dir: String,
    fault: SharedFault,
}

impl SharedDisk {
    /// The disk fault, then the storage's answer (reachable, not fenced).
    fn check(&self, write: bool) -> io::Result<()> {
        injected(&self.fault, write)?;
        self.storage.check(&self.broker, self.epoch)
    }
}

struct SharedAppend {
    inode: Inode,
    storage: SharedStorage,
    broker: String,
    epoch: u64,
    fault: SharedFault,
}

impl SharedAppend {
    fn check(&self, write: bool) -> io::Result<()> {
        injected(&self.fault, write)?;
        self.storage.check(&self.broker, self.epoch)
    }
}

impl AppendFile for SharedAppend {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.check(true)?;
        let mut f = locked(&self.inode);
        f.bytes.extend_from_slice(bytes);
        f.writer = Some(self.broker.clone());
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.check(false)?;
        let mut f = locked(&self.inode);
        f.synced = f.bytes.len();
        f.writer = None;
        drop(f);
        let mut f = lock(&self.fault);
        if let DiskFault::SlowMs(ms) = f.fault {
            f.owed += Duration::from_millis(ms);
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.check(false)?;
        let mut f = locked(&self.inode);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        f.bytes.truncate(len);
        f.synced = f.synced.min(len);
        Ok(())
    }
}

impl Disk for SharedDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        self.check(false)?;
        Ok(locked(&self.storage.0).files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.check(false)?;
        let dir = locked(&self.storage.0);
        let inode = dir.files.get(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(locked(inode).bytes.clone())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        self.check(true)?;
        let inode = Inode::default();
        locked(&self.storage.0)
            .files
            .insert(name.to_owned(), inode.clone());
        Ok(Box::new(SharedAppend {
            inode,
            storage: self.storage.clone(),
            broker: self.broker.clone(),
            epoch: self.epoch,
            fault: self.fault.clone(),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check(false)?;
        let mut dir = locked(&self.storage.0);
        let inode = dir.files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        dir.files.insert(to.to_owned(), inode);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.check(false)?;
        locked(&self.storage.0)
            .files
            .remove(name)
            .map(drop)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.check(false)
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{name} (shared)", self.dir)
    }

    fn take_sync_delay(&self) -> Duration {
        std::mem::take(&mut lock(&self.fault).owed)
    }

    /// The master's lock check: the storage answers, and the lock is still its epoch's
    /// (which only a fencing storage can tell it).
    fn keep_alive(&self) -> io::Result<()> {
        self.storage.check(&self.broker, self.epoch)
    }
}

/// A slot's part in a shared store.
#[derive(Clone, Debug)]
struct SharedState {
    storage: SharedStorage,
    /// The broker this slot belongs to.
    broker: String,
    /// How long a slave waits between tries of the lock.
    retry: Duration,
    /// The epoch of the lock the latest incarnation took.
    epoch: Arc<AtomicU64>,
}

/// One broker's simulated store, shared between its host (each incarnation opens the
/// disk through it) and the world's step loop (which flushes it before a process crash).
#[derive(Clone, Debug)]
pub struct DiskSlot {
    dir: String,
    /// The host's file system, captured by the latest incarnation (turmoil reaches a
    /// host's file system from outside the host only through such a handle).
    fs: Arc<Mutex<Option<FsHandleBox>>>,
    /// The disk fault in effect (set by the world's step loop).
    fault: SharedFault,
    /// The broker stopped because its store failed, and waits for a restart.
    stopped: Arc<AtomicBool>,
    /// `Some` when the store is on shared storage (master/slave).
    shared: Option<SharedState>,
}

/// [`FsHandle`] without `Debug`.
struct FsHandleBox(FsHandle);

impl std::fmt::Debug for FsHandleBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsHandle")
    }
}

impl DiskSlot {
    /// A slot for the store directory `dir` (absolute, on the broker's host).
    pub fn new(dir: &str) -> DiskSlot {
        DiskSlot {
            dir: dir.to_owned(),
            fs: Arc::default(),
            fault: SharedFault::default(),
            stopped: Arc::default(),
            shared: None,
        }
    }

    /// Whether the store is on shared storage (a master/slave pair's).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Waits, as a slave, until this broker holds the shared store's lock; returns at once
    /// for a store of its own. `waiting` runs once if it has to wait.
    ///
    /// The first retry comes after `phase` (less than one interval, drawn from the seed),
    /// then one every interval: a real slave's tries are not in step with the master's
    /// death, and without the offset every fault at a round time would find a slave
    /// trying at that very instant.
    pub async fn become_master(&self, phase: Duration, waiting: impl FnOnce()) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut waiting = Some(waiting);
        let mut wait = phase;
        let epoch = loop {
            if let Some(epoch) = shared.storage.try_lock(&shared.broker) {
                break epoch;
            }
            if let Some(w) = waiting.take() {
                w();
            }
            tokio::time::sleep(wait).await;
            wait = shared.retry;
        };
        shared.epoch.store(epoch, Ordering::SeqCst);
    }

    /// A shared store's lock retry interval (`None` for a store of its own).
    pub fn lock_retry(&self) -> Option<Duration> {
        self.shared.as_ref().map(|s| s.retry)
    }

    /// The broker's process ended (crash, power loss, or its store failed): its lock on a
    /// shared store is released; on a power loss its unsynced writes are gone too.
    pub fn process_ended(&self, power_loss: bool) {
        if let Some(shared) = &self.shared {
            if power_loss {
                shared.storage.drop_unsynced(&shared.broker);
                shared.storage.set_powered_off(&shared.broker, true);
            }
            shared.storage.release(&shared.broker);
        }
    }

    /// The broker's machine is up again (a restart after a crash or a power loss).
    pub fn machine_up(&self) {
        if let Some(shared) = &self.shared {
            shared.storage.set_powered_off(&shared.broker, false);
        }
    }

    /// Cuts the broker off from its shared storage (`storage-partition`), or heals it.
    /// Nothing for a store of its own.
    pub fn set_storage_partitioned(&self, cut: bool) {
        if let Some(shared) = &self.shared {
            shared.storage.set_partitioned(&shared.broker, cut);
        }
    }

    /// The shared storage's clock moves on (leases are renewed or lapse).
    pub fn tick(&self, now_ms: u64) {
        if let Some(shared) = &self.shared {
            shared.storage.tick(now_ms);
        }
    }

    /// Puts `fault` into effect on this disk (`DiskFault::None` repairs it).
    pub fn set_fault(&self, fault: DiskFault) {
        lock(&self.fault).fault = fault;
    }

    /// Whether a fault is in effect that makes the store fail.
    pub fn failing(&self) -> bool {
        matches!(lock(&self.fault).fault, DiskFault::Error | DiskFault::Full)
    }

    /// Records that the broker stopped because its store failed.
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether the broker had stopped, clearing the mark.
    pub fn take_stopped(&self) -> bool {
        self.stopped.swap(false, Ordering::SeqCst)
    }

    /// Opens the store directory on the current host (inside the broker's host).
    pub fn open(&self) -> io::Result<Box<dyn Disk>> {
        if let Some(shared) = &self.shared {
            let disk = SharedDisk {
                storage: shared.storage.clone(),
                broker: shared.broker.clone(),
                epoch: shared.epoch.load(Ordering::SeqCst),
                dir: self.dir.clone(),
                fault: self.fault.clone(),
            };
            disk.check(false)?;
            return Ok(Box::new(disk));
        }
        let disk = SimDisk::open_with(&self.dir, self.fault.clone())?;
        *self.fs.lock().unwrap_or_else(|p| p.into_inner()) = Some(FsHandleBox(FsHandle::current()));
        Ok(Box::new(disk))
    }

    /// What the operating system does with its page cache when only the process died:
    /// writes every file of the store directory and the directory's entries to the disk.
    /// Called from the step loop (outside every host) just before a process crash; does
    /// nothing if the broker never opened its store.
    ///
    /// It enters the host's file system through turmoil's [`FsHandle`]. It draws nothing
    /// at random (turmoil draws only to tear unsynced writes at a crash, from its seeded
    /// generator), so the run stays a function of its seed.
    pub fn flush(&self) -> io::Result<()> {
        if self.shared.is_some() {
            // Shared storage already has everything the broker wrote.
            return Ok(());
        }
        let guard = self.fs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(FsHandleBox(handle)) = guard.as_ref() else {
            return Ok(());
        };
        let _entered = handle.enter();
        let dir = Path::new(&self.dir);
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            files.push(entry?.path());
        }
        files.sort();
        for path in files {
            if fs::metadata(&path)?.is_file() {
                fs::File::open(&path)?.sync_all()?;
            }
        }
        fs::sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use stampede_broker::store::{Disk, Record, Store, StoreOptions, StoredMessage};

    use super::DiskSlot;

    /// What each incarnation of the host found in `journal` when it started.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A host that, on its first start, writes "AAAA" synced and "BBBB" unsynced to one
    /// file, and on every start records what the file holds; it is crashed once between
    /// the writes and the crash (`process_crash`: the disk is flushed first).
    fn crash_once(process_crash: bool) -> Vec<Vec<u8>> {
        let mut sim = turmoil::Builder::new().rng_seed(1).build();
        let slot = DiskSlot::new("/data/store");
        let seen: Seen = Arc::default();
        let (s, sl) = (seen.clone(), slot.clone());
        sim.host("broker", move || {
            let (seen, slot) = (s.clone(), sl.clone());
            async move {
                let disk = slot.open()?;
                let found = disk.read("journal").unwrap_or_default();
                let first = seen.lock().unwrap().is_empty();
                seen.lock().unwrap().push(found);
                if first {
                    let mut f = disk.create("journal")?;
                    f.append(b"AAAA")?;
                    f.sync()?;
                    disk.sync_dir()?;
                    f.append(b"BBBB")?;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        for _ in 0..10 {
            sim.step().unwrap();
        }
        if process_crash {
            slot.flush().unwrap();
        }
        sim.crash("broker");
        sim.bounce("broker");
        for _ in 0..10 {
            sim.step().unwrap();
        }
        seen.lock().unwrap().clone()
    }

    /// A mount of `storage` by `broker` under `epoch`.
    fn mount(storage: &super::SharedStorage, broker: &str, epoch: u64) -> super::SharedDisk {
        super::SharedDisk {
            storage: storage.clone(),
            broker: broker.to_owned(),
            epoch,
            dir: "/s".to_owned(),
            fault: Default::default(),
        }
    }

    /// Two mounts of one shared store: one lock between them, a file either can read, and
    /// a power loss that drops only the victim's unsynced writes.
    #[test]
    fn a_shared_store_has_one_lock_and_loses_only_the_victims_unsynced_writes() {
        let storage = super::SharedStorage::new(90_000, false);
        let ea = storage.try_lock("a").unwrap();
        assert_eq!(storage.try_lock("b"), None);
        let (a, b) = (mount(&storage, "a", ea), mount(&storage, "b", 0));

        let mut fa = a.create("journal-a.tmp").unwrap();
        fa.append(b"synced").unwrap();
        fa.sync().unwrap();
        fa.append(b"+cached").unwrap();
        // A rename is done when it returns, and the open handle follows the file.
        a.rename("journal-a.tmp", "journal-a").unwrap();
        fa.append(b"+more").unwrap();
        let mut fb = b.create("journal-b").unwrap();
        fb.append(b"b's").unwrap();
        assert_eq!(b.read("journal-a").unwrap(), b"synced+cached+more");
        assert_eq!(a.list().unwrap(), ["journal-a", "journal-b"]);

        storage.drop_unsynced("a");
        storage.release("b");
        assert_eq!(storage.try_lock("b"), None, "b never held it");
        storage.release("a");
        assert!(storage.try_lock("b").is_some());
        assert_eq!(b.read("journal-a").unwrap(), b"synced");
        assert_eq!(
            a.read("journal-b").unwrap(),
            b"b's",
            "b's power did not fail"
        );
    }

    /// A master cut off from the storage gets EIO and renews nothing: its lease lapses
    /// after `lease_ms` and the slave takes the lock under a new epoch; the old master's
    /// calls then fail (fenced) even once it is back, and its unlock, sent when it is
    /// back, does not free the new master's lock.
    #[test]
    fn a_partitioned_masters_lease_lapses_and_the_storage_fences_it() {
        let storage = super::SharedStorage::new(1_000, true);
        storage.tick(0);
        let ea = storage.try_lock("a").unwrap();
        let a = mount(&storage, "a", ea);
        a.create("journal").unwrap().append(b"a1").unwrap();
        storage.set_partitioned("a", true);
        assert!(a.read("journal").is_err(), "EIO while cut off");
        assert!(a.keep_alive().is_err());
        storage.tick(999);
        assert_eq!(storage.try_lock("b"), None, "the lease has not lapsed yet");
        storage.release("a"); // a's process stops: the unlock cannot be sent yet
        storage.tick(1_000);
        let eb = storage.try_lock("b").expect("the lapsed lease is free");
        assert!(eb > ea);
        storage.set_partitioned("a", false);
        assert!(a.read("journal").is_err(), "fenced");
        assert!(
            a.keep_alive().is_err(),
            "the keep-alive learns it lost the lock"
        );
        let b = mount(&storage, "b", eb);
        assert!(
            b.keep_alive().is_ok(),
            "a's late unlock left b's lock alone"
        );
        assert_eq!(b.read("journal").unwrap(), b"a1");

        // Without fencing the old master's writes land beside the new master's.
        let open = super::SharedStorage::new(1_000, false);
        let ea = open.try_lock("a").unwrap();
        let a = mount(&open, "a", ea);
        let mut f = a.create("journal").unwrap();
        open.set_partitioned("a", true);
        open.tick(5_000);
        assert!(open.try_lock("b").is_some());
        open.set_partitioned("a", false);
        f.append(b"late").unwrap();
        assert!(a.keep_alive().is_ok(), "nothing tells it");
    }

    /// A holder that reaches the storage keeps its lease however long it is idle; a power
    /// loss lets it lapse, and the machine's return frees it at once.
    #[test]
    fn leases_live_while_the_holder_is_reachable() {
        let storage = super::SharedStorage::new(1_000, true);
        assert!(storage.try_lock("a").is_some());
        storage.tick(60_000);
        assert_eq!(storage.try_lock("b"), None);
        storage.set_powered_off("a", true);
        storage.release("a");
        storage.tick(60_500);
        assert_eq!(storage.try_lock("b"), None, "within the lease");
        storage.set_powered_off("a", false);
        assert!(
            storage.try_lock("b").is_some(),
            "a rebooted client holds nothing"
        );
    }

    #[test]
    fn power_loss_keeps_only_what_was_synced() {
        let seen = crash_once(false);
        assert_eq!(seen, vec![b"".to_vec(), b"AAAA".to_vec()]);
    }

    #[test]
    fn process_crash_keeps_what_was_written() {
        let seen = crash_once(true);
        assert_eq!(seen, vec![b"".to_vec(), b"AAAABBBB".to_vec()]);
    }

    #[test]
    fn the_store_recovers_from_a_simulated_disk() {
        let mut sim = turmoil::Builder::new()
            .rng_seed(1)
            .tick_duration(Duration::from_millis(1))
            .build();
        let slot = DiskSlot::new("/store");
        let recovered: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (r, sl) = (recovered.clone(), slot.clone());
        sim.host("broker", move || {
            let (recovered, slot) = (r.clone(), sl.clone());
            async move {
                let options = StoreOptions {
                    segment_bytes_max: 4096,
                    skip_corrupt: false,
                };
                let (mut store, got) = Store::open(slot.open()?, options)?;
                let first = recovered.lock().unwrap().is_empty();
                recovered.lock().unwrap().push(got.messages.len());
                if first {
                    // Enough messages to roll over several 4 KiB segments; two acked.
                    for id in 1..=40u64 {
                        let m = StoredMessage {
                            id,
                            queues: vec![Arc::from("/queue/a")],
                            message_id: format!("m-{id}"),
                            destination: "/queue/a".into(),
                            headers: vec![("x-sim-id".into(), id.to_string())],
                            body: vec![b'x'; 200].into(),
                            priority: 4,
                            expires_ms: None,
                            broker_path: Vec::new(),
                            origin_id: None,
                        };
                        store.append(&Record::Enqueue(m))?;
                    }
                    for id in [3u64, 7] {
                        store.append(&Record::Ack {
                            id,
                            queue: Arc::from("/queue/a"),
                        })?;
                    }
                    store.sync()?;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        for _ in 0..10 {
            sim.step().unwrap();
        }
        sim.crash("broker");
        sim.bounce("broker");
        for _ in 0..10 {
            sim.step().unwrap();
        }
        assert_eq!(*recovered.lock().unwrap(), vec![0, 38]);
    }
}
