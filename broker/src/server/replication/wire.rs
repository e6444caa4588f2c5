//! The replication protocol's frames: a 4-byte little-endian length, then a kind byte and
//! its fields (integers little-endian, strings and byte strings with a 4-byte length).
//!
//! A leader opens one connection to each follower and streams its journal's file
//! operations on it, each numbered; the follower answers with acknowledgements. A
//! candidate opens a connection to each peer for one vote.

use std::io;

use bytes::Bytes;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts (a snapshot chunk is at most [`CHUNK_BYTES`]).
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bytes of a journal file per snapshot frame.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Candidate → voter.
    VoteRequest {
        /// The candidate's term.
        term: u64,
        /// Its node name.
        candidate: String,
        /// How up to date its journal is: the term of the leader it came from, then the
        /// newest file's sequence number and length.
        log: Position,
    },
    /// Voter → candidate.
    VoteReply {
        /// The voter's term (higher than the candidate's: the candidate is out of date).
        term: u64,
        /// Whether the vote is the candidate's.
        granted: bool,
    },
    /// Leader → follower, first on a stream.
    Hello {
        /// The leader's term.
        term: u64,
        /// Its node name.
        leader: String,
    },
    /// Leader → follower: the journal files of a snapshot that follow (names only).
    SnapshotBegin {
        /// Journal file names.
        files: Vec<String>,
    },
    /// Leader → follower: the next bytes of one snapshot file.
    SnapshotChunk {
        /// The file.
        name: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Leader → follower: the snapshot is complete; the operations that follow start at
    /// `seq`.
    SnapshotEnd {
        /// The sequence number of the first operation after it.
        seq: u64,
    },
    /// Leader → follower: one operation on the journal directory.
    Op {
        /// Its sequence number in the leader's stream.
        seq: u64,
        /// What.
        op: FileOp,
    },
    /// Leader → follower: nothing new; the follower answers with an `Ack`.
    Heartbeat {
        /// The leader's term.
        term: u64,
    },
    /// Follower → leader: every operation through `seq` is applied, and what they synced
    /// is durable.
    Ack {
        /// The follower's term.
        term: u64,
        /// The highest durable operation.
        seq: u64,
    },
    /// Follower → leader, on a [`FileOp::Barrier`]: every operation through `seq` is
    /// applied (written, not necessarily synced).
    Applied {
        /// The follower's term.
        term: u64,
        /// The barrier's operation.
        seq: u64,
    },
    /// Follower → leader: the follower knows a higher term; the leader is out of date.
    Reject {
        /// That term.
        term: u64,
    },
}

/// How up to date a journal is; journals compare in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The term of the leader whose journal this is a copy of (its own term for a leader).
    pub term: u64,
    /// The newest journal file's sequence number.
    pub seq: u64,
    /// That file's length.
    pub len: u64,
}

/// An operation on the journal directory, as the leader's store made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// Create (or empty) a file.
    Create(String),
    /// Append bytes to a file (shared: the backlog and every follower's stream hold the
    /// same bytes).
    Append(String, Bytes),
    /// Cut a file back to a length.
    Truncate(String, u64),
    /// Rename a file.
    Rename(String, String),
    /// Remove a file.
    Remove(String),
    /// Make a file's content durable.
    Sync(String),
    /// Make the directory's entries durable.
    SyncDir,
    /// Nothing to do; the follower answers with `Applied` (the leader's `interval_ms`
    /// receipts wait for a majority to have written what they cover).
    Barrier,
}

impl FileOp {
    /// Bytes it takes in a backlog (about).
    pub fn weight(&self) -> usize {
        match self {
            FileOp::Append(n, b) => n.len() + b.len() + 16,
            FileOp::Create(n) | FileOp::Remove(n) | FileOp::Sync(n) | FileOp::Truncate(n, _) => {
                n.len() + 16
            }
            FileOp::Rename(a, b) => a.len() + b.len() + 16,
            FileOp::SyncDir | FileOp::Barrier => 16,
        }
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encodes `msg` as one frame (length included).
pub fn encode(msg: &Msg) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    match msg {
        Msg::VoteRequest {
            term,
            candidate,
            log,
        } => {
            b.push(1);
            put_u64(&mut b, *term);
            put_bytes(&mut b, candidate.as_bytes());
            put_u64(&mut b, log.term);
            put_u64(&mut b, log.seq);
            put_u64(&mut b, log.len);
        }
        Msg::VoteReply { term, granted } => {
            b.push(2);
            put_u64(&mut b, *term);
            b.push(u8::from(*granted));
        }
        Msg::Hello { term, leader } => {
            b.push(3);
            put_u64(&mut b, *term);
            put_bytes(&mut b, leader.as_bytes());
        }
        Msg::SnapshotBegin { files } => {
            b.push(4);
            put_u64(&mut b, files.len() as u64);
            for f in files {
                put_bytes(&mut b, f.as_bytes());
            }
        }
        Msg::SnapshotChunk { name, bytes } => {
            b.push(5);
            put_bytes(&mut b, name.as_bytes());
            put_bytes(&mut b, bytes);
        }
        Msg::SnapshotEnd { seq } => {
            b.push(6);
            put_u64(&mut b, *seq);
        }
        Msg::Op { seq, op } => {
            b.push(7);
            put_u64(&mut b, *seq);
            match op {
                FileOp::Create(n) => {
                    b.push(1);
                    put_bytes(&mut b, n.as_bytes());
                }
                FileOp::Append(n, bytes) => {
                    b.push(2);
                    put_bytes(&mut b, n.as_bytes());
                    put_bytes(&mut b, bytes);
                }
                FileOp::Truncate(n, len) => {
                    b.push(3);
                    put_bytes(&mut b, n.as_bytes());
                    put_u64(&mut b, *len);
                }
                FileOp::Rename(from, to) => {
                    b.push(4);
                    put_bytes(&mut b, from.as_bytes());
                    put_bytes(&mut b, to.as_bytes());
                }
                FileOp::Remove(n) => {
                    b.push(5);
                    put_bytes(&mut b, n.as_bytes());
                }
                FileOp::Sync(n) => {
                    b.push(6);
                    put_bytes(&mut b, n.as_bytes());
                }
                FileOp::SyncDir => b.push(7),
                FileOp::Barrier => b.push(8),
            }
        }
        Msg::Heartbeat { term } => {
            b.push(8);
            put_u64(&mut b, *term);
        }
        Msg::Ack { term, seq } => {
            b.push(9);
            put_u64(&mut b, *term);
            put_u64(&mut b, *seq);
        }
        Msg::Reject { term } => {
            b.push(10);
            put_u64(&mut b, *term);
        }
        Msg::Applied { term, seq } => {
            b.push(11);
            put_u64(&mut b, *term);
            put_u64(&mut b, *seq);
        }
    }
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_le_bytes());
    b
}

/// A cursor over a frame's body.
struct Reader<'a>(&'a [u8]);

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed replication frame: {what}"),
    )
}

impl Reader<'_> {
    fn u8(&mut self) -> io::Result<u8> {
        let (&v, rest) = self.0.split_first().ok_or_else(|| malformed("short"))?;
        self.0 = rest;
        Ok(v)
    }

    fn u64(&mut self) -> io::Result<u64> {
        if self.0.len() < 8 {
            return Err(malformed("short"));
        }
        let (v, rest) = self.0.split_at(8);
        self.0 = rest;
        Ok(u64::from_le_bytes(
            v.try_into().map_err(|_| malformed("short"))?,
        ))
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        if self.0.len() < 4 {
            return Err(malformed("short"));
        }
        let (l, rest) = self.0.split_at(4);
        let len = u32::from_le_bytes(l.try_into().map_err(|_| malformed("short"))?) as usize;
        if rest.len() < len {
            return Err(malformed("short"));
        }
        let (v, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(v.to_vec())
    }

    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| malformed("a name is not UTF-8"))
    }
}

/// Decodes a frame's body (without its length).
pub fn decode(body: &[u8]) -> io::Result<Msg> {
    let mut r = Reader(body);
    let msg = match r.u8()? {
        1 => Msg::VoteRequest {
            term: r.u64()?,
            candidate: r.string()?,
            log: Position {
                term: r.u64()?,
                seq: r.u64()?,
                len: r.u64()?,
            },
        },
        2 => Msg::VoteReply {
            term: r.u64()?,
            granted: r.u8()? != 0,
        },
        3 => Msg::Hello {
            term: r.u64()?,
            leader: r.string()?,
        },
        4 => {
            let n = r.u64()?;
            let mut files = Vec::new();
            for _ in 0..n {
                files.push(r.string()?);
            }
            Msg::SnapshotBegin { files }
        }
        5 => Msg::SnapshotChunk {
            name: r.string()?,
            bytes: r.bytes()?,
        },
        6 => Msg::SnapshotEnd { seq: r.u64()? },
        7 => {
            let seq = r.u64()?;
            let op = match r.u8()? {
                1 => FileOp::Create(r.string()?),
                2 => FileOp::Append(r.string()?, Bytes::from(r.bytes()?)),
                3 => FileOp::Truncate(r.string()?, r.u64()?),
                4 => FileOp::Rename(r.string()?, r.string()?),
                5 => FileOp::Remove(r.string()?),
                6 => FileOp::Sync(r.string()?),
                7 => FileOp::SyncDir,
                8 => FileOp::Barrier,
                k => return Err(malformed(&format!("operation kind {k}"))),
            };
            Msg::Op { seq, op }
        }
        8 => Msg::Heartbeat { term: r.u64()? },
        9 => Msg::Ack {
            term: r.u64()?,
            seq: r.u64()?,
        },
        10 => Msg::Reject { term: r.u64()? },
        11 => Msg::Applied {
            term: r.u64()?,
            seq: r.u64()?,
        },
        k => return Err(malformed(&format!("kind {k}"))),
    };
    if !r.0.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(msg)
}

/// Writes one frame.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> io::Result<()> {
    w.write_all(&encode(msg)).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Msg>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(malformed(&format!("length {len}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips_and_damage_is_an_error() {
        let msgs = vec![
            Msg::VoteRequest {
                term: 3,
                candidate: "b".into(),
                log: Position {
                    term: 2,
                    seq: 7,
                    len: 4096,
                },
            },
            Msg::VoteReply {
                term: 3,
                granted: true,
            },
            Msg::Hello {
                term: 3,
                leader: "a".into(),
            },
            Msg::SnapshotBegin {
                files: vec!["journal-1".into(), "journal-2".into()],
            },
            Msg::SnapshotChunk {
                name: "journal-1".into(),
                bytes: vec![1, 2, 3],
            },
            Msg::SnapshotEnd { seq: 9 },
            Msg::Op {
                seq: 10,
                op: FileOp::Append("j".into(), vec![0; 10].into()),
            },
            Msg::Op {
                seq: 11,
                op: FileOp::Rename("a".into(), "b".into()),
            },
            Msg::Op {
                seq: 12,
                op: FileOp::SyncDir,
            },
            Msg::Op {
                seq: 13,
                op: FileOp::Truncate("j".into(), 5),
            },
            Msg::Heartbeat { term: 3 },
            Msg::Ack { term: 3, seq: 12 },
            Msg::Reject { term: 4 },
            Msg::Applied { term: 4, seq: 20 },
            Msg::Op {
                seq: 21,
                op: FileOp::Barrier,
            },
        ];
        for m in msgs {
            let f = encode(&m);
            assert_eq!(decode(&f[4..]).unwrap(), m);
            assert!(decode(&f[4..f.len() - 1]).is_err(), "{m:?} cut short");
        }
        assert!(decode(&[99]).is_err());
    }
}
