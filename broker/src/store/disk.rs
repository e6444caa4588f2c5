//! The disk seam: the only way the store reaches files.
//!
//! [`Disk`] is a flat directory of named files with the operations a journal needs and
//! that turmoil's simulated file system offers too (open for appending, append, sync,
//! read whole, rename, remove, list, sync the directory), so that a simulated disk can
//! replace [`StdDisk`] without touching the store. Locking the directory against a
//! second broker is [`StdDisk::open`]'s business, not the trait's.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::StoreError;

/// A file open for appending.
pub trait AppendFile: Send {
    /// Appends `bytes` (all of them, or an error).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes, so that the next append follows them (takes
    /// back what a failed append wrote of itself).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A directory of files.
pub trait Disk: Send {
    /// The names of the files in the directory, in any order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole content of `name`.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Creates `name` empty (replacing any file of that name) and opens it for appending.
    fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// How `name` is shown in messages (its full path).
    fn describe(&self, name: &str) -> String;
    /// Time the syncs since the last call took beyond the calls themselves, for the
    /// store writer to wait out on its own task. A real disk spends a sync's time inside
    /// `sync`, so this is zero; a simulated slow disk (which cannot block a simulated
    /// host) reports its latency here instead.
    fn take_sync_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Checks that this broker still holds the directory's lock, and tells the storage it
    /// is alive: an error means the lock is lost (or cannot be shown to be held), and a
    /// master must stop. A directory of its own never loses its lock.
    fn keep_alive(&self) -> io::Result<()> {
        Ok(())
    }
    /// Opens the existing file `name` for appending (a replica's follower goes on writing
    /// the files a snapshot installed).
    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this disk cannot reopen {name} for appending"),
        ))
    }
    /// The length of `name` in bytes.
    fn len(&self, name: &str) -> io::Result<u64> {
        self.read(name).map(|b| b.len() as u64)
    }
    /// For a replicated disk, a future that ends when everything synced so far is durable
    /// on a quorum of replicas (or fails when this broker is no longer the one that
    /// writes); `None` for a disk whose sync is all there is.
    fn durable(&self) -> Option<Durable> {
        None
    }
    /// For a replicated disk, a future that ends when everything written so far has been
    /// written (not necessarily synced) by a majority of replicas: what `interval_ms`
    /// receipts wait for, as ActiveMQ's replicated LevelDB `quorum_mem`. `None` otherwise.
    fn replicated(&self) -> Option<Durable> {
        None
    }
}

/// A wait for durability beyond the local disk ([`Disk::durable`]).
pub type Durable = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send>>;

/// Files of a replicated broker's own (its election state), which are never replicated
/// and which the store leaves alone.
pub const REPLICA_PREFIX: &str = "replica-";

/// The name of the lock file in a store directory.
pub const LOCK_FILE: &str = "lock";

/// A real directory, locked (flock) against other brokers while this value lives.
pub struct StdDisk {
    dir: PathBuf,
    /// Held open: the lock lasts as long as the file stays open.
    lock: File,
    /// Heart-beats written into the lock file by [`Disk::keep_alive`].
    beats: std::sync::atomic::AtomicU64,
}

impl StdDisk {
    /// Opens (creating it if needed) and locks the store directory `dir`. A directory
    /// another process holds is [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<StdDisk, StoreError> {
        let io = |what: String| move |source| StoreError::Io { what, source };
        std::fs::create_dir_all(dir)
            .map_err(io(format!("create the store directory {}", dir.display())))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("open the lock file {}", lock_path.display())))?;
        let locked = lock
            .try_lock_exclusive()
            .map_err(io(format!("lock {}", lock_path.display())))?;
        if !locked {
            return Err(StoreError::Locked {
                dir: dir.display().to_string(),
            });
        }
        Ok(StdDisk {
            dir: dir.to_path_buf(),
            lock,
            beats: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

struct StdFile(File);

impl AppendFile for StdFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.0.set_len(len)?;
        self.0.seek(std::io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl Disk for StdDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(self.path(name))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(self.path(name))?;
        Ok(Box::new(StdFile(file)))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        std::fs::metadata(self.path(name)).map(|m| m.len())
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).open(self.path(name))?;
        Ok(Box::new(StdFile(file)))
    }

    /// The lock file at its path must still be the file this broker locked (an operator
    /// or a cleanup job that removed or replaced it has let another broker take the
    /// directory), and a heart-beat written into it must reach the disk: on NFS that
    /// write fails once the client's lease, and with it the lock, is lost.
    fn keep_alive(&self) -> io::Result<()> {
        use std::os::unix::fs::{FileExt as _, MetadataExt};
        let held = self.lock.metadata()?;
        let at_path = std::fs::metadata(self.path(LOCK_FILE)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "the lock file {} is gone: {e}",
                    self.path(LOCK_FILE).display()
                ),
            )
        })?;
        if (held.dev(), held.ino()) != (at_path.dev(), at_path.ino()) || held.nlink() == 0 {
            return Err(io::Error::other(format!(
                "the lock file {} was replaced by another file",
                self.path(LOCK_FILE).display()
            )));
        }
        let beat = self
            .beats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        self.lock.write_all_at(&beat.to_le_bytes(), 0)?;
        self.lock.sync_data()
    }
}

/// An in-memory disk for tests and the journal fuzz target: what was appended is what is
/// read back, and a sync changes nothing.
pub mod mem {
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::{AppendFile, Disk};

    /// Files by name; clones share them.
    #[derive(Clone, Default)]
    pub struct MemDisk(pub Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

    struct MemFile {
        disk: MemDisk,
        name: String,
    }

    impl AppendFile for MemFile {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut files = self.disk.0.lock().map_err(|_| io::ErrorKind::Other)?;
            files
                .get_mut(&self.name)
                .ok_or(io::ErrorKind::NotFound)?
                .extend_from_slice(bytes);
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            let mut files = self.disk.0.lock().map_err(|_| io::ErrorKind::Other)?;
            let file = files.get_mut(&self.name).ok_or(io::ErrorKind::NotFound)?;
            file.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            Ok(())
        }
    }

    impl MemDisk {
        fn files(&self) -> io::Result<std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>>> {
            self.0.lock().map_err(|_| io::ErrorKind::Other.into())
        }
    }

    impl Disk for MemDisk {
        fn list(&self) -> io::Result<Vec<String>> {
            Ok(self.files()?.keys().cloned().collect())
        }

        fn read(&self, name: &str) -> io::Result<Vec<u8>> {
            self.files()?
                .get(name)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }

        fn create(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
            self.files()?.insert(name.to_owned(), Vec::new());
            Ok(Box::new(MemFile {
                disk: self.clone(),
                name: name.to_owned(),
            }))
        }

        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            let mut files = self.files()?;
            let data = files.remove(from).ok_or(io::ErrorKind::NotFound)?;
            files.insert(to.to_owned(), data);
            Ok(())
        }

        fn remove(&self, name: &str) -> io::Result<()> {
            self.files()?
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }

        fn sync_dir(&self) -> io::Result<()> {
            Ok(())
        }

        fn describe(&self, name: &str) -> String {
            format!("mem:{name}")
        }

        fn open_append(&self, name: &str) -> io::Result<Box<dyn AppendFile>> {
            if !self.files()?.contains_key(name) {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok(Box::new(MemFile {
                disk: self.clone(),
                name: name.to_owned(),
            }))
        }
    }
}
