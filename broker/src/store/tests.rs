//! The store against an in-memory disk: recovery, torn tails, corruption, versions,
//! durable subscriptions, compaction.

use std::sync::Arc;

use bytes::Bytes;

use super::disk::mem::MemDisk;
use super::record::{self, DurableSub, Record, StoredMessage};
use super::{Disk, Recovered, Store, StoreError, StoreOptions, durable_queue_name, segment_name};

fn options() -> StoreOptions {
    StoreOptions {
        segment_bytes_max: 1 << 20,
        skip_corrupt: false,
    }
}

fn message(id: u64, queues: &[&str]) -> StoredMessage {
    StoredMessage {
        id,
        queues: queues.iter().map(|q| Arc::from(*q)).collect(),
        message_id: format!("ID:b-1-{id}"),
        destination: "/queue/q".into(),
        headers: vec![("persistent".into(), "true".into())],
        body: Bytes::from(vec![b'x'; 100]),
        priority: 4,
        expires_ms: None,
        broker_path: Vec::new(),
        origin_id: None,
    }
}

fn ack(id: u64, queue: &str) -> Record {
    Record::Ack {
        id,
        queue: Arc::from(queue),
    }
}

fn open(disk: &MemDisk, options: StoreOptions) -> Result<(Store, Recovered), StoreError> {
    Store::open(Box::new(disk.clone()), options)
}

fn ids(r: &Recovered) -> Vec<u64> {
    r.messages.iter().map(|m| m.id).collect()
}

fn journal_files(disk: &MemDisk) -> Vec<String> {
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("journal-"))
        .collect()
}

#[test]
fn unacknowledged_messages_come_back() {
    let disk = MemDisk::default();
    let (mut store, r) = open(&disk, options()).unwrap();
    assert!(r.messages.is_empty());
    assert_eq!(r.next_id, 1);
    for id in 1..=4 {
        store.append(&Record::Enqueue(message(id, &["q"]))).unwrap();
    }
    store.append(&ack(2, "q")).unwrap();
    store.append(&ack(4, "q")).unwrap();
    store.sync().unwrap();
    drop(store);
    let (_, r) = open(&disk, options()).unwrap();
    assert_eq!(ids(&r), [1, 3]);
    assert_eq!(r.next_id, 5);
    assert_eq!(r.messages[0], message(1, &["q"]));
}

#[test]
fn a_message_in_two_queues_lives_until_both_ack() {
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    store
        .append(&Record::Enqueue(message(1, &["a", "b"])))
        .unwrap();
    store.append(&ack(1, "a")).unwrap();
    drop(store);
    let (mut store, r) = open(&disk, options()).unwrap();
    assert_eq!(r.messages[0].queues, [Arc::<str>::from("b")]);
    store.append(&ack(1, "b")).unwrap();
    drop(store);
    assert!(open(&disk, options()).unwrap().1.messages.is_empty());
}

#[test]
fn a_commit_applies_all_its_operations() {
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    store.append(&Record::Enqueue(message(1, &["q"]))).unwrap();
    store
        .append(&Record::Commit(vec![
            Record::Enqueue(message(2, &["q"])),
            Record::Enqueue(message(3, &["q"])),
            ack(1, "q"),
        ]))
        .unwrap();
    drop(store);
    assert_eq!(ids(&open(&disk, options()).unwrap().1), [2, 3]);
}

fn durable(client: &str, name: &str) -> DurableSub {
    DurableSub {
        client_id: client.into(),
        name: name.into(),
        destination: "/topic/t".into(),
        selector: None,
        no_local: false,
    }
}

#[test]
fn durable_subscriptions_and_their_messages_survive_until_removed() {
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    let dq = durable_queue_name("c", "n");
    store
        .append(&Record::DurableAdd(durable("c", "n")))
        .unwrap();
    store
        .append(&Record::DurableAdd(durable("c", "m")))
        .unwrap();
    store.append(&Record::Enqueue(message(1, &[&dq]))).unwrap();
    drop(store);
    let (mut store, r) = open(&disk, options()).unwrap();
    assert_eq!(r.durables, [durable("c", "m"), durable("c", "n")]);
    assert_eq!(ids(&r), [1]);
    store
        .append(&Record::DurableRemove {
            client_id: "c".into(),
            name: "n".into(),
        })
        .unwrap();
    drop(store);
    let (_, r) = open(&disk, options()).unwrap();
    assert_eq!(r.durables, [durable("c", "m")]);
    assert!(r.messages.is_empty());
}

#[test]
fn a_torn_tail_is_discarded_and_the_file_made_whole() {
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    store.append(&Record::Enqueue(message(1, &["q"]))).unwrap();
    store.append(&Record::Enqueue(message(2, &["q"]))).unwrap();
    drop(store);
    let name = journal_files(&disk).pop().unwrap();
    let full = disk.read(&name).unwrap().len();
    for cut in [1, 9, 50] {
        let copy = MemDisk::default();
        for f in journal_files(&disk) {
            let mut bytes = disk.read(&f).unwrap();
            if f == name {
                bytes.truncate(full - cut);
            }
            copy.0.lock().unwrap().insert(f, bytes);
        }
        let (_, r) = open(&copy, options()).unwrap();
        assert_eq!(ids(&r), [1], "cut {cut}");
        assert!(r.torn_tail.is_some());
        // Opened again, the file is whole: nothing torn, nothing corrupt.
        let (_, r) = open(&copy, options()).unwrap();
        assert_eq!(ids(&r), [1]);
        assert!(r.torn_tail.is_none());
    }
}

#[test]
fn a_bad_checksum_in_the_middle_names_file_and_offset() {
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    // Synced one by one (sync = always): every record is vouched for by the next mark.
    for id in 1..=3 {
        store.append(&Record::Enqueue(message(id, &["q"]))).unwrap();
        store.sync().unwrap();
    }
    drop(store);
    let name = journal_files(&disk).pop().unwrap();
    let mut bytes = disk.read(&name).unwrap();
    let mut one = Vec::new();
    record::encode(&Record::Enqueue(message(1, &["q"])), &mut one);
    // The second record follows the sync mark written after the first one's sync.
    let second = record::FILE_HEADER_BYTES + one.len() + record::SYNC_MARK_BYTES;
    bytes[second + 40] ^= 0xff;
    disk.0.lock().unwrap().insert(name.clone(), bytes);
    let err = open(&disk, options()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("mem:{name}")) && text.contains(&format!("offset {second}")),
        "{text}"
    );
    assert!(text.contains("store.skip_corrupt"), "{text}");
    let skip = StoreOptions {
        skip_corrupt: true,
        ..options()
    };
    let (_, r) = open(&disk, skip).unwrap();
    assert_eq!(ids(&r), [1, 3]);
    assert_eq!(r.skipped, [(format!("mem:{name}"), second as u64)]);
}

#[test]
fn newer_formats_and_foreign_journals_are_refused_by_name() {
    let disk = MemDisk::default();
    let mut header = record::MAGIC.to_vec();
    header.extend_from_slice(&(record::FORMAT_VERSION + 1).to_le_bytes());
    disk.0.lock().unwrap().insert(segment_name(1), header);
    let text = open(&disk, options()).unwrap_err().to_string();
    assert!(
        text.contains(&format!("format version {}", record::FORMAT_VERSION + 1))
            && text.contains(&segment_name(1)),
        "{text}"
    );

    let disk = MemDisk::default();
    disk.0
        .lock()
        .unwrap()
        .insert(segment_name(1), b"not a journal at all".to_vec());
    assert!(matches!(
        open(&disk, options()),
        Err(StoreError::NotJournal { .. })
    ));
    // Files not named like journals are left alone.
    let disk = MemDisk::default();
    disk.0
        .lock()
        .unwrap()
        .insert("README".into(), b"notes".to_vec());
    assert!(open(&disk, options()).is_ok());
    assert_eq!(disk.read("README").unwrap(), b"notes");
}

#[test]
fn fully_acknowledged_files_are_deleted_and_durables_carried_forward() {
    let disk = MemDisk::default();
    let small = StoreOptions {
        segment_bytes_max: 4096,
        skip_corrupt: false,
    };
    let (mut store, _) = open(&disk, small).unwrap();
    store
        .append(&Record::DurableAdd(durable("c", "n")))
        .unwrap();
    // One message stays live in the first file; everything after is acknowledged.
    store
        .append(&Record::Enqueue(message(1, &["keep"])))
        .unwrap();
    for id in 2..200 {
        store.append(&Record::Enqueue(message(id, &["q"]))).unwrap();
        store.append(&ack(id, "q")).unwrap();
    }
    let files_pinned = journal_files(&disk).len();
    assert!(files_pinned > 3, "{files_pinned}");
    store.append(&ack(1, "keep")).unwrap();
    for id in 200..260 {
        store.append(&Record::Enqueue(message(id, &["q"]))).unwrap();
        store.append(&ack(id, "q")).unwrap();
    }
    let files = journal_files(&disk).len();
    assert!(files <= 2, "{files} files after compaction");
    assert_eq!(store.segment_count(), files);
    drop(store);
    let (_, r) = open(&disk, small).unwrap();
    assert!(r.messages.is_empty());
    assert_eq!(r.durables, [durable("c", "n")]);
}

/// The bytes each `append` wrote, as (offset, length), found by replaying the appends'
/// encoding: a sync mark (when one is due) and the record.
fn spans(records: &[(Record, bool)]) -> Vec<(usize, usize)> {
    let mut at = record::FILE_HEADER_BYTES;
    let mut mark = false;
    let mut out = Vec::new();
    for (r, sync_after) in records {
        let mut b = Vec::new();
        if mark {
            record::encode_sync_mark(0, &mut b);
        }
        record::encode(r, &mut b);
        out.push((at, b.len()));
        at += b.len();
        mark = *sync_after;
    }
    out
}

/// Appends `records` (syncing after those marked), drops the store, and returns the
/// journal's name and bytes.
fn written(disk: &MemDisk, records: &[(Record, bool)]) -> (String, Vec<u8>) {
    let (mut store, _) = open(disk, options()).unwrap();
    for (r, sync_after) in records {
        store.append(r).unwrap();
        if *sync_after {
            store.sync().unwrap();
        }
    }
    drop(store);
    let name = journal_files(disk).pop().unwrap();
    let bytes = disk.read(&name).unwrap();
    (name, bytes)
}

#[test]
fn a_power_loss_hole_before_surviving_unsynced_writes_is_a_torn_tail() {
    // Two synced messages, then two unsynced ones. A power loss kept the fourth write's
    // blocks but not the third's: a zero-filled hole with valid bytes after it.
    let records: Vec<(Record, bool)> = (1..=4)
        .map(|id| (Record::Enqueue(message(id, &["q"])), id <= 2))
        .collect();
    let disk = MemDisk::default();
    let (name, mut bytes) = written(&disk, &records);
    let (third, len) = spans(&records)[2];
    assert_eq!(bytes.len(), spans(&records)[3].0 + spans(&records)[3].1);
    bytes[third..third + len].fill(0);
    disk.0.lock().unwrap().insert(name.clone(), bytes);
    let (_, r) = open(&disk, options()).expect("a torn tail, not corruption");
    assert_eq!(ids(&r), [1, 2]);
    assert_eq!(r.torn_tail, Some((format!("mem:{name}"), third as u64)));
    // The file was made whole: opened again, nothing is torn.
    let (_, r) = open(&disk, options()).unwrap();
    assert_eq!(ids(&r), [1, 2]);
    assert!(r.torn_tail.is_none());
}

#[test]
fn damage_to_synced_bytes_is_corruption_even_in_the_newest_file() {
    // The second message was synced, and the mark before the third vouches for it: a
    // flipped byte there is corruption, however it looks.
    let records: Vec<(Record, bool)> = (1..=3)
        .map(|id| (Record::Enqueue(message(id, &["q"])), id <= 2))
        .collect();
    for fill_zero in [false, true] {
        let disk = MemDisk::default();
        let (name, mut bytes) = written(&disk, &records);
        // The second write is a sync mark and the record.
        let (second, len) = spans(&records)[1];
        let expected = if fill_zero {
            bytes[second..second + len].fill(0);
            second
        } else {
            bytes[second + record::SYNC_MARK_BYTES + 40] ^= 0xff;
            second + record::SYNC_MARK_BYTES
        };
        disk.0.lock().unwrap().insert(name.clone(), bytes);
        let err = open(&disk, options()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { offset, .. } if *offset == expected as u64),
            "zero-filled {fill_zero}: {err}"
        );
    }
}

#[test]
fn a_version_1_journal_is_read_with_its_own_rules() {
    // Written by the first format: no sync marks.
    let mut bytes = record::MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    for id in 1..=3 {
        record::encode(&Record::Enqueue(message(id, &["q"])), &mut bytes);
    }
    let whole = bytes.len();
    let disk = MemDisk::default();
    disk.0
        .lock()
        .unwrap()
        .insert(segment_name(1), bytes.clone());
    let (_, r) = open(&disk, options()).unwrap();
    assert_eq!(ids(&r), [1, 2, 3]);
    // A damaged middle record is corruption there: version 1 cannot tell synced bytes.
    let mut one = Vec::new();
    record::encode(&Record::Enqueue(message(1, &["q"])), &mut one);
    let second = record::FILE_HEADER_BYTES + one.len();
    bytes[second + 40] ^= 0xff;
    assert_eq!(bytes.len(), whole);
    let disk = MemDisk::default();
    disk.0.lock().unwrap().insert(segment_name(1), bytes);
    assert!(matches!(
        open(&disk, options()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_file_torn_inside_its_header_is_removed_so_that_the_next_start_works_too() {
    // A crash right after a rollover: the new file exists, its header not yet whole. The
    // journal fuzz target found that the first restart coped and the second refused the
    // file, which was no longer the newest.
    let disk = MemDisk::default();
    let (mut store, _) = open(&disk, options()).unwrap();
    store.append(&Record::Enqueue(message(1, &["q"]))).unwrap();
    store.sync().unwrap();
    drop(store);
    let newest = journal_files(&disk).pop().unwrap();
    let next = segment_name(
        newest
            .trim_start_matches("journal-")
            .trim_end_matches(".log")
            .parse::<u64>()
            .unwrap()
            + 1,
    );
    for cut in [0, 5] {
        let copy = MemDisk::default();
        for f in journal_files(&disk) {
            copy.0
                .lock()
                .unwrap()
                .insert(f.clone(), disk.read(&f).unwrap());
        }
        copy.0
            .lock()
            .unwrap()
            .insert(next.clone(), record::MAGIC[..cut].to_vec());
        let (_, r) = open(&copy, options()).unwrap();
        assert_eq!(ids(&r), [1], "cut {cut}");
        assert!(!journal_files(&copy).contains(&next), "cut {cut}");
        let (_, r) = open(&copy, options()).expect("the second start");
        assert_eq!(ids(&r), [1], "cut {cut}");
    }
}

/// A [`MemDisk`] whose appends stop with ENOSPC once `room` bytes are used up (`None`:
/// no limit), after writing what fits, as a real full disk does.
#[derive(Clone, Default)]
struct FullDisk {
    mem: MemDisk,
    room: Arc<std::sync::Mutex<Option<usize>>>,
}

struct FullFile {
    inner: Box<dyn super::AppendFile>,
    room: Arc<std::sync::Mutex<Option<usize>>>,
}

impl super::AppendFile for FullFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut room = self.room.lock().unwrap();
        match *room {
            Some(left) if left < bytes.len() => {
                self.inner.append(&bytes[..left])?;
                *room = Some(0);
                Err(std::io::Error::from_raw_os_error(28))
            }
            Some(left) => {
                *room = Some(left - bytes.len());
                self.inner.append(bytes)
            }
            None => self.inner.append(bytes),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
}

impl Disk for FullDisk {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.mem.list()
    }
    fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        self.mem.read(name)
    }
    fn create(&self, name: &str) -> std::io::Result<Box<dyn super::AppendFile>> {
        Ok(Box::new(FullFile {
            inner: self.mem.create(name)?,
            room: self.room.clone(),
        }))
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.mem.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.mem.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.mem.sync_dir()
    }
    fn describe(&self, name: &str) -> String {
        self.mem.describe(name)
    }
}

#[test]
fn an_append_that_finds_the_disk_full_leaves_nothing_and_can_be_tried_again() {
    let disk = FullDisk::default();
    let (mut store, _) = Store::open(Box::new(disk.clone()), options()).unwrap();
    store.append(&Record::Enqueue(message(1, &["q"]))).unwrap();
    store.sync().unwrap();
    let file = journal_files(&disk.mem).pop().unwrap();
    let before = disk.mem.read(&file).unwrap().len();
    // Room for a part of the next record only: the append fails as a full disk, and what
    // it wrote of the record is cut off again.
    *disk.room.lock().unwrap() = Some(30);
    for _ in 0..2 {
        let e = store
            .append(&Record::Enqueue(message(2, &["q"])))
            .unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert_eq!(disk.mem.read(&file).unwrap().len(), before);
    }
    // Once there is room, the same record goes in, and the journal reads back whole.
    *disk.room.lock().unwrap() = None;
    store.append(&Record::Enqueue(message(2, &["q"]))).unwrap();
    store.append(&ack(1, "q")).unwrap();
    store.sync().unwrap();
    drop(store);
    let (_, r) = open(&disk.mem, options()).unwrap();
    assert_eq!(ids(&r), [2]);
    // Other errors are not a full disk.
    let other = StoreError::Io {
        what: "append to x".into(),
        source: std::io::Error::from_raw_os_error(5),
    };
    assert!(!other.is_no_space());
}
