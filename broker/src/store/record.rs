//! Journal records and their binary form.
//!
//! A journal file starts with [`MAGIC`] and a little-endian `u32` format version. Every
//! record after it is framed as `length: u32 | crc32: u32 | kind: u8 | payload`, where
//! `length` counts the payload and the CRC (crc32fast, IEEE) covers the kind byte and the
//! payload. Integers are little-endian; strings and byte strings are a `u32` length and
//! their bytes. Decoding never panics: bad input is a [`DecodeError`].
//!
//! Besides [`Record`]s, a file from format version 2 on holds *sync marks*
//! ([`Entry::SyncedTo`]): written first after every sync, each says how many bytes of its
//! file were durable when it was written. Recovery uses them to tell a torn tail (damage
//! after the last sync: discarded) from corruption of synced data (refused).

use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

/// The first bytes of every journal file.
pub const MAGIC: &[u8; 8] = b"STMPJRNL";
/// The journal format this broker writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;
/// The first format with sync marks.
pub const SYNC_MARKS_SINCE: u32 = 2;
/// Bytes of the file header: magic and version.
pub const FILE_HEADER_BYTES: usize = MAGIC.len() + 4;
/// Bytes before a record's payload: length, CRC and kind.
pub const RECORD_HEADER_BYTES: usize = 9;
/// The largest payload a record may have (a 128 MiB body plus headers fits); a longer
/// length field is corruption, not an allocation to attempt.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 512 * 1024 * 1024;

const KIND_ENQUEUE: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_COMMIT: u8 = 3;
const KIND_DURABLE_ADD: u8 = 4;
const KIND_DURABLE_REMOVE: u8 = 5;
const KIND_SYNCED_TO: u8 = 6;
/// Bytes of a framed sync mark.
pub const SYNC_MARK_BYTES: usize = RECORD_HEADER_BYTES + 8;

/// A persistent message as the journal keeps it, with the queues that still hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The store's id for it (broker-wide, increasing).
    pub id: u64,
    /// The queues it was put in: `/queue/` names, or a durable subscription's queue
    /// ([`durable_queue_name`]).
    pub queues: Vec<Arc<str>>,
    /// Its `message-id`.
    pub message_id: String,
    /// Where it was sent (`/queue/a`, `/topic/b`).
    pub destination: String,
    /// The headers passed on to MESSAGE frames, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// 0 to 9.
    pub priority: u8,
    /// Absolute expiry, epoch milliseconds.
    pub expires_ms: Option<u64>,
    /// Brokers it passed through before this one.
    pub broker_path: Vec<String>,
    /// Its id at the first broker, when it came over a bridge.
    pub origin_id: Option<String>,
}

/// A durable topic subscription: `client-id` plus `activemq.subscriptionName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableSub {
    /// The connection's `client-id`.
    pub client_id: String,
    /// `activemq.subscriptionName`.
    pub name: String,
    /// The topic (or topic pattern) as the client wrote it.
    pub destination: String,
    /// The selector text, if any.
    pub selector: Option<String>,
    /// `activemq.noLocal:true`.
    pub no_local: bool,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A persistent message put into one or more queues.
    Enqueue(StoredMessage),
    /// Message `id` left `queue` for good (consumed, expired, dead-lettered).
    Ack {
        /// The store id.
        id: u64,
        /// The queue it left.
        queue: Arc<str>,
    },
    /// A committed transaction's enqueues and acks, applied all or nothing. (An aborted
    /// transaction writes nothing: its operations wait in memory until COMMIT.)
    Commit(Vec<Record>),
    /// A durable subscription was created (or its settings replaced).
    DurableAdd(DurableSub),
    /// A durable subscription was removed, with the messages kept for it.
    DurableRemove {
        /// Its `client-id`.
        client_id: String,
        /// Its `activemq.subscriptionName`.
        name: String,
    },
}

/// The internal queue holding a durable subscription's messages. Its name contains a
/// comma, which no client destination may (composites are refused), so no client can
/// address it; the lengths make it unambiguous.
pub fn durable_queue_name(client_id: &str, name: &str) -> String {
    format!("durable,{},{client_id},{name}", client_id.len())
}

/// Why bytes are not a record.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the record.
    #[error("the record is cut short")]
    Short,
    /// The checksum does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// In the file.
        stored: u32,
        /// Of the bytes read.
        computed: u32,
    },
    /// The length field is beyond [`RECORD_PAYLOAD_BYTES_MAX`].
    #[error("record length {0} is beyond the maximum")]
    Length(usize),
    /// An unknown record kind.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// A field that does not parse (bad UTF-8, trailing bytes, a nested commit).
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Appends `record`, framed, to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let kind = encode_payload(record, out);
    let payload_len = out.len() - start - RECORD_HEADER_BYTES;
    out[start + 8] = kind;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_payload(record: &Record, out: &mut Vec<u8>) -> u8 {
    match record {
        Record::Enqueue(m) => {
            put_u64(out, m.id);
            put_u32(out, m.queues.len() as u32);
            for q in &m.queues {
                put_str(out, q);
            }
            put_str(out, &m.message_id);
            put_str(out, &m.destination);
            put_u32(out, m.headers.len() as u32);
            for (k, v) in &m.headers {
                put_str(out, k);
                put_str(out, v);
            }
            put_bytes(out, &m.body);
            out.push(m.priority);
            match m.expires_ms {
                Some(e) => {
                    out.push(1);
                    put_u64(out, e);
                }
                None => out.push(0),
            }
            put_u32(out, m.broker_path.len() as u32);
            for b in &m.broker_path {
                put_str(out, b);
            }
            match &m.origin_id {
                Some(o) => {
                    out.push(1);
                    put_str(out, o);
                }
                None => out.push(0),
            }
            KIND_ENQUEUE
        }
        Record::Ack { id, queue } => {
            put_u64(out, *id);
            put_str(out, queue);
            KIND_ACK
        }
        Record::Commit(ops) => {
            put_u32(out, ops.len() as u32);
            for op in ops {
                let mut inner = Vec::new();
                encode(op, &mut inner);
                out.extend_from_slice(&inner);
            }
            KIND_COMMIT
        }
        Record::DurableAdd(d) => {
            put_str(out, &d.client_id);
            put_str(out, &d.name);
            put_str(out, &d.destination);
            match &d.selector {
                Some(s) => {
                    out.push(1);
                    put_str(out, s);
                }
                None => out.push(0),
            }
            out.push(u8::from(d.no_local));
            KIND_DURABLE_ADD
        }
        Record::DurableRemove { client_id, name } => {
            put_str(out, client_id);
            put_str(out, name);
            KIND_DURABLE_REMOVE
        }
    }
}

/// One framed entry of a journal file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A record.
    Record(Record),
    /// A sync mark: the first this many bytes of the file were synced before it was
    /// written.
    SyncedTo(u64),
}

/// Appends a sync mark claiming the first `offset` bytes of its file durable.
pub fn encode_sync_mark(offset: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_SYNCED_TO);
    put_u64(out, offset);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The sync mark framed at the start of `bytes`, if one is there whole and checks out.
pub fn sync_mark_at(bytes: &[u8]) -> Option<u64> {
    let b = bytes.get(..SYNC_MARK_BYTES)?;
    if b[..4] != 8u32.to_le_bytes() || b[8] != KIND_SYNCED_TO {
        return None;
    }
    let stored = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if crc32fast::hash(&b[8..]) != stored {
        return None;
    }
    Some(u64::from_le_bytes(b[9..17].try_into().ok()?))
}

/// Decodes the framed entry (record or sync mark) at the start of `bytes`, and the bytes
/// it took.
pub fn decode_entry(bytes: &[u8]) -> Result<(Entry, usize), DecodeError> {
    if bytes.len() >= RECORD_HEADER_BYTES && bytes[8] == KIND_SYNCED_TO {
        let (header, r) = frame(bytes)?;
        let b: [u8; 8] = r
            .try_into()
            .map_err(|_| DecodeError::Malformed("a sync mark is 8 bytes"))?;
        return Ok((Entry::SyncedTo(u64::from_le_bytes(b)), header));
    }
    decode(bytes).map(|(r, used)| (Entry::Record(r), used))
}

/// Checks the frame at the start of `bytes`: its end and its payload.
fn frame(bytes: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Short);
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let stored = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::Length(len));
    }
    let end = RECORD_HEADER_BYTES + len;
    if bytes.len() < end {
        return Err(DecodeError::Short);
    }
    let computed = crc32fast::hash(&bytes[8..end]);
    if computed != stored {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok((end, &bytes[RECORD_HEADER_BYTES..end]))
}

/// Decodes the framed record at the start of `bytes`: the record and the bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
    let (end, payload) = frame(bytes)?;
    let mut r = Reader { bytes: payload };
    let record = decode_payload(bytes[8], &mut r, true)?;
    if !r.bytes.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok((record, end))
}

fn decode_payload(kind: u8, r: &mut Reader<'_>, top: bool) -> Result<Record, DecodeError> {
    Ok(match kind {
        KIND_ENQUEUE => {
            let id = r.u64()?;
            let n = r.count()?;
            let mut queues = Vec::new();
            for _ in 0..n {
                queues.push(Arc::from(r.str()?));
            }
            let message_id = r.str()?;
            let destination = r.str()?;
            let n = r.count()?;
            let mut headers = Vec::new();
            for _ in 0..n {
                headers.push((r.str()?, r.str()?));
            }
            let body = Bytes::copy_from_slice(r.bytes()?);
            let priority = r.u8()?;
            let expires_ms = match r.u8()? {
                0 => None,
                _ => Some(r.u64()?),
            };
            let n = r.count()?;
            let mut broker_path = Vec::new();
            for _ in 0..n {
                broker_path.push(r.str()?);
            }
            let origin_id = match r.u8()? {
                0 => None,
                _ => Some(r.str()?),
            };
            Record::Enqueue(StoredMessage {
                id,
                queues,
                message_id,
                destination,
                headers,
                body,
                priority,
                expires_ms,
                broker_path,
                origin_id,
            })
        }
        KIND_ACK => Record::Ack {
            id: r.u64()?,
            queue: Arc::from(r.str()?),
        },
        KIND_COMMIT => {
            if !top {
                return Err(DecodeError::Malformed("a commit inside a commit"));
            }
            let n = r.count()?;
            let mut ops = Vec::new();
            for _ in 0..n {
                let (op, used) = decode(r.bytes)?;
                if matches!(op, Record::Commit(_)) {
                    return Err(DecodeError::Malformed("a commit inside a commit"));
                }
                r.bytes = &r.bytes[used..];
                ops.push(op);
            }
            Record::Commit(ops)
        }
        KIND_DURABLE_ADD => Record::DurableAdd(DurableSub {
            client_id: r.str()?,
            name: r.str()?,
            destination: r.str()?,
            selector: match r.u8()? {
                0 => None,
                _ => Some(r.str()?),
            },
            no_local: r.u8()? != 0,
        }),
        KIND_DURABLE_REMOVE => Record::DurableRemove {
            client_id: r.str()?,
            name: r.str()?,
        },
        other => return Err(DecodeError::Kind(other)),
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Malformed("a field runs past the record"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items, each at least one byte, so never more than the bytes left.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() {
            return Err(DecodeError::Malformed("a count beyond the record"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn message(id: u64, queue: &str) -> StoredMessage {
        StoredMessage {
            id,
            queues: vec![Arc::from(queue)],
            message_id: format!("ID:b-1-{id}"),
            destination: format!("/queue/{queue}"),
            headers: vec![
                ("persistent".into(), "true".into()),
                ("k".into(), "v".into()),
            ],
            body: Bytes::from_static(b"hello"),
            priority: 4,
            expires_ms: Some(17),
            broker_path: vec!["a".into()],
            origin_id: None,
        }
    }

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Enqueue(message(1, "q")),
            Record::Ack {
                id: 1,
                queue: Arc::from("q"),
            },
            Record::Commit(vec![
                Record::Enqueue(message(2, "q")),
                Record::Ack {
                    id: 2,
                    queue: Arc::from("q"),
                },
            ]),
            Record::DurableAdd(DurableSub {
                client_id: "c".into(),
                name: "n".into(),
                destination: "/topic/t".into(),
                selector: Some("a = 'b'".into()),
                no_local: true,
            }),
            Record::DurableRemove {
                client_id: "c".into(),
                name: "n".into(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for record in all_kinds() {
            let mut buf = Vec::new();
            encode(&record, &mut buf);
            let (back, used) = decode(&buf).unwrap();
            assert_eq!(back, record);
            assert_eq!(used, buf.len());
        }
    }

    #[test]
    fn every_cut_is_short_and_every_flip_is_caught() {
        let mut buf = Vec::new();
        encode(&Record::Enqueue(message(9, "q")), &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Err(DecodeError::Short), "cut at {cut}");
        }
        for i in 4..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad), Err(DecodeError::Checksum { .. })),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        let mut buf = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1];
        buf.extend_from_slice(&[0; 16]);
        assert!(matches!(decode(&buf), Err(DecodeError::Length(_))));
    }

    #[test]
    fn durable_queue_names_are_unambiguous_and_unaddressable() {
        assert_ne!(
            durable_queue_name("a,b", "c"),
            durable_queue_name("a", "b,c")
        );
        let name = durable_queue_name("c", "n");
        assert!(crate::destination::Destination::parse(&name).is_err());
    }
}
