//! Store recovery on arbitrary journal files, and on journals the store wrote and that
//! were then cut short, bit-flipped or zero-filled: `Store::open` gives the store or an
//! error naming the file, never a panic; and what it recovers is stable: opening the
//! store a second time (after it dropped a torn tail and started a new file) recovers the
//! same messages and durable subscriptions, with nothing torn.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stampede_broker::store::disk::mem::MemDisk;
use stampede_broker::store::record::{FILE_HEADER_BYTES, FORMAT_VERSION, MAGIC};
use stampede_broker::store::{
    DurableSub, Record, Recovered, Store, StoreOptions, StoredMessage, segment_name,
};

/// A record the writing phase appends.
#[derive(Arbitrary, Debug)]
enum Write {
    Enqueue { id: u8, queue: u8, body: u16 },
    Ack { id: u8, queue: u8 },
    Durable { client: u8, name: u8, remove: bool },
    Sync,
}

/// Damage done to the written journal before recovery, at offsets taken modulo its size.
#[derive(Arbitrary, Debug)]
enum Damage {
    /// Cut the newest file short.
    Truncate(u16),
    /// Flip bits of one byte.
    Flip(u16, u8),
    /// Zero a run of bytes (a hole a power loss left).
    Zero(u16, u8),
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Journal files as they are: (sequence, whether to start with a valid header, bytes
    /// after it).
    Raw {
        files: Vec<(u8, bool, Vec<u8>)>,
        skip_corrupt: bool,
    },
    /// A journal the store wrote, then damaged.
    Written {
        writes: Vec<Write>,
        damage: Vec<Damage>,
        skip_corrupt: bool,
        small_segments: bool,
    },
}

fn message(id: u8, queue: u8, body: u16) -> StoredMessage {
    StoredMessage {
        id: u64::from(id) + 1,
        queues: vec![Arc::from(format!("/queue/q{}", queue % 3))],
        message_id: format!("ID:fuzz-{id}"),
        destination: format!("/queue/q{}", queue % 3),
        headers: vec![("persistent".into(), "true".into())],
        body: Bytes::from(vec![b'x'; usize::from(body % 2048)]),
        priority: 4,
        expires_ms: None,
        broker_path: Vec::new(),
        origin_id: None,
    }
}

/// Writes `writes` through a store on an empty `disk`, then damages its newest file.
fn write_and_damage(
    disk: &MemDisk,
    writes: Vec<Write>,
    damage: Vec<Damage>,
    options: StoreOptions,
) {
    let Ok((mut store, _)) = Store::open(Box::new(disk.clone()), options) else {
        panic!("an empty directory opens");
    };
    for w in writes.into_iter().take(64) {
        let r = match w {
            Write::Enqueue { id, queue, body } => {
                store.append(&Record::Enqueue(message(id, queue, body)))
            }
            Write::Ack { id, queue } => store.append(&Record::Ack {
                id: u64::from(id) + 1,
                queue: Arc::from(format!("/queue/q{}", queue % 3)),
            }),
            Write::Durable {
                client,
                name,
                remove: false,
            } => store.append(&Record::DurableAdd(DurableSub {
                client_id: format!("c{}", client % 2),
                name: format!("n{}", name % 2),
                destination: "/topic/t".into(),
                selector: None,
                no_local: false,
            })),
            Write::Durable {
                client,
                name,
                remove: true,
            } => store.append(&Record::DurableRemove {
                client_id: format!("c{}", client % 2),
                name: format!("n{}", name % 2),
            }),
            Write::Sync => store.sync(),
        };
        r.expect("the in-memory disk does not fail");
    }
    drop(store);
    let mut files = disk.0.lock().unwrap();
    let Some((_, newest)) = files.iter_mut().next_back() else {
        return;
    };
    for d in damage.into_iter().take(4) {
        if newest.is_empty() {
            break;
        }
        let len = newest.len();
        match d {
            Damage::Truncate(at) => newest.truncate(usize::from(at) % len),
            Damage::Flip(at, mask) => newest[usize::from(at) % len] ^= mask.max(1),
            Damage::Zero(at, n) => {
                let start = usize::from(at) % len;
                let end = (start + usize::from(n)).min(len);
                newest[start..end].fill(0);
            }
        }
    }
}

/// What a recovery found, comparably.
fn found(r: &Recovered) -> (Vec<(u64, Vec<String>)>, usize) {
    let messages = r
        .messages
        .iter()
        .map(|m| (m.id, m.queues.iter().map(|q| q.to_string()).collect()))
        .collect();
    (messages, r.durables.len())
}

fuzz_target!(|input: Input| {
    let disk = MemDisk::default();
    let options = match input {
        Input::Raw {
            files,
            skip_corrupt,
        } => {
            for (seq, header, bytes) in files.into_iter().take(4) {
                let mut data = Vec::new();
                if header {
                    data.extend_from_slice(MAGIC);
                    data.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
                    debug_assert_eq!(data.len(), FILE_HEADER_BYTES);
                }
                data.extend_from_slice(&bytes);
                disk.0
                    .lock()
                    .unwrap()
                    .insert(segment_name(u64::from(seq)), data);
            }
            StoreOptions {
                segment_bytes_max: 1 << 20,
                skip_corrupt,
            }
        }
        Input::Written {
            writes,
            damage,
            skip_corrupt,
            small_segments,
        } => {
            let options = StoreOptions {
                segment_bytes_max: if small_segments { 512 } else { 1 << 20 },
                skip_corrupt,
            };
            write_and_damage(&disk, writes, damage, options);
            options
        }
    };
    let Ok((store, first)) = Store::open(Box::new(disk.clone()), options) else {
        return;
    };
    drop(store);
    let (_, again) =
        Store::open(Box::new(disk), options).expect("a store that opened once opens again");
    assert!(again.torn_tail.is_none(), "{:?}", again.torn_tail);
    assert_eq!(found(&first), found(&again));
});
